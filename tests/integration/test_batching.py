"""Request batching on real servers with stock clients: every client gets its own rows, over every protocol."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from vinoserve.runtime.openvino import Runtime

from ..helpers.clients import out_array, predict_raw, rpc_error
from ..helpers.management import version_object, wait_for
from ..helpers.models import write_affine, write_picky, write_rigid, write_slow, write_two_inputs
from ..helpers.server import F32, RunningServer, Serve

CLIENTS = 32
SIZE, DEPTH = 16, 4  # the slow model: y = roll(x, DEPTH, axis=1) on rows of SIZE


def metric(s: RunningServer, name: str, model: str = "m") -> float:
    """One per-version sample of ``GET /metrics`` (0 when absent)."""
    text = requests.get(s.rest_url + "/metrics", timeout=30).text
    m = re.search(rf'^{name}{{name="{model}",version="1"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def mean_batch(s: RunningServer) -> float:
    count = metric(s, "vinoserve_batch_size_count")
    return metric(s, "vinoserve_batch_size_sum") / count if count else 0.0


def distinct(i: int, rows: int = 1, width: int = SIZE) -> np.ndarray:
    """Rows no other client sends: client i's row r holds i*100 + r*10 + column."""
    return (i * 100 + np.arange(rows)[:, None] * 10 + np.arange(width)[None, :]).astype(np.float32)


def tfs_grpc(s: RunningServer, x: np.ndarray, name: str) -> np.ndarray:
    return out_array(predict_raw(s, {name: x}, timeout=120), "y")


def tfs_rest(s: RunningServer, x: np.ndarray, name: str) -> np.ndarray:
    r = requests.post(f"{s.rest_url}/v1/models/m:predict", data=json.dumps({"inputs": {name: x.tolist()}}), timeout=120)
    assert r.status_code == 200, r.text
    return np.array(r.json()["outputs"], dtype=np.float32)


def kserve_grpc(s: RunningServer, x: np.ndarray, name: str) -> np.ndarray:
    client = tgrpc.InferenceServerClient(s.grpc_address)
    try:
        inp = tgrpc.InferInput(name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = client.infer("m", [inp], client_timeout=120).as_numpy("y")
        assert out is not None
        return np.asarray(out)
    finally:
        client.close()


def kserve_rest(s: RunningServer, x: np.ndarray, name: str) -> np.ndarray:
    client = thttp.InferenceServerClient(f"localhost:{s.rest_port}", network_timeout=120)
    try:
        inp = thttp.InferInput(name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        out = client.infer("m", [inp]).as_numpy("y")
        assert out is not None
        return np.asarray(out)
    finally:
        client.close()


PROTOCOLS: dict[str, Callable[[RunningServer, np.ndarray, str], np.ndarray]] = {
    "tfs-grpc": tfs_grpc,
    "tfs-rest": tfs_rest,
    "kserve-grpc": kserve_grpc,
    "kserve-rest": kserve_rest,
}


def slow_server(serve: Serve, tmp_path: Path, batching: dict[str, object], *extra: str) -> RunningServer:
    """The slow model (one infer request, so requests queue behind a running batch) with batching."""
    base = write_slow(tmp_path / "slow", size=SIZE, depth=DEPTH, repeat=2048)
    return serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(base),
            "--nireq",
            "1",
            "--plugin_config",
            F32,
            "--metrics_enable",
            "--dynamic_batching",
            json.dumps(batching),
            *extra,
        ],
        rest=True,
    )


def run_clients(fn: Callable[[int], None], n: int = CLIENTS) -> None:
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(fn, range(n)))


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_concurrent_clients_each_get_their_own_rows(serve: Serve, tmp_path: Path, protocol: str) -> None:
    s = slow_server(serve, tmp_path, {"max_batch_size": 16})
    send = PROTOCOLS[protocol]

    def client(i: int) -> None:
        x = distinct(i, rows=1 + i % 3)
        np.testing.assert_array_equal(send(s, x, "x"), np.roll(x, DEPTH, axis=1))

    run_clients(client)
    assert metric(s, "vinoserve_batch_size_sum") == sum(1 + i % 3 for i in range(CLIENTS))
    assert mean_batch(s) > 1  # requests were merged
    assert metric(s, "vinoserve_batch_queue_delay_seconds_count") > 0


def test_auto_lands_on_few_compiled_sizes(serve: Serve, tmp_path: Path) -> None:
    s = slow_server(serve, tmp_path, {"max_batch_size": 8}, "--batch_size", "auto", "--shape_variants", "4")

    def client(i: int) -> None:
        for r in range(3):
            x = distinct(i * 3 + r)
            np.testing.assert_array_equal(tfs_grpc(s, x, "x"), np.roll(x, DEPTH, axis=1))

    run_clients(client)
    text = requests.get(s.rest_url + "/metrics", timeout=30).text
    compiles = sum(float(v) for v in re.findall(r'^vinoserve_reshapes_total{[^}]*name="m"[^}]*} (\S+)$', text, re.M))
    assert 1 <= compiles <= 4  # batch sizes of the ladder (8, 4, 2, 1), never one per odd size
    assert mean_batch(s) > 1
    keys = version_object(s, "m", 1)._variants.keys()
    assert {dims[0] for key in keys for _, dims in key} <= {1, 2, 4, 8}


def test_shape_auto_never_merges_different_shapes(serve: Serve, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "aff")
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(base),
            "--shape",
            "auto",
            "--nireq",
            "1",
            "--shape_variants",
            "8",
            "--plugin_config",
            F32,
            "--metrics_enable",
            "--dynamic_batching",
            '{"max_batch_size": 16}',
        ],
        rest=True,
    )

    def client(i: int) -> None:
        for r in range(4):
            x = distinct(i * 4 + r, rows=1, width=(7, 10)[(i + r) % 2])
            np.testing.assert_allclose(tfs_grpc(s, x, "b"), x * 2 + 1, rtol=1e-6)

    run_clients(client, 16)
    assert metric(s, "vinoserve_batch_size_sum") == 64


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


def test_batch_index_from_layout_and_multiple_inputs(serve: Serve, tmp_path: Path) -> None:
    aff = write_affine(tmp_path / "aff", shape=[10, 1])
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(aff),
            "--layout",
            "CN",
            "--batch_size",
            "-1",
            "--nireq",
            "1",
            "--plugin_config",
            F32,
            "--dynamic_batching",
            "{}",
        ]
    )

    def by_column(i: int) -> None:
        x = distinct(i, rows=1 + i % 2, width=10).T.copy()  # [10, rows]: the batch is the second dimension
        np.testing.assert_allclose(tfs_grpc(s, x, "b"), x * 2 + 1, rtol=1e-6)

    run_clients(by_column, 16)
    two = write_two_inputs(tmp_path / "two")
    s2 = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(two),
            "--batch_size",
            "-1",
            "--nireq",
            "1",
            "--plugin_config",
            F32,
            "--dynamic_batching",
            "{}",
        ]
    )

    def both(i: int) -> None:
        a, b = distinct(i, width=10), distinct(i + 50, width=10) * 3
        resp = predict_raw(s2, {"a": a, "b": b}, timeout=120)
        np.testing.assert_allclose(out_array(resp, "sum"), a + b, rtol=1e-6)
        np.testing.assert_allclose(out_array(resp, "diff"), a - b, rtol=1e-6)

    run_clients(both, 16)


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


def test_a_failing_batch_fails_only_the_requests_merged_into_it(serve: Serve, tmp_path: Path) -> None:
    base = write_picky(tmp_path / "picky")
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(base),
            "--nireq",
            "1",
            "--plugin_config",
            F32,
            "--metrics_enable",
            "--dynamic_batching",
            '{"max_batch_size": 8}',
        ],
        rest=True,
    )
    poisoned = {3, 11, 19, 27}
    failures: dict[int, str] = {}
    lock = threading.Lock()

    def client(i: int) -> None:
        x = np.array([[4, i % 4, 1, 2]], np.float32)
        if i in poisoned:
            x[0, 0] = 5  # this row makes its whole batch fail
        try:
            out = kserve_grpc(s, x, "x")
        except InferenceServerException as exc:
            with lock:
                failures[i] = str(exc.message())
            return
        assert i not in poisoned
        np.testing.assert_allclose(out, x * 2 + 1, rtol=1e-6)

    run_clients(client)
    assert poisoned <= set(failures)
    assert len(failures) < CLIENTS  # the others' batches ran
    assert all("Internal server error" in t for t in failures.values()), failures
    for i in range(4):  # the server keeps serving
        x = np.array([[4, i, 0, 0]], np.float32)
        np.testing.assert_allclose(tfs_grpc(s, x, "x"), x * 2 + 1, rtol=1e-6)


def test_one_client_alone_is_not_delayed(serve: Serve, tmp_path: Path) -> None:
    s = slow_server(serve, tmp_path, {"max_batch_size": 16, "max_queue_delay_ms": 0})
    for i in range(5):
        x = distinct(i)
        np.testing.assert_array_equal(tfs_grpc(s, x, "x"), np.roll(x, DEPTH, axis=1))
    # each ran at once on its own: nothing ever waited in the queue
    assert metric(s, "vinoserve_batch_queue_delay_seconds_sum") == 0
    assert metric(s, "vinoserve_batch_size_count") == 5


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


def test_auto_on_a_model_that_cannot_grow_its_batch_still_answers_everyone(serve: Serve, tmp_path: Path) -> None:
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(write_rigid(tmp_path / "rigid")),
            "--batch_size",
            "auto",
            "--nireq",
            "1",
            "--plugin_config",
            F32,
            "--dynamic_batching",
            '{"max_batch_size": 8}',
        ]
    )

    def client(i: int) -> None:
        for r in range(3):
            x = distinct(i * 3 + r, width=10)
            resp = predict_raw(s, {"b": x}, timeout=120)
            np.testing.assert_array_equal(out_array(resp, "y"), x.reshape(1, 2, 5))

    run_clients(client, 16)


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
