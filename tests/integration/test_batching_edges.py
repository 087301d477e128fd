"""Request batching on real servers at its edges: fixed batches padded and split, a model whose batch
is not first, inputs that disagree on rows, a cancelled request leaving the queue, a full queue, and
a failing inference freeing its infer request."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import requests

from vinoserve.runtime.openvino import Runtime

from ..helpers.batching import DEPTH, SIZE, distinct, metric, tfs_grpc
from ..helpers.clients import predict_raw, rpc_error
from ..helpers.management import version_object, wait_for
from ..helpers.models import write_affine, write_picky, write_slow, write_two_inputs
from ..helpers.server import F32, Serve


def test_fixed_batch_pads_smaller_requests_and_splits_larger_ones(serve: Serve, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "aff", shape=[4, 10])
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(base),
            "--plugin_config",
            F32,
            "--metrics_enable",
            "--dynamic_batching",
            '{"max_batch_size": 4}',
        ],
        rest=True,
    )
    for rows in (1, 3, 4, 10):
        x = distinct(rows, rows=rows, width=10)
        np.testing.assert_allclose(tfs_grpc(s, x, "b"), x * 2 + 1, rtol=1e-6)
    assert metric(s, "vinoserve_batch_padding_rows_total") == 3 + 1 + 0 + 2


class Held:
    """A server whose one infer request is held busy, deterministically: under ``auto`` the compile of
    batch ``BLOCK`` waits for :meth:`release`, and a request of that batch holds the version's one
    running batch meanwhile, so every request sent then is queued."""

    BLOCK = 64

    def __init__(self, serve: Serve, tmp_path: Path, batching: dict[str, object]) -> None:
        self.gate = threading.Event()
        self.compiling = threading.Event()
        runtime = Runtime()
        runtime.before_compile = self._hold
        base = write_slow(tmp_path / "slow", size=SIZE, depth=DEPTH, repeat=16)
        self.s = serve(
            [
                "--model_name",
                "m",
                "--model_path",
                str(base),
                "--batch_size",
                "auto",
                "--nireq",
                "1",
                "--plugin_config",
                F32,
                "--dynamic_batching",
                json.dumps(batching),
            ],
            rest=True,
            runtime=runtime,
        )
        x = distinct(0)
        np.testing.assert_array_equal(tfs_grpc(self.s, x, "x"), np.roll(x, DEPTH, axis=1))  # batch 1 compiled
        self.batcher = version_object(self.s, "m", 1)._batcher
        self.thread = threading.Thread(target=self._block)
        self.thread.start()
        assert self.compiling.wait(30)

    def _hold(self, shapes: Any) -> None:  # the runtime's seam: hold the compile of batch BLOCK
        if next(iter(shapes.values()))[0].lo == self.BLOCK:
            self.compiling.set()
            self.gate.wait(60)

    def _block(self) -> None:
        x = distinct(0, rows=self.BLOCK)
        np.testing.assert_array_equal(tfs_grpc(self.s, x, "x"), np.roll(x, DEPTH, axis=1))

    def release(self) -> None:
        self.gate.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


def test_a_cancelled_request_leaves_the_queue(serve: Serve, tmp_path: Path) -> None:
    held = Held(serve, tmp_path, {"max_batch_size": 16})
    try:
        err = rpc_error(predict_raw, held.s, {"x": distinct(1)}, timeout=0.5)
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_for(lambda: held.batcher.queued == 0, timeout=10)  # it left the queue without running
    finally:
        held.release()
    x = distinct(2)
    np.testing.assert_array_equal(tfs_grpc(held.s, x, "x"), np.roll(x, DEPTH, axis=1))


def test_a_full_queue_answers_resource_exhausted_and_retry_after(serve: Serve, tmp_path: Path) -> None:
    held = Held(serve, tmp_path, {"max_batch_size": 1, "max_queue_size": 2})
    s = held.s
    with ThreadPoolExecutor(2) as pool:
        try:
            queued = [pool.submit(tfs_grpc, s, distinct(i), "x") for i in (1, 2)]
            wait_for(lambda: held.batcher.queued == 2, timeout=30)
            err = rpc_error(predict_raw, s, {"x": distinct(3)})
            r = requests.post(
                f"{s.rest_url}/v1/models/m:predict",
                data=json.dumps({"inputs": {"x": distinct(4).tolist()}}),
                timeout=30,
            )
        finally:
            held.release()
        for i, f in zip((1, 2), queued, strict=True):
            np.testing.assert_array_equal(f.result(120), np.roll(distinct(i), DEPTH, axis=1))
    text = "Server overloaded - batching queue of model m is full (2)"
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and err.details() == text
    assert r.status_code == 503 and r.json() == {"error": text}
    assert int(r.headers["Retry-After"]) >= 1


def test_a_failing_inference_is_answered_and_frees_its_infer_request(serve: Serve, tmp_path: Path) -> None:
    # without batching too: OpenVINO does not call back when an inference fails
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(write_picky(tmp_path / "picky")),
            "--nireq",
            "1",
            "--plugin_config",
            F32,
        ]
    )
    for _ in range(2):
        err = rpc_error(predict_raw, s, {"x": np.array([[5, 1, 1, 1]], np.float32)}, timeout=60)
        assert err.code() == grpc.StatusCode.INTERNAL
        x = np.array([[4, 1, 2, 3]], np.float32)
        np.testing.assert_allclose(tfs_grpc(s, x, "x"), x * 2 + 1, rtol=1e-6)


def test_fixed_batch_inputs_that_disagree_on_rows_get_the_batch_error(serve: Serve, tmp_path: Path) -> None:
    """With a fixed batch the batcher pads and splits any size, so inputs must agree on their rows."""
    two = write_two_inputs(tmp_path / "two")
    flags = ["--model_name", "m", "--model_path", str(two), "--plugin_config", F32, "--dynamic_batching", "{}"]
    s = serve(flags)
    a, b = np.ones((2, 10), np.float32), np.ones((3, 10), np.float32)
    err = rpc_error(predict_raw, s, {"a": a, "b": b})
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith("Invalid input batch size - the inputs do not agree"), err.details()


def test_a_model_whose_batch_is_not_first_is_not_batched(serve: Serve, tmp_path: Path) -> None:
    """Merged results are cut along the outputs' first dimension: a CN model runs each request alone."""
    aff = write_affine(tmp_path / "aff", shape=[10, 1])
    flags = ["--model_name", "m", "--model_path", str(aff), "--layout", "CN", "--batch_size", "-1"]
    s = serve([*flags, "--plugin_config", F32, "--dynamic_batching", "{}"])
    assert version_object(s, "m", 1)._batcher is None
