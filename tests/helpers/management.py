"""Helpers of the model management tests: requests to the affine test model, states, file edits."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from vinoserve.protocol.generated.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from .clients import out_array, predict_raw, tfs_request
from .models import write_affine
from .server import RunningServer

X1 = np.arange(10, dtype=np.float32).reshape(1, 10)


def predict(
    s: RunningServer, model: str = "m", version: int | None = None, x: np.ndarray = X1, timeout: float = 30
) -> tuple[int, float]:
    """(version that answered, bias of the affine model that answered: y - 2x)."""
    resp = predict_raw(s, {"b": x}, model, version, timeout=timeout)
    return resp.model_spec.version.value, bias_of(resp, x)


def bias_of(resp: predict_pb2.PredictResponse, x: np.ndarray) -> float:
    """The bias of the affine model (scale 2) that answered ``x``."""
    return round(float((out_array(resp, "y") - 2 * x).mean()), 3)


def states(s: RunningServer, model: str = "m") -> dict[int, str]:
    """The state name of every version of ``model``, from the server's manager."""
    return {st.version: st.state.name for st in s.server.manager.status(model, None)}


def reload(s: RunningServer) -> bool:
    """Reload the configuration as the reload endpoint does; whether anything changed."""
    return bool(s.call(s.server.manager.reload()))


def wait_for(cond: Callable[[], bool], timeout: float = 20) -> None:
    """Poll ``cond`` until it holds; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


def add_version(base: Path, version: int, staging: Path, bias: float) -> None:
    """Write a version elsewhere, then move it in with one rename (how versions should be deployed)."""
    write_affine(staging, version, bias=bias)
    os.rename(staging / str(version), base / str(version))


def write_config(path: Path, models: Sequence[Mapping[str, object]]) -> Path:
    """A config.json at ``path`` with one ``config`` entry per mapping in ``models``."""
    path.write_text(json.dumps({"model_config_list": [{"config": m} for m in models]}))
    return path


def version_object(s: RunningServer, model: str, version: int) -> Any:
    """The manager's object of one version (to look at its internals)."""
    return s.server.manager.models[model].versions[version]


class Clients:
    """Four threads sending batch-1 requests without a version until stopped; answers and failures."""

    def __init__(self, s: RunningServer, model: str = "m") -> None:
        self.seen: list[tuple[int, float]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(s, model)) for _ in range(4)]

    def _run(self, s: RunningServer, model: str) -> None:
        with grpc.insecure_channel(s.grpc_address) as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            while not self._stop.is_set() and len(self.seen) < 2000:
                try:
                    resp = stub.Predict(tfs_request({"b": X1}, model), timeout=30)
                    self.seen.append((resp.model_spec.version.value, bias_of(resp, X1)))
                except grpc.RpcError as exc:
                    self.failures.append(f"{exc.code()}: {exc.details()}")

    def __enter__(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def wait(self, more: int) -> None:
        """Until ``more`` further answers arrived."""
        target = len(self.seen) + more
        wait_for(lambda: len(self.seen) >= target)
