"""Batch and shape modes through a real server over TFS gRPC (ovmsclient and our own stubs)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import ovmsclient
import pytest

from vinoserve.runtime.openvino import Runtime

from ..helpers.clients import out_array, predict_raw, rpc_error
from ..helpers.models import (
    positional_weights,
    write_affine,
    write_onnx_affine,
    write_positional,
    write_rigid,
    write_two_inputs,
)
from ..helpers.server import F32, Serve


def batch(n: int, width: int = 10) -> np.ndarray:
    return np.arange(n * width, dtype=np.float32).reshape(n, width) / 7


@pytest.fixture
def affine(tmp_path: Path) -> Path:
    return write_affine(tmp_path / "m")


def test_auto_serves_every_batch_and_metadata_follows(serve: Serve, affine: Path) -> None:
    s = serve(["--model_name", "m", "--model_path", str(affine), "--batch_size", "auto", "--plugin_config", F32])
    client = ovmsclient.make_grpc_client(s.grpc_address)
    for n in (1, 8, 3, 8, 1, 0):
        x = batch(n)
        out = client.predict({"b": x}, "m")
        assert out.shape == (n, 10)
        np.testing.assert_allclose(out, x * 2 + 1, rtol=1e-6)
        if n:
            assert client.get_model_metadata("m")["inputs"]["b"]["shape"] == [n, 10]
    resp = predict_raw(s, {"b": batch(5)})
    np.testing.assert_allclose(out_array(resp, "y"), batch(5) * 2 + 1, rtol=1e-6)
    assert resp.model_spec.name == "m" and resp.model_spec.version.value == 1
    assert client.get_model_status("m") == {1: {"state": "AVAILABLE", "error_code": 0, "error_message": "OK"}}


def test_fixed_batch_rejects_other_batches(serve: Serve, affine: Path) -> None:
    s = serve(["--model_name", "m", "--model_path", str(affine), "--batch_size", "1"])
    assert predict_raw(s, {"b": batch(1)}).outputs["y"].tensor_shape.dim[0].size == 1
    err = rpc_error(predict_raw, s, {"b": batch(10)})
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "Invalid input batch size - Expected: 1; Actual: 10; input name: b"
    err = rpc_error(predict_raw, s, {"b": batch(1, 12)})
    assert err.details() == "Invalid input shape - Expected: (1,10); Actual: (1,12); input name: b"


def test_dynamic_and_range_batches(serve: Serve, tmp_path: Path) -> None:
    dyn = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(write_affine(tmp_path / "a")),
            "--batch_size",
            "-1",
            "--plugin_config",
            F32,
        ]
    )
    client = ovmsclient.make_grpc_client(dyn.grpc_address)
    for n in (1, 8, 3, 17):
        np.testing.assert_allclose(client.predict({"b": batch(n)}, "m"), batch(n) * 2 + 1, rtol=1e-6)
    assert client.get_model_metadata("m")["inputs"]["b"]["shape"] == [-1, 10]
    rng = serve(["--model_name", "m", "--model_path", str(write_affine(tmp_path / "r")), "--batch_size", "2:4"])
    assert out_array(predict_raw(rng, {"b": batch(3)}), "y").shape == (3, 10)
    err = rpc_error(predict_raw, rng, {"b": batch(5)})
    assert err.details() == "Invalid input batch size - Expected: [2~4]; Actual: 5; input name: b"


def test_four_concurrent_clients_mixed_batches(serve: Serve, affine: Path) -> None:
    """Four clients send rounds of different batch sizes together; each gets its own answers back."""
    s = serve(["--model_name", "m", "--model_path", str(affine), "--batch_size", "auto", "--plugin_config", F32])
    sizes = [1, 8, 3, 5, 2, 8, 1, 4, 6, 3]
    rounds = 12
    start = threading.Barrier(4, timeout=60)  # every round starts with all four clients at once
    lock = threading.Lock()
    in_flight: dict[int, int] = {}  # client -> batch size of its request being answered
    overlaps: list[set[int]] = []  # batch sizes in flight whenever a request was sent

    def client(seed: int) -> int:
        c = ovmsclient.make_grpc_client(s.grpc_address)
        answered = 0
        for i in range(rounds):
            n = sizes[(seed * 3 + i) % len(sizes)]
            x = batch(n) + 100 * seed  # each client's inputs, hence answers, are its own
            start.wait()
            with lock:
                in_flight[seed] = n
                overlaps.append(set(in_flight.values()))
            try:
                out = c.predict({"b": x}, "m")
            finally:
                with lock:
                    del in_flight[seed]
            assert out.shape == (n, 10)
            np.testing.assert_allclose(out, x * 2 + 1, rtol=1e-6)
            answered += 1
        return answered

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(client, range(4))) == [rounds] * 4
    # The requests did overlap, with different batch sizes in flight at the same time.
    assert max(len(sizes_together) for sizes_together in overlaps) >= 2


def test_compiled_shape_served_while_another_compiles(serve: Serve, affine: Path) -> None:
    gate = threading.Event()
    compiling = threading.Event()
    runtime = Runtime()

    def slow_for_batch_3(shapes: Any) -> None:  # the adapter's seam: hold the compile of batch 3
        if next(iter(shapes.values()))[0].lo == 3:
            compiling.set()
            gate.wait(30)

    runtime.before_compile = slow_for_batch_3
    s = serve(
        ["--model_name", "m", "--model_path", str(affine), "--batch_size", "auto", "--plugin_config", F32],
        runtime=runtime,
    )
    predict_raw(s, {"b": batch(8)})  # compiled before the slow one starts
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(predict_raw, s, {"b": batch(3)})
        assert compiling.wait(10)
        for n in (1, 8, 1, 8):
            np.testing.assert_allclose(
                out_array(predict_raw(s, {"b": batch(n)}, timeout=5), "y"), batch(n) * 2 + 1, rtol=1e-6
            )
        assert not pending.done()
        status = ovmsclient.make_grpc_client(s.grpc_address).get_model_status("m")
        assert status[1]["state"] == "AVAILABLE"
        gate.set()
        np.testing.assert_allclose(out_array(pending.result(30), "y"), batch(3) * 2 + 1, rtol=1e-6)


def test_shape_the_model_cannot_take(serve: Serve, tmp_path: Path) -> None:
    s = serve(["--model_name", "m", "--model_path", str(write_rigid(tmp_path / "m")), "--batch_size", "auto"])
    err = rpc_error(predict_raw, s, {"b": batch(3)})
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (err.details() or "").startswith("Model could not be reshaped with requested shape")
    assert out_array(predict_raw(s, {"b": batch(1)}), "y").shape == (1, 2, 5)


def test_single_variant_cache_still_serves_everything(serve: Serve, affine: Path) -> None:
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(affine),
            "--batch_size",
            "auto",
            "--shape_variants",
            "1",
            "--plugin_config",
            F32,
        ]
    )
    for n in (1, 8, 1, 8, 2):
        np.testing.assert_allclose(out_array(predict_raw(s, {"b": batch(n)}), "y"), batch(n) * 2 + 1, rtol=1e-6)


def test_two_inputs_under_auto(serve: Serve, tmp_path: Path) -> None:
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(write_two_inputs(tmp_path / "m")),
            "--batch_size",
            "auto",
            "--plugin_config",
            F32,
        ]
    )
    client = ovmsclient.make_grpc_client(s.grpc_address)
    for n in (1, 4):
        a, b = batch(n), batch(n) * 3
        out = client.predict({"a": a, "b": b}, "m")
        np.testing.assert_allclose(out["sum"], a + b, rtol=1e-6)
        np.testing.assert_allclose(out["diff"], a - b, rtol=1e-6)
    err = rpc_error(predict_raw, s, {"a": batch(1)})
    assert err.details() == "Invalid number of inputs - Expected: 2; Actual: 1"
    err = rpc_error(predict_raw, s, {"a": batch(1), "c": batch(1)})
    assert err.details() == "Missing input with specific name - Required input: b"


def test_onnx_model_and_shape_modes(serve: Serve, tmp_path: Path) -> None:
    onnx_dir = write_onnx_affine(tmp_path / "o")
    s = serve(["--model_name", "m", "--model_path", str(onnx_dir), "--shape", "auto", "--plugin_config", F32])
    for n in (1, 6):
        np.testing.assert_allclose(out_array(predict_raw(s, {"b": batch(n)}), "y"), batch(n) * 2 + 1, rtol=1e-6)
    fixed = serve(
        ["--model_name", "m", "--model_path", str(write_onnx_affine(tmp_path / "f", batch="N")), "--shape", "(2,10)"]
    )
    assert out_array(predict_raw(fixed, {"b": batch(2)}), "y").shape == (2, 10)
    err = rpc_error(predict_raw, fixed, {"b": batch(2, 10).reshape(2, 10, 1)})
    assert err.details() == "Invalid number of shape dimensions - Expected: (2,10); Actual: (2,10,1); input name: b"


def test_layout_transpose(serve: Serve, tmp_path: Path) -> None:
    """NHWC:NCHW: clients send NHWC, the NCHW model sees the transposed data, position for position."""
    h, w = 4, 6  # not square, so H and W cannot be confused without a shape error or wrong values
    s = serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(write_positional(tmp_path / "p", h, w)),
            "--layout",
            "NHWC:NCHW",
            "--batch_size",
            "auto",
            "--plugin_config",
            F32,
        ]
    )
    client = ovmsclient.make_grpc_client(s.grpc_address)
    assert client.get_model_metadata("m")["inputs"]["x"]["shape"] == [1, h, w, 3]
    x = np.random.default_rng(1).random((2, h, w, 3), dtype=np.float32)
    out = client.predict({"x": x}, "m")
    np.testing.assert_allclose(out, x.transpose(0, 3, 1, 2) * positional_weights(h, w), rtol=1e-6)
    assert client.get_model_metadata("m")["inputs"]["x"]["shape"] == [2, h, w, 3]
    err = rpc_error(predict_raw, s, {"x": x.transpose(0, 2, 1, 3).copy()}, "m")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_auto_on_scalar_input_fails_load_and_reports_it(serve: Serve, tmp_path: Path) -> None:
    s = serve(
        ["--model_name", "m", "--model_path", str(write_affine(tmp_path / "m", shape=[])), "--batch_size", "auto"]
    )
    status = ovmsclient.make_grpc_client(s.grpc_address).get_model_status("m")
    assert status[1]["state"] == "LOADING"
    assert "Batching set to AUTO but model contains scalar tensor" in status[1]["error_message"]
    err = rpc_error(predict_raw, s, {"b": batch(1)})
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert err.details() == "Model with requested version is not loaded yet"
