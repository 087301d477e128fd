"""TF Serving gRPC API through a real server: the stock client (ovmsclient) and our own stubs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import ovmsclient
import pytest

from vinoserve.protocol.generated.tensorflow.core.framework import types_pb2
from vinoserve.protocol.generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from vinoserve.protocol.tfs_tensors import array_to_tensor, tensor_to_array

from ..helpers.clients import rpc_error, tfs_request
from ..helpers.models import write_affine, write_two_inputs
from ..helpers.server import F32, RunningServer, Serve


def _args(path: Path, *extra: str) -> list[str]:
    return ["--model_name", "aff", "--model_path", str(path), "--plugin_config", F32, *extra]


class Stubs:
    """Our own generated stubs on one channel."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)])
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel).Predict
        self.metadata = prediction_service_pb2_grpc.PredictionServiceStub(self.channel).GetModelMetadata
        self.status = model_service_pb2_grpc.ModelServiceStub(self.channel).GetModelStatus
        self.reload = model_service_pb2_grpc.ModelServiceStub(self.channel).HandleReloadConfigRequest


@pytest.fixture
def affine(serve: Serve, tmp_path: Path) -> Iterator[tuple[RunningServer, Stubs]]:
    """A server with ``aff`` (y = 2b + 1, b [1,10] f32) and our stubs on it."""
    server = serve(_args(write_affine(tmp_path / "aff")))
    stubs = Stubs(server.grpc_address)
    yield server, stubs
    stubs.channel.close()


def test_stock_client_predict_metadata_status(affine: tuple[RunningServer, Stubs]) -> None:
    server, _ = affine
    client = ovmsclient.make_grpc_client(server.grpc_address)
    x = np.arange(10, dtype=np.float32).reshape(1, 10)
    np.testing.assert_allclose(client.predict({"b": x}, "aff"), x * 2 + 1)
    np.testing.assert_allclose(client.predict({"b": x}, "aff", model_version=1), x * 2 + 1)
    meta = client.get_model_metadata("aff")
    assert meta["model_version"] == 1
    assert meta["inputs"] == {"b": {"shape": [1, 10], "dtype": "DT_FLOAT"}}
    assert meta["outputs"] == {"y": {"shape": [1, 10], "dtype": "DT_FLOAT"}}
    assert client.get_model_status("aff") == {1: {"state": "AVAILABLE", "error_code": 0, "error_message": "OK"}}


def test_predict_with_our_stubs(affine: tuple[RunningServer, Stubs]) -> None:
    _, stubs = affine
    x = np.linspace(-1, 1, 10, dtype=np.float32).reshape(1, 10)
    resp = stubs.predict(tfs_request({"b": x}, "aff"), timeout=60)
    assert resp.model_spec.name == "aff" and resp.model_spec.version.value == 1
    assert resp.model_spec.signature_name == "serving_default"
    np.testing.assert_allclose(tensor_to_array(resp.outputs["y"], "y"), x * 2 + 1, rtol=1e-6)
    # typed float_val instead of tensor_content
    typed = array_to_tensor(x)
    typed.ClearField("tensor_content")
    typed.float_val.extend(x.reshape(-1).tolist())
    resp = stubs.predict(tfs_request({"b": typed}, "aff", 1), timeout=60)
    np.testing.assert_allclose(tensor_to_array(resp.outputs["y"], "y"), x * 2 + 1, rtol=1e-6)


def test_output_filter(serve: Serve, tmp_path: Path) -> None:
    server = serve(_args(write_two_inputs(tmp_path / "two")))
    stubs = Stubs(server.grpc_address)
    a, b = np.ones((1, 10), np.float32), np.full((1, 10), 3, np.float32)
    assert set(stubs.predict(tfs_request({"a": a, "b": b}, "aff"), timeout=60).outputs) == {"sum", "diff"}
    req = tfs_request({"a": a, "b": b}, "aff")
    req.output_filter.append("diff")
    resp = stubs.predict(req, timeout=60)
    assert list(resp.outputs) == ["diff"]
    np.testing.assert_allclose(tensor_to_array(resp.outputs["diff"], "diff"), a - b)
    req.output_filter[:] = ["nope"]
    assert rpc_error(stubs.predict, req, timeout=60).code() == grpc.StatusCode.INVALID_ARGUMENT
    stubs.channel.close()


def test_metadata_and_status_messages(affine: tuple[RunningServer, Stubs]) -> None:
    _, stubs = affine
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "aff"
    resp = stubs.metadata(req, timeout=60)
    assert resp.model_spec.name == "aff" and resp.model_spec.version.value == 1
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sig_map)
    sig = sig_map.signature_def["serving_default"]
    assert sig.inputs["b"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in sig.inputs["b"].tensor_shape.dim] == [1, 10]
    assert sig.outputs["y"].name == "y"

    missing = get_model_metadata_pb2.GetModelMetadataRequest()
    missing.model_spec.name = "aff"
    assert rpc_error(stubs.metadata, missing, timeout=60).code() == grpc.StatusCode.INVALID_ARGUMENT

    status_req = get_model_status_pb2.GetModelStatusRequest()
    status_req.model_spec.name = "aff"
    status = stubs.status(status_req, timeout=60)
    (entry,) = status.model_version_status
    assert (entry.version, entry.state) == (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    assert (entry.status.error_code, entry.status.error_message) == (0, "OK")

    err = rpc_error(stubs.reload, model_management_pb2.ReloadConfigRequest(), timeout=60)
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED


def test_status_lists_every_version(serve: Serve, tmp_path: Path) -> None:
    base = write_affine(write_affine(tmp_path / "aff", 1), 2)
    server = serve(_args(base, "--model_version_policy", '{"all":{}}'))
    stubs = Stubs(server.grpc_address)
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "aff"
    versions = {e.version: e.state for e in stubs.status(req, timeout=60).model_version_status}
    assert versions == {1: 30, 2: 30}
    req.model_spec.version.value = 1
    assert [e.version for e in stubs.status(req, timeout=60).model_version_status] == [1]
    stubs.channel.close()


def test_error_rows(affine: tuple[RunningServer, Stubs]) -> None:
    _, stubs = affine
    x = np.zeros((1, 10), np.float32)

    def fails(
        inputs: dict[str, Any],
        code: grpc.StatusCode,
        text: str,
        model: str = "aff",
        version: int | None = None,
        whole: bool = True,
    ) -> None:
        """The request fails with ``code`` and exactly ``text`` (or text that starts so)."""
        err = rpc_error(stubs.predict, tfs_request(inputs, model, version), timeout=60)
        assert err.code() == code, err.details()
        assert err.details() == text if whole else (err.details() or "").startswith(text), err.details()

    fails({"b": x}, grpc.StatusCode.NOT_FOUND, "Model with requested name is not found", model="nope")
    fails({"b": x}, grpc.StatusCode.NOT_FOUND, "Model with requested version is not found", version=7)
    short = array_to_tensor(x)
    short.tensor_content = short.tensor_content[:36]
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    fails(
        {"b": short},
        invalid,
        "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 36 bytes; input name: b",
    )
    few = array_to_tensor(x)
    few.ClearField("tensor_content")
    few.float_val.extend([0.0] * 9)
    fails(
        {"b": few},
        invalid,
        "Invalid number of values in tensor proto container - Expected: 10; Actual: 9; input name: b",
    )
    negative = array_to_tensor(np.zeros((0, 10), np.float32))
    negative.tensor_shape.dim[0].size = -5
    fails(
        {"b": negative},
        invalid,
        "Invalid input shape - Negative or zero dimension size is not acceptable: (-5,10); input name: b",
    )
    fails(
        {"b": np.zeros((2, 10), np.float32)}, invalid, "Invalid input batch size - Expected: 1; Actual: 2", whole=False
    )
    fails(
        {"b": np.zeros((1, 10), np.int32)},
        invalid,
        "Invalid input precision - Expected: FP32; Actual: I32",
        whole=False,
    )
    fails({"c": x}, invalid, "Missing input with specific name", whole=False)
    fails({"b": x, "c": x}, invalid, "Invalid number of inputs - Expected: 1; Actual: 2", whole=False)
    meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta.model_spec.name = "nope"
    assert rpc_error(stubs.metadata, meta, timeout=60).code() == grpc.StatusCode.NOT_FOUND
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "nope"
    assert rpc_error(stubs.status, status, timeout=60).code() == grpc.StatusCode.NOT_FOUND


def test_message_above_limit_is_resource_exhausted(serve: Serve, tmp_path: Path) -> None:
    server = serve(_args(write_affine(tmp_path / "aff"), "--max_request_mb", "1"))
    stubs = Stubs(server.grpc_address)
    big = tfs_request({"b": np.zeros((1, 10), np.float32)}, "aff")
    big.inputs["b"].tensor_content = b"\0" * (2 << 20)
    err = rpc_error(stubs.predict, big, timeout=60)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(1 << 20) in (err.details() or "")  # the limit, in bytes
    stubs.channel.close()


def test_auto_batch_and_empty_batch(serve: Serve, tmp_path: Path) -> None:
    server = serve(_args(write_affine(tmp_path / "aff"), "--batch_size", "auto"))
    client = ovmsclient.make_grpc_client(server.grpc_address)
    x = np.arange(30, dtype=np.float32).reshape(3, 10)
    np.testing.assert_allclose(client.predict({"b": x}, "aff"), x * 2 + 1)
    assert client.get_model_metadata("aff")["inputs"]["b"]["shape"] == [3, 10]
    stubs = Stubs(server.grpc_address)
    resp = stubs.predict(tfs_request({"b": np.zeros((0, 10), np.float32)}, "aff"), timeout=60)
    assert tensor_to_array(resp.outputs["y"], "y").shape == (0, 10)
    stubs.channel.close()
