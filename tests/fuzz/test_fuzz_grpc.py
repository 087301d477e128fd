"""Fuzzing the gRPC decoders (TF Serving Predict, KServe ModelInfer) of one real server.

Requests are built field by field with mutated dtypes, shapes, sizes and names, then sent as they
are or mutated byte-wise. Every answer must be OK or a client error; never INTERNAL or UNKNOWN.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2 as pb
from vinoserve.protocol.generated.tensorflow.core.framework import types_pb2
from vinoserve.protocol.generated.tensorflow_serving.apis import predict_pb2

from ..helpers.clients import dtype_number
from ..helpers.server import RunningServer
from .common import FUZZ, MODELS, NAMES, TALLY, dims, mutated, start_server

pytestmark = pytest.mark.fuzz

PREDICT = "/tensorflow.serving.PredictionService/Predict"
INFER = "/inference.GRPCInferenceService/ModelInfer"
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
TF_TYPED = [
    "float_val",
    "double_val",
    "int_val",
    "int64_val",
    "bool_val",
    "half_val",
    "uint32_val",
    "uint64_val",
    "string_val",
]
KSERVE_TYPES = [
    "FP32",
    "FP64",
    "FP16",
    "BF16",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "BOOL",
    "BYTES",
    "fp32",
    "",
    "FP33",
]
KSERVE_CONTENTS = [
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
    "bytes_contents",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    s = start_server(tmp_path_factory.mktemp("fuzz-grpc"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_address) as ch:
        yield ch


def _send(channel: grpc.Channel, path: str, body: bytes) -> None:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
    try:
        call(body, timeout=60)
        TALLY[f"grpc {path} OK"] += 1
    except grpc.RpcError as err:
        TALLY[f"grpc {path} {err.code().name}"] += 1
        assert err.code() not in FORBIDDEN, (err.code(), err.details(), body[:200])


def _values(field: str) -> st.SearchStrategy[list[Any]]:
    if field == "string_val":
        return st.lists(st.binary(max_size=8), max_size=24)
    if field == "bool_val":
        return st.lists(st.booleans(), max_size=24)
    if field in ("float_val", "double_val"):
        return st.lists(st.floats(width=32), max_size=24)
    bits = {"int_val": 31, "half_val": 31, "int64_val": 63}.get(field)
    if bits is not None:
        return st.lists(st.integers(-(2**bits), 2**bits - 1), max_size=24)
    return st.lists(st.integers(0, 2 ** (32 if field == "uint32_val" else 64) - 1), max_size=24)


@st.composite
def tfs_near_valid(draw: st.DrawFn) -> bytes:
    """A valid Predict of aff (b: FP32 [1,10]) with at most one of dtype, shape, size or name changed."""
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "aff"
    change = draw(st.sampled_from(["none", "dtype", "shape", "size", "name"]))
    t = req.inputs[draw(st.sampled_from(NAMES)) if change == "name" else "b"]
    t.dtype, shape, size = types_pb2.DT_FLOAT, [1, 10], 40
    if change == "dtype":
        t.dtype = dtype_number(draw(st.sampled_from([2, 3, 7, 9, 19, 99])))
    elif change == "shape":
        shape = draw(dims())
    elif change == "size":
        size = draw(st.integers(0, 80))
    for d in shape:
        t.tensor_shape.dim.add().size = d
    t.tensor_content = draw(st.binary(min_size=size, max_size=size))
    return draw(mutated(req.SerializeToString()))


@st.composite
def tfs_requests(draw: st.DrawFn) -> bytes:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = draw(st.sampled_from([*MODELS, "nope"]))
    if draw(st.booleans()):
        req.model_spec.version.value = draw(st.sampled_from([0, 1, 2, 2**62]))
    for _ in range(draw(st.integers(0, 3))):
        t = req.inputs[draw(st.sampled_from(NAMES))]
        t.dtype = dtype_number(draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 9, 10, 14, 17, 19, 22, 23, 0, 8, 12, 99])))
        shape = draw(dims())
        for d in shape:
            t.tensor_shape.dim.add().size = d
        if draw(st.booleans()):
            # content sized from the shape when it is small (plausible), else arbitrary
            count = math.prod(max(d, 0) for d in shape)
            size = count * draw(st.sampled_from([1, 2, 4, 8])) if count <= 64 else draw(st.integers(0, 64))
            t.tensor_content = draw(st.binary(min_size=size, max_size=size)) if size <= 512 else b""
        else:
            field = draw(st.sampled_from(TF_TYPED))
            getattr(t, field).extend(draw(_values(field)))
    req.output_filter.extend(draw(st.lists(st.sampled_from(["y", "nope", ""]), max_size=2)))
    return draw(mutated(req.SerializeToString()))


@st.composite
def kserve_near_valid(draw: st.DrawFn) -> bytes:
    """A valid ModelInfer of aff (raw FP32 [1,10]) with at most one of datatype, shape, size or name changed."""
    change = draw(st.sampled_from(["none", "datatype", "shape", "size", "name"]))
    req = pb.ModelInferRequest(model_name="aff")
    t = req.inputs.add(
        name=draw(st.sampled_from(NAMES)) if change == "name" else "b",
        datatype=draw(st.sampled_from(KSERVE_TYPES)) if change == "datatype" else "FP32",
    )
    t.shape.extend(d for d in draw(dims()) if -(2**63) <= d < 2**63) if change == "shape" else t.shape.extend([1, 10])
    size = draw(st.integers(0, 80)) if change == "size" else 40
    req.raw_input_contents.append(draw(st.binary(min_size=size, max_size=size)))
    return draw(mutated(req.SerializeToString()))


@st.composite
def kserve_requests(draw: st.DrawFn) -> bytes:
    req = pb.ModelInferRequest(
        model_name=draw(st.sampled_from([*MODELS, "nope"])),
        model_version=draw(st.sampled_from(["", "1", "0", "x", "-1", "99"])),
        id=draw(st.text(max_size=8)),
    )
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        t = req.inputs.add(name=draw(st.sampled_from(NAMES)), datatype=draw(st.sampled_from(KSERVE_TYPES)))
        t.shape.extend(d for d in draw(dims()) if -(2**63) <= d < 2**63)
        if raw:
            req.raw_input_contents.append(draw(st.binary(max_size=96)))
        else:
            field = draw(st.sampled_from(KSERVE_CONTENTS))
            values = {
                "bool_contents": st.booleans(),
                "bytes_contents": st.binary(max_size=8),
                "fp32_contents": st.floats(width=32),
                "fp64_contents": st.floats(),
                "int_contents": st.integers(-(2**31), 2**31 - 1),
                "int64_contents": st.integers(-(2**63), 2**63 - 1),
                "uint_contents": st.integers(0, 2**32 - 1),
                "uint64_contents": st.integers(0, 2**64 - 1),
            }[field]
            getattr(t.contents, field).extend(draw(st.lists(values, max_size=24)))
    if raw and draw(st.booleans()):
        req.raw_input_contents.append(b"\0" * 4)  # one more buffer than inputs
    for name in draw(st.lists(st.sampled_from(["y", "nope"]), max_size=2)):
        req.outputs.add(name=name)
    return draw(mutated(req.SerializeToString()))


@FUZZ
@given(body=tfs_requests() | tfs_near_valid())
def test_tfs_predict(channel: grpc.Channel, body: bytes) -> None:
    _send(channel, PREDICT, body)


@FUZZ
@given(body=kserve_requests() | kserve_near_valid())
def test_kserve_infer(channel: grpc.Channel, body: bytes) -> None:
    _send(channel, INFER, body)


@FUZZ
@given(
    path=st.sampled_from(
        [
            PREDICT,
            INFER,
            "/tensorflow.serving.PredictionService/GetModelMetadata",
            "/tensorflow.serving.ModelService/GetModelStatus",
            "/inference.GRPCInferenceService/ModelMetadata",
        ]
    ),
    body=st.binary(max_size=512),
)
def test_random_bytes(channel: grpc.Channel, path: str, body: bytes) -> None:
    _send(channel, path, body)


def test_server_still_answers_correctly(channel: grpc.Channel) -> None:
    """After the fuzzing: a valid request of each API gets the right answer."""
    x = np.arange(10, dtype=np.float32).reshape(1, 10)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "aff"
    t = req.inputs["b"]
    t.dtype = types_pb2.DT_FLOAT
    for d in x.shape:
        t.tensor_shape.dim.add().size = d
    t.tensor_content = x.tobytes()
    predict: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(PREDICT)
    out = predict_pb2.PredictResponse.FromString(predict(req.SerializeToString(), timeout=60))
    np.testing.assert_array_equal(np.frombuffer(out.outputs["y"].tensor_content, np.float32), x.ravel() * 2 + 1)
    kreq = pb.ModelInferRequest(model_name="aff")
    kreq.inputs.add(name="b", datatype="FP32", shape=[1, 10])
    kreq.raw_input_contents.append(x.tobytes())
    infer: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(INFER)
    kout = pb.ModelInferResponse.FromString(infer(kreq.SerializeToString(), timeout=60))
    np.testing.assert_array_equal(np.frombuffer(kout.raw_output_contents[0], np.float32), x.ravel() * 2 + 1)
    sent = {k: v for k, v in TALLY.items() if k.startswith("grpc")}
    print(f"\ngRPC fuzz: {sum(sent.values())} requests: {dict(sorted(sent.items()))}")
