"""TensorProto <-> numpy: every precision both ways, both encodings, every error it raises."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.generated.tensorflow.core.framework import tensor_pb2, types_pb2
from vinoserve.protocol.tfs_tensors import array_to_tensor, encode_array, tensor_to_array
from vinoserve.types import BY_NAME, PRECISIONS, Precision

NUMERIC = [p for p in PRECISIONS if p.name != "STRING"]


def _sample(name: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    dtype = BY_NAME[name].np_dtype
    n = int(np.prod(shape))
    if dtype == np.bool_:
        return np.asarray((np.arange(n) % 2 == 0).reshape(shape))
    return (np.arange(n) * 3 % 100 + 1).astype(dtype).reshape(shape)


def _proto(dtype: int, dims: list[int]) -> tensor_pb2.TensorProto:
    t = tensor_pb2.TensorProto()
    t.dtype = dtype  # type: ignore[assignment]  # any number, also ones outside the enum
    for d in dims:
        t.tensor_shape.dim.add().size = d
    return t


def _wire(t: tensor_pb2.TensorProto) -> tensor_pb2.TensorProto:
    """Through bytes, as a server receives it."""
    return tensor_pb2.TensorProto.FromString(t.SerializeToString())


@pytest.mark.parametrize("precision", NUMERIC, ids=lambda p: p.name)
def test_tensor_content_round_trip(precision: Precision) -> None:
    array = _sample(precision.name)
    t = _wire(array_to_tensor(array, precision))
    assert t.dtype == precision.tf
    assert [d.size for d in t.tensor_shape.dim] == [2, 3]
    assert len(t.tensor_content) == array.nbytes
    back = tensor_to_array(t, "b")
    assert back.dtype == precision.np_dtype and back.shape == (2, 3)
    np.testing.assert_array_equal(back, array)


def test_tensor_content_is_not_copied() -> None:
    t = _wire(array_to_tensor(np.ones((4, 5), np.float32)))
    back = tensor_to_array(t, "b")
    assert back.base is not None and not back.flags.writeable  # a view on the message bytes


def _typed(precision_name: str, values: np.ndarray) -> tensor_pb2.TensorProto:
    p = BY_NAME[precision_name]
    t = _proto(p.tf, list(values.shape))
    flat = values.reshape(-1)
    field = {
        "FP32": "float_val",
        "FP64": "double_val",
        "I32": "int_val",
        "I16": "int_val",
        "I8": "int_val",
        "U8": "int_val",
        "U16": "int_val",
        "I64": "int64_val",
        "U32": "uint32_val",
        "U64": "uint64_val",
        "BOOL": "bool_val",
        "FP16": "half_val",
        "BF16": "half_val",
    }[precision_name]
    if precision_name == "FP16":
        getattr(t, field).extend(int(v) for v in flat.view(np.uint16))
    else:
        getattr(t, field).extend(v.item() for v in flat)
    return _wire(t)


@pytest.mark.parametrize("precision", NUMERIC, ids=lambda p: p.name)
def test_typed_fields(precision: Precision) -> None:
    array = _sample(precision.name)
    back = tensor_to_array(_typed(precision.name, array), "b")
    assert back.dtype == precision.np_dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_half_val_holds_fp16_bits() -> None:
    t = _proto(types_pb2.DT_HALF, [3])
    t.half_val.extend([0x3C00, 0xC000, 0x3800])  # 1.0, -2.0, 0.5
    np.testing.assert_array_equal(tensor_to_array(_wire(t), "b"), np.array([1.0, -2.0, 0.5], np.float16))


def test_bf16_half_val_keeps_raw_bits() -> None:
    t = _proto(types_pb2.DT_BFLOAT16, [2])
    t.half_val.extend([0x3F80, 0xC000])  # bf16 1.0, -2.0
    back = tensor_to_array(_wire(t), "b")
    assert back.dtype == np.uint16
    as_f32 = (back.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(as_f32, np.array([1.0, -2.0], np.float32))


def test_narrow_int_val_wraps_like_a_c_cast() -> None:
    t = _proto(types_pb2.DT_UINT8, [2])
    t.int_val.extend([255, 256])
    np.testing.assert_array_equal(tensor_to_array(t, "b"), np.array([255, 0], np.uint8))


def test_strings_both_ways() -> None:
    t = _proto(types_pb2.DT_STRING, [2, 2])
    t.string_val.extend([b"a", b"", b"\x00\xff", b"longer value"])
    back = tensor_to_array(_wire(t), "b")
    assert back.dtype == object and back.shape == (2, 2)
    assert back.tolist() == [[b"a", b""], [b"\x00\xff", b"longer value"]]
    again = _wire(array_to_tensor(back))
    assert again.dtype == types_pb2.DT_STRING and list(again.string_val) == list(t.string_val)
    assert not again.tensor_content
    text = array_to_tensor(np.array(["é", "x"], dtype=object))
    assert list(text.string_val) == ["é".encode(), b"x"]


def test_scalar_and_empty_batch() -> None:
    scalar = tensor_to_array(_wire(array_to_tensor(np.array(7, np.int64))), "b")
    assert scalar.shape == () and scalar == 7
    empty = tensor_to_array(_proto(types_pb2.DT_FLOAT, [0, 10]), "b")
    assert empty.shape == (0, 10) and empty.dtype == np.float32
    strings = tensor_to_array(_proto(types_pb2.DT_STRING, [0]), "b")
    assert strings.shape == (0,)


def test_encode_into_response_map_entry() -> None:
    from vinoserve.protocol.generated.tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    encode_array(np.arange(6, dtype=np.float32).reshape(2, 3).T, response.outputs["y"])  # non-contiguous
    back = tensor_to_array(_wire(response.outputs["y"]), "y")
    np.testing.assert_array_equal(back, np.arange(6, dtype=np.float32).reshape(2, 3).T)


def _raises(t: tensor_pb2.TensorProto, code: StatusCode, text: str, max_bytes: int | None = None) -> None:
    with pytest.raises(VinoserveError) as info:
        tensor_to_array(t, "b", max_bytes)
    assert info.value.code is code
    assert str(info.value) == text


def test_content_size_error_text() -> None:
    t = _proto(types_pb2.DT_FLOAT, [1, 10])
    t.tensor_content = b"\0" * 36
    _raises(
        t,
        StatusCode.INVALID_CONTENT_SIZE,
        "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 36 bytes; input name: b",
    )


def test_value_count_error_text() -> None:
    t = _proto(types_pb2.DT_FLOAT, [1, 10])
    t.float_val.extend([1.0] * 9)
    _raises(
        t,
        StatusCode.INVALID_VALUE_COUNT,
        "Invalid number of values in tensor proto container - Expected: 10; Actual: 9; input name: b",
    )
    s = _proto(types_pb2.DT_STRING, [3])
    s.string_val.append(b"x")
    _raises(
        s,
        StatusCode.INVALID_VALUE_COUNT,
        "Invalid number of values in tensor proto container - Expected: 3; Actual: 1; input name: b",
    )
    nothing = _proto(types_pb2.DT_INT32, [2])
    _raises(
        nothing,
        StatusCode.INVALID_VALUE_COUNT,
        "Invalid number of values in tensor proto container - Expected: 2; Actual: 0; input name: b",
    )


def test_negative_dimension_error_text() -> None:
    t = _proto(types_pb2.DT_FLOAT, [-5, 10])
    _raises(
        t,
        StatusCode.INVALID_SHAPE,
        "Invalid input shape - Negative or zero dimension size is not acceptable: (-5,10); input name: b",
    )


def test_unsupported_dtype() -> None:
    t = _proto(types_pb2.DT_COMPLEX64, [1])
    t.scomplex_val.extend([1.0, 2.0])
    _raises(
        t, StatusCode.INVALID_PRECISION, "Invalid input precision - Unsupported precision: DT_COMPLEX64; input name: b"
    )
    _raises(
        _proto(types_pb2.DT_INVALID, [1]),
        StatusCode.INVALID_PRECISION,
        "Invalid input precision - Unsupported precision: DT_INVALID; input name: b",
    )


def test_decoded_size_above_limit() -> None:
    t = array_to_tensor(np.zeros((4, 4), np.float32))  # 64 bytes
    with pytest.raises(VinoserveError) as info:
        tensor_to_array(t, "b", max_bytes=63)
    assert info.value.code is StatusCode.REQUEST_TOO_LARGE
    assert "63 bytes" in str(info.value)
    assert tensor_to_array(t, "b", max_bytes=64).shape == (4, 4)


@pytest.mark.parametrize("field", ["tensor_content", "float_val", "string_val"])
def test_huge_declared_shape_allocates_nothing(field: str) -> None:
    huge = [2**20, 2**20, 2**10]  # 2**50 elements: a size numpy could index, never allocated
    dtype = types_pb2.DT_STRING if field == "string_val" else types_pb2.DT_FLOAT
    t = _proto(dtype, huge)
    if field == "tensor_content":
        t.tensor_content = b"\0" * 36
    elif field == "float_val":
        t.float_val.extend([1.0] * 9)
    else:
        t.string_val.extend([b"x"] * 9)
    tracemalloc.start()
    try:
        with pytest.raises(VinoserveError) as info:
            tensor_to_array(t, "b", max_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code in (StatusCode.INVALID_CONTENT_SIZE, StatusCode.INVALID_VALUE_COUNT)
    assert peak < 1 << 20


def test_stock_client_tensor_protos_decode() -> None:
    """Tensors built by ovmsclient (its own copy of the TF protos) decode unchanged."""
    ovms = pytest.importorskip("ovmsclient.tfs_compat.grpc.tensors")
    for value in (
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([1, -2], np.int64),
        np.array([True, False]),
        np.array([b"ab", b"c"]),
    ):
        proto = ovms.make_tensor_proto(value)
        ours = tensor_pb2.TensorProto.FromString(proto.SerializeToString())
        back = tensor_to_array(ours, "b")
        expected = value.astype(object) if value.dtype.kind == "S" else value
        np.testing.assert_array_equal(back, expected)
    ndarray = ovms.make_ndarray(
        ovms.TensorProto.FromString(array_to_tensor(np.arange(6, dtype=np.int32).reshape(2, 3)).SerializeToString())
    )
    np.testing.assert_array_equal(ndarray, np.arange(6, dtype=np.int32).reshape(2, 3))
