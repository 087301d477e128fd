"""Clients that give up mid-inference (gRPC deadlines) leave nothing broken behind them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

from vinoserve.protocol.generated.tensorflow_serving.apis import prediction_service_pb2_grpc
from vinoserve.scheduling.pool import RequestPool

from ..helpers.clients import tfs_request
from ..helpers.management import version_object, wait_for
from ..helpers.models import write_slow_affine
from ..helpers.server import F32, RunningServer

# a batch that keeps the model busy for a good fraction of a second, far beyond the deadline below
BATCH = 64
DEADLINE = 0.1


def _x(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((BATCH, 10)).astype(np.float32)


def _tfs(s: RunningServer, x: np.ndarray, timeout: float) -> np.ndarray:
    with grpc.insecure_channel(s.grpc_address) as ch:
        resp = prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(
            tfs_request({"b": x}, "slow"), timeout=timeout
        )
    t = resp.outputs["y"]
    return np.frombuffer(t.tensor_content, np.float32).reshape([d.size for d in t.tensor_shape.dim])


def _kserve(s: RunningServer, x: np.ndarray, timeout: float) -> np.ndarray:
    client = tgrpc.InferenceServerClient(s.grpc_address)
    inp = tgrpc.InferInput("b", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("slow", [inp], client_timeout=timeout)
    out = result.as_numpy("y")
    assert out is not None
    return np.asarray(out)


def _deadline_passed(send: Callable[[], object]) -> bool:
    try:
        send()
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc.details()
        return True
    except InferenceServerException as exc:
        assert "Deadline" in str(exc), str(exc)
        return True
    return False  # the machine was fast enough to answer in time


@pytest.mark.parametrize("send", [_tfs, _kserve], ids=["tfs", "kserve"])
def test_requests_after_cancelled_ones_all_succeed(
    serve: Callable[..., RunningServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    send: Callable[[RunningServer, np.ndarray, float], np.ndarray],
) -> None:
    base = write_slow_affine(tmp_path / "slow")
    s = serve(
        [
            "--model_name",
            "slow",
            "--model_path",
            str(base),
            "--batch_size",
            "auto",
            "--nireq",
            "2",
            "--plugin_config",
            F32,
        ]
    )
    warm = _x(0)
    np.testing.assert_allclose(send(s, warm, 120), warm * 2 + 1, rtol=1e-5)  # compiles batch 64
    caplog.set_level(logging.INFO, logger="vinoserve")
    # on a loaded machine a deadline may pass before the request reaches the model: try a few times
    # until two requests were cancelled inside the server
    for _ in range(8):
        _deadline_passed(lambda: send(s, _x(1), DEADLINE))
        if caplog.text.count("request cancelled by the client") >= 2:
            break
    assert "request cancelled by the client" in caplog.text
    # straight after, while the cancelled inferences may still run on the same infer requests
    for i in range(12):
        x = _x(10 + i)
        np.testing.assert_allclose(send(s, x, 120), x * 2 + 1, rtol=1e-5)

    mv = version_object(s, "slow", 1)
    assert mv._admission.in_progress == 0
    # every infer request back in its pool once OpenVINO finished with it; no variant held
    assert mv._variants.held == 0
    for variant in mv._variants.variants():

        def idle(pool: RequestPool[Any, Any] = variant.pool, nireq: int = variant.compiled.nireq) -> bool:
            return pool.idle == pool.size == nireq

        wait_for(idle, timeout=60)
