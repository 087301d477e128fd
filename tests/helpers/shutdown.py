"""Shared parts of the graceful-shutdown tests: ``vinoserve`` as a process with the slow model, and one
call per client kind that raises :class:`Refused` when the server shuts it out."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import requests
import tritonclient.grpc as tgrpc

from vinoserve.protocol.generated.tensorflow_serving.apis import prediction_service_pb2_grpc

from .clients import tfs_request

CMD = [sys.executable, "-m", "vinoserve"]
SHUTTING_DOWN = "Server is shutting down"
CUT = "request cancelled after --shutdown_timeout_s 1"
DEPTH = 8  # write_slow's default: y = np.roll(x, 8, axis=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A running ``vinoserve`` with the slow model on both ports."""

    popen: subprocess.Popen[str]
    grpc_port: int
    rest_port: int

    def signal(self, sig: signal.Signals) -> float:
        """Send ``sig``; returns the time it was sent."""
        os.killpg(self.popen.pid, sig)
        return time.monotonic()


def data(batch: int, seed: int, width: int = 512) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, width), dtype=np.float32)


# --- one call per client kind; each returns the output, or raises Refused when shut out ---------


class Refused(Exception):
    """The server refused the request (connection refused/closed, or UNAVAILABLE / 503)."""


def tfs_grpc(proc: Proc, x: np.ndarray, channel: grpc.Channel) -> np.ndarray:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
        y = stub.Predict(tfs_request({"x": x}, model="slow"), timeout=120).outputs["y"]
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            raise Refused(err.details()) from None
        raise
    return np.frombuffer(y.tensor_content, np.float32).reshape([d.size for d in y.tensor_shape.dim])


def kserve_grpc(proc: Proc, x: np.ndarray, client: tgrpc.InferenceServerClient) -> np.ndarray:
    inp = tgrpc.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    try:
        return np.asarray(client.infer("slow", [inp], client_timeout=120).as_numpy("y"))
    except tgrpc.InferenceServerException as err:
        if err.status() == "StatusCode.UNAVAILABLE":
            raise Refused(err.message()) from None
        raise


def rest(path: str, body: Callable[[np.ndarray], Any], answer: Callable[[Any], Any]) -> Callable[..., np.ndarray]:
    def call(proc: Proc, x: np.ndarray, session: requests.Session) -> np.ndarray:
        try:
            r = session.post(f"http://localhost:{proc.rest_port}{path}", json=body(x), timeout=120)
        except requests.ConnectionError as err:  # refused, or closed by the server
            raise Refused(str(err)) from None
        if r.status_code == 503:
            assert SHUTTING_DOWN in r.json()["error"], r.text
            raise Refused(r.text)
        assert r.status_code == 200, r.text
        return np.array(answer(r.json()), np.float32).reshape(x.shape)

    return call


kserve_rest = rest(
    "/v2/models/slow/infer",
    lambda x: {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]},
    lambda j: j["outputs"][0]["data"],
)
tfs_rest = rest("/v1/models/slow:predict", lambda x: {"instances": x.tolist()}, lambda j: j["predictions"])
