"""Assembly of the gRPC server: services, message size limits, binding."""

from __future__ import annotations

import grpc

from vinoserve.dataplane import DataPlane
from vinoserve.protocol.grpc.kserve import add_kserve_servicer
from vinoserve.protocol.grpc.tfs import add_tfs_servicers

# gRPC keeps message limits in a signed 32-bit int.
_GRPC_MAX_LIMIT = 2**31 - 1


def _host_port(address: str, port: int) -> str:
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"  # a bare IPv6 address
    return f"{address}:{port}"


async def start_grpc_server(
    dataplane: DataPlane, address: str, port: int, max_message_bytes: int
) -> tuple[grpc.aio.Server, int]:
    """Start the TF Serving (and KServe) services on ``address:port``; returns (server, bound port).

    ``port`` 0 binds a free port, which is read back. A message above ``max_message_bytes``
    is refused by gRPC itself with RESOURCE_EXHAUSTED and the text
    ``Received message larger than max (<size> vs. <limit>)``, which names the limit in bytes.
    Raises ``OSError`` when the address cannot be bound.
    """
    limit = min(max_message_bytes, _GRPC_MAX_LIMIT) if max_message_bytes > 0 else -1
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # Without this, Linux lets a second server bind a busy port and steal half its calls.
            ("grpc.so_reuseport", 0),
        ]
    )
    add_tfs_servicers(dataplane, server)
    add_kserve_servicer(dataplane, server)  # KServe v2 (inference.GRPCInferenceService)
    target = _host_port(address, port)
    try:
        bound = server.add_insecure_port(target)
    except RuntimeError as exc:  # newer grpcio raises where older ones returned 0
        raise OSError(f"cannot bind gRPC server to {target}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {target}")
    await server.start()
    return server, bound
