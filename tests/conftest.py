"""Fixtures: a real vinoserve server (gRPC/HTTP on port 0, read back) in a background thread."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

from vinoserve.cli import build_settings
from vinoserve.protocol.generated.tensorflow_serving.apis import predict_pb2
from vinoserve.runtime.openvino import Runtime
from vinoserve.server import Server

F32 = '{"INFERENCE_PRECISION_HINT":"f32"}'


class RunningServer:
    """A started server; ``grpc_port``/``rest_port`` are the bound ports."""

    def __init__(self, args: list[str], rest: bool, runtime: Runtime | None) -> None:
        settings = build_settings([*args, "--port", "1", "--rest_port", "2"])
        # -1: bind any free port and read it back
        settings = dataclasses.replace(settings, port=-1, rest_port=-1 if rest else 0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = Server(settings, runtime)
        self.call(self.server.start())
        self.call(self.server.wait_ready())
        self.grpc_port = self.server.grpc_port
        self.rest_port = self.server.rest_port

    @property
    def grpc_address(self) -> str:
        """``localhost:port`` of the gRPC server."""
        return f"localhost:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        """``http://localhost:port`` of the HTTP server."""
        return f"http://localhost:{self.rest_port}"

    def call(self, coro: Any, timeout: float = 120) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def stop(self) -> None:
        """Graceful stop, then end the loop thread."""
        try:
            self.call(self.server.stop(grace=5))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """``serve(args, rest=False, runtime=None)`` starts a server; all are stopped after the test."""
    started: list[RunningServer] = []

    def start(args: list[str], rest: bool = False, runtime: Runtime | None = None) -> RunningServer:
        s = RunningServer(args, rest, runtime)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def tfs_request(inputs: dict[str, np.ndarray], model: str = "m", version: int | None = None) -> Any:
    """A TF Serving PredictRequest built by hand (FP32/I32 in ``tensor_content``), not by the server's code."""
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    if version is not None:
        req.model_spec.version.value = version
    for name, arr in inputs.items():
        t = req.inputs[name]
        t.dtype = {np.float32: 1, np.int32: 3}[arr.dtype.type]
        for d in arr.shape:
            t.tensor_shape.dim.add().size = d
        t.tensor_content = arr.tobytes()
    return req
