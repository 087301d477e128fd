"""Hostile input through a real server: unparseable protobuf, overflowing shapes, deep JSON, lax JSON types.

Each case is a client's mistake: it gets its SPEC §6 row (INVALID_ARGUMENT / 400), never INTERNAL,
UNKNOWN or 500, and the server keeps serving.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import requests

from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2 as pb
from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2_grpc as pb_grpc
from vinoserve.protocol.generated.tensorflow.core.framework import types_pb2
from vinoserve.protocol.generated.tensorflow_serving.apis import (
    model_service_pb2,
    predict_pb2,
    prediction_service_pb2,
)

from ..helpers.clients import tfs_request
from ..helpers.models import write_affine, write_bool, write_strings
from ..helpers.server import RunningServer, serve_models

X = list(range(10))
BIG = 2**40
OVERFLOWING = [[0, BIG, BIG], [BIG, BIG, BIG]]
MODELS = {"aff": {}, "i32": {"dtype": np.int32}, "u8": {"dtype": np.uint8}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """aff (FP32 [1,10]), i32 and u8 affine models, bool (BOOL [1,4]) and str (strings)."""
    root = tmp_path_factory.mktemp("hostile")
    paths = {n: write_affine(root / n, **kw) for n, kw in MODELS.items()}  # type: ignore[arg-type]
    paths["bool"] = write_bool(root / "bool")
    paths["str"] = write_strings(root / "str")
    s = serve_models(root, paths)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_address) as ch:
        yield ch


def _grpc_error(channel: grpc.Channel, path: str, body: bytes) -> grpc.RpcError:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
    with pytest.raises(grpc.RpcError) as info:
        call(body, timeout=60)
    return info.value


def _post(server: RunningServer, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(server.rest_url + path, data=data, headers=headers, timeout=60)


def _rest_error(r: requests.Response, text: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(text), r.text


def _kserve_tensor(shape: Any, data: Any, datatype: str = "FP32", **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "b", "datatype": datatype, "shape": shape, "data": data}], **extra}


def _services() -> list[tuple[str, str]]:
    """Every RPC of both APIs, as (full path, request type), read from the service descriptors."""
    found = []
    for service in (
        prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"],
        model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
        pb.DESCRIPTOR.services_by_name["GRPCInferenceService"],
    ):
        found += [(f"/{service.full_name}/{m.name}", m.input_type.full_name) for m in service.methods]
    return found


# Not protobuf: an invalid tag (field 0), a varint past 10 bytes, a length running past the end.
GARBAGE = [b"\x00", b"\x08" + b"\xff" * 11, b"\x0a\x05ab"]


@pytest.mark.parametrize(("path", "message"), _services(), ids=[p for p, _ in _services()])
def test_unparseable_protobuf_is_invalid_message(channel: grpc.Channel, path: str, message: str) -> None:
    for body in GARBAGE:
        err = _grpc_error(channel, path, body)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (body, err.details())
        assert err.details() == f"Invalid message - the body is not a valid {message}"


def test_server_serves_after_garbage(channel: grpc.Channel) -> None:
    _grpc_error(channel, "/tensorflow.serving.PredictionService/Predict", GARBAGE[0])
    predict = channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict",
        request_serializer=predict_pb2.PredictRequest.SerializeToString,
        response_deserializer=predict_pb2.PredictResponse.FromString,
    )
    out = predict(tfs_request({"b": np.arange(10, dtype=np.float32).reshape(1, 10)}, model="aff"), timeout=60)
    np.testing.assert_array_equal(np.frombuffer(out.outputs["y"].tensor_content, np.float32), np.arange(10) * 2 + 1)


@pytest.mark.parametrize("shape", OVERFLOWING, ids=["zero-element", "no-data"])
def test_overflowing_shape_tfs_grpc(channel: grpc.Channel, shape: list[int]) -> None:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "aff"
    for typed in (False, True):
        t = req.inputs["b"]
        t.Clear()
        t.dtype = types_pb2.DT_FLOAT
        for d in shape:
            t.tensor_shape.dim.add().size = d
        if not typed:
            t.tensor_content = b""  # unset either way: the typed path reads float_val
        err = _grpc_error(channel, "/tensorflow.serving.PredictionService/Predict", req.SerializeToString())
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert (err.details() or "").startswith("Invalid input shape - the element count of"), err.details()
    # string inputs take the same check
    t = req.inputs["b"]
    t.dtype = types_pb2.DT_STRING
    err = _grpc_error(channel, "/tensorflow.serving.PredictionService/Predict", req.SerializeToString())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and (err.details() or "").startswith("Invalid input shape")


@pytest.mark.parametrize("shape", OVERFLOWING, ids=["zero-element", "no-data"])
def test_overflowing_shape_kserve_grpc(channel: grpc.Channel, shape: list[int]) -> None:
    for raw in (False, True):
        req = pb.ModelInferRequest(model_name="aff")
        req.inputs.add(name="b", datatype="FP32", shape=shape)
        if raw:
            req.raw_input_contents.append(b"")
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert (info.value.details() or "").startswith("Invalid input shape - the element count of")


@pytest.mark.parametrize("shape", OVERFLOWING, ids=["zero-element", "no-data"])
def test_overflowing_shape_kserve_rest(server: RunningServer, shape: list[int]) -> None:
    _rest_error(_post(server, "/v2/models/aff/infer", _kserve_tensor(shape, [])), "Invalid input shape - the element")
    header = json.dumps(
        {"inputs": [{"name": "b", "datatype": "FP32", "shape": shape, "parameters": {"binary_data_size": 0}}]}
    ).encode()
    r = _post(server, "/v2/models/aff/infer", header, {"Inference-Header-Content-Length": str(len(header))})
    _rest_error(r, "Invalid input shape - the element count of")


def _nest(depth: int, leaf: bytes = b"1") -> bytes:
    """``leaf`` inside ``depth`` JSON arrays (as text: the json module itself cannot write 1000 levels)."""
    return b"[" * depth + leaf + b"]" * depth


def test_deep_json_tfs_rest(server: RunningServer) -> None:
    # 1000 levels: past Python's recursion limit, within orjson's own; 100000: past both
    bodies = [
        b'{"instances": %s}' % _nest(1000),
        b'{"inputs": {"b": %s}}' % _nest(1000),
        b'{"instances": [%s], "x": %s}' % (json.dumps(X).encode(), _nest(1000)),
        b'{"instances": %s}' % _nest(64),
    ]  # 64 arrays in the body object: 65 levels
    for body in bodies:
        _rest_error(
            _post(server, "/v1/models/aff:predict", body),
            "Could not parse instance content. Not valid ndarray detected - JSON nests deeper than 64 levels",
        )
    r = _post(server, "/v1/models/aff:predict", b'{"instances": %s}' % _nest(100_000))
    _rest_error(r, "Could not parse instance content")
    r = _post(server, "/v1/models/aff:predict", b'{"instances": %s}' % _nest(63))  # 64 levels: parsed
    _rest_error(r, "Invalid number of shape dimensions")


def test_deep_json_kserve_rest(server: RunningServer) -> None:
    head = b'{"inputs": [{"name": "b", "datatype": "FP32", "shape": [1, 10], '
    for body in (
        head + b'"data": %s}]}' % _nest(1000),
        head + b'"data": %s, "parameters": {"x": %s}}]}' % (json.dumps(X).encode(), _nest(1000)),
    ):
        _rest_error(
            _post(server, "/v2/models/aff/infer", body),
            "Could not parse instance content. Not valid ndarray detected - JSON nests deeper than 64 levels",
        )


TFS_TYPE_ERRORS = [
    ("aff", [None] * 10, "FP32 takes no null"),
    ("aff", [True] * 10, "FP32 takes no true/false"),
    ("aff", [1] * 9 + [False], "FP32 takes no true/false"),
    ("aff", ["1"] + [1] * 9, "FP32 takes no string"),
    ("i32", [2**31] + [1] * 9, "a value is out of the range of I32"),
    ("i32", [-(2**31) - 1] + [1] * 9, "a value is out of the range of I32"),
    ("i32", [2**64] * 10, "a value is out of the range of I32"),
    ("i32", [1.5] * 10, "I32 takes whole numbers only"),
    ("i32", [3e10] * 10, "a value is out of the range of I32"),
    ("u8", [256] + [0] * 9, "a value is out of the range of U8"),
    ("u8", [-1] + [0] * 9, "a value is out of the range of U8"),
    ("bool", [1, 0, 1, 0], "BOOL takes no number"),
]


@pytest.mark.parametrize(("model", "row", "text"), TFS_TYPE_ERRORS, ids=[f"{m}-{t}" for m, _, t in TFS_TYPE_ERRORS])
def test_wrong_json_types_tfs_rest(server: RunningServer, model: str, row: list[Any], text: str) -> None:
    r = _post(server, f"/v1/models/{model}:predict", {"instances": [row]})
    _rest_error(r, f"Could not parse instance content. Not valid ndarray detected - {text}")
    assert r.json()["error"].endswith("; input name: b")


def test_right_json_types_tfs_rest(server: RunningServer) -> None:
    ok = _post(server, "/v1/models/i32:predict", {"instances": [[3.0] * 9 + [2**29]]})  # whole numbers fit
    assert ok.status_code == 200 and ok.json() == {"predictions": [[7] * 9 + [2**30 + 1]]}, ok.text
    ok = _post(server, "/v1/models/u8:predict", {"instances": [[0] * 9 + [127]]})
    assert ok.status_code == 200 and ok.json() == {"predictions": [[1] * 9 + [255]]}, ok.text
    ok = _post(server, "/v1/models/bool:predict", {"instances": [[True, False, True, False]]})
    assert ok.status_code == 200 and ok.json() == {"predictions": [[False, True, False, True]]}, ok.text


KSERVE_TYPE_ERRORS = [
    (_kserve_tensor([1.5, 10], X), "Invalid input shape - shape must be a list of integers"),
    (_kserve_tensor(["1", 10], X), "Invalid input shape - shape must be a list of integers"),
    (_kserve_tensor([True, 10], X), "Invalid input shape - shape must be a list of integers"),
    (_kserve_tensor([1, 10], [None] * 10), "Could not parse instance content. Not valid ndarray detected - FP32"),
    (_kserve_tensor([1, 10], [True] * 10), "Could not parse instance content. Not valid ndarray detected - FP32"),
    (_kserve_tensor([1, 10], [2**31] * 10, "INT32"), "Could not parse instance content. Not valid ndarray detected"),
    (_kserve_tensor([1, 4], [1, 0, 1, 0], "BOOL"), "Could not parse instance content. Not valid ndarray detected"),
    (_kserve_tensor([1, 10], X, id=7), "Invalid argument - id must be a string"),
    (_kserve_tensor([1, 10], X, outputs=[{"name": ["y"]}]), "Invalid argument - outputs must be a list"),
    (
        _kserve_tensor([1, 10], X, outputs=[{"name": "y", "parameters": {"binary_data": "yes"}}]),
        "Invalid argument - binary_data must be a boolean",
    ),
]


@pytest.mark.parametrize(("body", "text"), KSERVE_TYPE_ERRORS, ids=[str(i) for i in range(len(KSERVE_TYPE_ERRORS))])
def test_wrong_json_types_kserve_rest(server: RunningServer, body: dict[str, Any], text: str) -> None:
    model = {"INT32": "i32", "BOOL": "bool"}.get(body["inputs"][0]["datatype"], "aff")
    _rest_error(_post(server, f"/v2/models/{model}/infer", body), text)


def test_right_json_types_kserve_rest(server: RunningServer) -> None:
    r = _post(server, "/v2/models/bool/infer", _kserve_tensor([1, 4], [[True, False, True, False]], "BOOL"))
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [False, True, False, True], r.text
    r = _post(server, "/v2/models/i32/infer", _kserve_tensor([1, 10], [2.0] * 10, "INT32", id="q"))
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [5] * 10 and r.json()["id"] == "q", r.text


def test_binary_extension_lengths(server: RunningServer) -> None:
    header = json.dumps(
        {"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 8}}]}
    ).encode()
    body = header + struct.pack("<I", 4) + b"abcd"
    for hl in ("-1", str(len(body) + 1), "1e3", "x"):
        r = _post(server, "/v2/models/str/infer", body, {"Inference-Header-Content-Length": hl})
        assert r.status_code == 400, (hl, r.text)
    r = _post(server, "/v2/models/str/infer", body, {"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/v1/models/aff:predict", "/v2/models/aff/infer"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_body_that_does_not_follow_its_content_encoding_is_a_client_error(
    server: RunningServer, path: str, encoding: str
) -> None:
    r = _post(server, path, b"not compressed at all", {"Content-Encoding": encoding})
    _rest_error(r, "Invalid argument - the request body cannot be read")


def test_an_oversize_shared_memory_register_body_is_413_also_when_chunked(server: RunningServer) -> None:
    body = json.dumps({"key": "k", "offset": 0, "byte_size": 4, "pad": "x" * 70_000}).encode()
    url = server.rest_url + "/v2/systemsharedmemory/region/big/register"
    declared = requests.post(url, data=body, timeout=60)
    chunked = requests.post(url, data=iter([body[:30_000], body[30_000:]]), timeout=60)
    for r in (declared, chunked):
        assert r.status_code == 413 and "at most 65536 bytes" in r.json()["error"], r.text
