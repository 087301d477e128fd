"""One request through each front end of the server, as a client sends it: built once, sent many times.

TF Serving and KServe v2 over gRPC (bytes in, bytes out: the client does not parse the answer), KServe
v2 REST with the binary tensor extension both ways, and KServe v2 REST JSON. A sequential client
(:func:`sequential`) for latency, a closed loop of concurrent clients (:func:`throughput`) for rates.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import grpc
import numpy as np
from common import OPTS, request

from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2 as kpb

TFS_GRPC, KSERVE_GRPC, REST_BINARY, REST_JSON = "TFS gRPC", "KServe gRPC", "REST binary", "REST JSON"
SHARED_MEMORY = "shared memory"  # KServe gRPC with the tensors in system shared memory regions
FRONT_ENDS = (TFS_GRPC, KSERVE_GRPC, REST_BINARY, REST_JSON)
GRPC_METHODS = {
    TFS_GRPC: "/tensorflow.serving.PredictionService/Predict",
    KSERVE_GRPC: "/inference.GRPCInferenceService/ModelInfer",
    SHARED_MEMORY: "/inference.GRPCInferenceService/ModelInfer",
}
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Call:
    """One request of one front end: a gRPC method, or a REST path with its headers, and the body."""

    front_end: str
    body: bytes
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def grpc(self) -> bool:
        """Sent over gRPC (else HTTP)."""
        return self.front_end in GRPC_METHODS


def calls(model: str, input_name: str, x: np.ndarray) -> dict[str, Call]:
    """The request for ``x`` (FP32) on input ``input_name`` of ``model``, per front end."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    kreq = kpb.ModelInferRequest(model_name=model)
    kreq.inputs.add(name=input_name, datatype="FP32", shape=x.shape)
    kreq.raw_input_contents.append(x.tobytes())
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    values = json.dumps(
        {"inputs": [{"name": input_name, "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    ).encode()
    path = f"/v2/models/{model}/infer"
    return {
        TFS_GRPC: Call(TFS_GRPC, request(model, input_name, x)),
        KSERVE_GRPC: Call(KSERVE_GRPC, kreq.SerializeToString()),
        REST_BINARY: Call(
            REST_BINARY,
            header + x.tobytes(),
            path,
            {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        ),
        REST_JSON: Call(REST_JSON, values, path, {"Content-Type": "application/json"}),
    }


class SharedMemoryCall:
    """A KServe gRPC request whose input and output live in system shared memory regions registered
    with the server at ``grpc_port`` (tritonclient's helpers); :meth:`close` unregisters and frees them."""

    def __init__(
        self, grpc_port: int, model: str, input_name: str, output_name: str, x: np.ndarray, out_bytes: int
    ) -> None:
        import uuid

        import tritonclient.grpc as tgrpc
        import tritonclient.utils.shared_memory as shm

        self._shm = shm
        x = np.ascontiguousarray(x, dtype=np.float32)
        tag = uuid.uuid4().hex[:8]
        self._client = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        self._handles = []
        for region, nbytes in ((f"in-{tag}", x.nbytes), (f"out-{tag}", out_bytes)):
            self._handles.append(shm.create_shared_memory_region(region, f"/vinoserve-bench-{region}", nbytes))
            self._client.register_system_shared_memory(region, f"/vinoserve-bench-{region}", nbytes)
        shm.set_shared_memory_region(self._handles[0], [x])
        req = kpb.ModelInferRequest(model_name=model)
        tensor = req.inputs.add(name=input_name, datatype="FP32", shape=x.shape)
        tensor.parameters["shared_memory_region"].string_param = f"in-{tag}"
        tensor.parameters["shared_memory_byte_size"].int64_param = x.nbytes
        out = req.outputs.add(name=output_name)
        out.parameters["shared_memory_region"].string_param = f"out-{tag}"
        out.parameters["shared_memory_byte_size"].int64_param = out_bytes
        self.call = Call(SHARED_MEMORY, req.SerializeToString())

    def close(self) -> None:
        """Unregister the regions and free them."""
        try:
            self._client.unregister_system_shared_memory()
            self._client.close()
        finally:
            for handle in self._handles:
                self._shm.destroy_shared_memory_region(handle)


def _sender(call: Call, grpc_port: int, rest_port: int) -> tuple[Callable[[], object], Callable[[], None]]:
    """(send one request and wait for its answer, close)."""
    if call.grpc:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=OPTS)
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(GRPC_METHODS[call.front_end])
        return (lambda: stub(call.body, timeout=TIMEOUT_S)), channel.close
    conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=TIMEOUT_S)

    def send() -> object:
        conn.request("POST", call.path, call.body, call.headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{call.front_end}: HTTP {response.status}: {data[:200]!r}")
        return data

    return send, conn.close


def sequential(call: Call, grpc_port: int, rest_port: int, n: int, warm: int) -> list[float]:
    """Latencies (s) of ``n`` requests sent one at a time after ``warm`` unmeasured ones."""
    send, close = _sender(call, grpc_port, rest_port)
    try:
        for _ in range(warm):
            send()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            send()
            times.append(time.perf_counter() - t)
        return times
    finally:
        close()


async def throughput(call: Call, grpc_port: int, rest_port: int, seconds: float, inflight: int) -> float:
    """Requests/s of ``inflight`` closed-loop clients over ``seconds`` (after one request each)."""
    if call.grpc:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}", options=OPTS) as channel:
            stub: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(GRPC_METHODS[call.front_end])

            async def send_grpc() -> None:
                await stub(call.body, timeout=TIMEOUT_S)

            return await _closed_loop(send_grpc, seconds, inflight)
    url = f"http://127.0.0.1:{rest_port}{call.path}"
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=inflight), timeout=timeout) as session:

        async def send_http() -> None:
            async with session.post(url, data=call.body, headers=call.headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{call.front_end}: HTTP {response.status}")

        return await _closed_loop(send_http, seconds, inflight)


async def _closed_loop(send: Callable[[], Awaitable[None]], seconds: float, inflight: int) -> float:
    await asyncio.gather(*(send() for _ in range(inflight)))
    done = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await send()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return done / (time.perf_counter() - start)
