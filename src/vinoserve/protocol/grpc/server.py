"""Assembly of the gRPC server: services, message size limits, binding, TLS, shutdown refusals."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from vinoserve.dataplane import DataPlane
from vinoserve.drain import Drain
from vinoserve.protocol.grpc.errors import Context, abort
from vinoserve.protocol.grpc.kserve import add_kserve_servicer
from vinoserve.protocol.grpc.tfs import add_tfs_servicers

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
# gRPC keeps message limits in a signed 32-bit int.
_GRPC_MAX_LIMIT = 2**31 - 1


# Health checks keep answering while shutting down: ServerReady says false, ServerLive true.
_ALWAYS_SERVED = frozenset(
    {"/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady"}
)


class _DrainInterceptor(grpc.aio.ServerInterceptor):
    """Tracks every unary call for the drain; refuses new calls and answers cut ones with UNAVAILABLE."""

    def __init__(self, drain: Drain) -> None:
        self._drain = drain
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Request, _Response] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Request, _Response] | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or method in _ALWAYS_SERVED:
            return handler
        wrapped = self._wrapped[method] = grpc.unary_unary_rpc_method_handler(
            self._guard(handler.unary_unary), handler.request_deserializer, handler.response_serializer
        )
        return wrapped

    def _guard(self, behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        drain = self._drain

        async def guarded(request: Any, context: Context) -> Any:
            if drain.closing:
                await abort(context, drain.refused())
            task = drain.enter()
            try:
                result = behavior(request, context)
                return await result if inspect.isawaitable(result) else result
            except asyncio.CancelledError:
                if not drain.was_cut(task):
                    raise
                await abort(context, drain.cut_error())
            finally:
                drain.leave(task)

        return guarded


def _host_port(address: str, port: int) -> str:
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"  # a bare IPv6 address
    return f"{address}:{port}"


async def start_grpc_server(
    dataplane: DataPlane,
    address: str,
    port: int,
    max_message_bytes: int,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Start the TF Serving (and KServe) services on ``address:port``; returns (server, bound port).

    ``port`` 0 binds a free port, which is read back. A message above ``max_message_bytes``
    is refused by gRPC itself with RESOURCE_EXHAUSTED and the text
    ``Received message larger than max (<size> vs. <limit>)``, which names the limit in bytes.
    With ``credentials`` (see :func:`tls_credentials`) the port serves TLS only.
    Raises ``OSError`` when the address cannot be bound.
    """
    limit = min(max_message_bytes, _GRPC_MAX_LIMIT) if max_message_bytes > 0 else -1
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # Without this, Linux lets a second server bind a busy port and steal half its calls.
            ("grpc.so_reuseport", 0),
        ],
        interceptors=[_DrainInterceptor(dataplane.drain)],
    )
    add_tfs_servicers(dataplane, server, max_message_bytes)
    add_kserve_servicer(dataplane, server)  # KServe v2 (inference.GRPCInferenceService)
    target = _host_port(address, port)
    try:
        if credentials is not None:
            bound = server.add_secure_port(target, credentials)
        else:
            bound = server.add_insecure_port(target)
    except RuntimeError as exc:  # newer grpcio raises where older ones returned 0
        raise OSError(f"cannot bind gRPC server to {target}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {target}")
    await server.start()
    return server, bound


def tls_credentials(cert: bytes, key: bytes, client_ca: bytes | None) -> grpc.ServerCredentials:
    """Server credentials; with ``client_ca``, clients must present a certificate signed by it."""
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
