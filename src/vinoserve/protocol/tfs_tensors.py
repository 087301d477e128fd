"""TF Serving tensors (``TensorProto``) <-> numpy, shared by the TF Serving gRPC servicer and the client.

Decoding never trusts the declared shape: the element count it implies is compared with the
bytes or values actually present in the message before any array is built, so a request
that declares a huge shape with little data costs nothing. ``tensor_content`` is decoded
without a copy (``np.frombuffer``; the array is read-only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.generated.tensorflow.core.framework import tensor_pb2, types_pb2
from vinoserve.protocol.shapes import checked_dims, content_size_error, value_count_error
from vinoserve.types import BY_NAME, BY_TF, Precision, precision_of

TensorProto = tensor_pb2.TensorProto

_STRING = BY_NAME["STRING"]


def _ints_as(dtype: str) -> Callable[[Sequence[int]], np.ndarray]:
    # int_val / half_val carry narrower types widened to int32; the narrowing cast wraps
    # out-of-range values as a C cast would, which is what TF and OVMS do.
    def conv(values: Sequence[int]) -> np.ndarray:
        return np.array(values, dtype=np.int32).astype(dtype)

    return conv


def _direct(dtype: str) -> Callable[[Sequence[Any]], np.ndarray]:
    def conv(values: Sequence[Any]) -> np.ndarray:
        return np.array(values, dtype=dtype)

    return conv


def _halves(values: Sequence[int]) -> np.ndarray:
    return np.array(values, dtype=np.int32).astype(np.uint16).view(np.float16)


# Precision name -> (typed field of TensorProto, converter from that field to numpy).
_TYPED_FIELDS: dict[str, tuple[str, Callable[[Sequence[Any]], np.ndarray]]] = {
    "FP32": ("float_val", _direct("float32")),
    "FP64": ("double_val", _direct("float64")),
    "I32": ("int_val", _direct("int32")),
    "I16": ("int_val", _ints_as("int16")),
    "I8": ("int_val", _ints_as("int8")),
    "U8": ("int_val", _ints_as("uint8")),
    "U16": ("int_val", _ints_as("uint16")),
    "I64": ("int64_val", _direct("int64")),
    "U32": ("uint32_val", _direct("uint32")),
    "U64": ("uint64_val", _direct("uint64")),
    "BOOL": ("bool_val", _direct("bool")),
    "FP16": ("half_val", _halves),
    "BF16": ("half_val", _ints_as("uint16")),  # bf16 travels as its raw 16 bits
}


def tf_dtype(precision: Precision) -> types_pb2.DataType:
    """The ``DataType`` of ``precision``, typed as the message fields take it."""
    # the stubs make DataType a subclass of int; the runtime values are plain ints all the same
    return cast(types_pb2.DataType, precision.tf)


def dtype_name(tf_dtype: int) -> str:
    """The TF enum name of a DataType number (``DT_FLOAT``), or the number if unknown."""
    try:
        return str(types_pb2.DataType.Name(tf_dtype))
    except ValueError:
        return str(tf_dtype)


def tensor_to_array(proto: TensorProto, name: str, max_bytes: int | None = None) -> np.ndarray:
    """Decode one input ``TensorProto`` named ``name`` into a numpy array.

    Raises :class:`VinoserveError` for an unsupported dtype, a shape numpy cannot hold, a
    ``tensor_content`` whose size does not match the shape, a typed value list whose length
    does not match the shape, or a decoded size above ``max_bytes``.
    """
    precision = BY_TF.get(proto.dtype)
    if precision is None:
        raise VinoserveError(
            StatusCode.INVALID_PRECISION,
            f"Unsupported precision: {dtype_name(proto.dtype)}; input name: {name}",
        )
    dims = checked_dims([int(d.size) for d in proto.tensor_shape.dim], name, precision.np_dtype.itemsize)
    count = math.prod(dims)  # Python int: a declared shape cannot overflow here
    # read tensor_content once: each access copies the bytes out of the message
    content = b"" if precision is _STRING else proto.tensor_content
    if precision is _STRING:
        array = _strings(proto, count, name)
    elif content:
        array = _from_content(content, precision, count, name)
    else:
        array = _from_typed(proto, precision, count, name)
    # Sizes are already bounded by what the message holds; this is the last line of defence.
    if max_bytes is not None and array.nbytes > max_bytes:
        raise VinoserveError(
            StatusCode.REQUEST_TOO_LARGE,
            f"input {name} needs {array.nbytes} bytes; the limit is {max_bytes} bytes",
        )
    return array.reshape(dims)


def _from_content(content: bytes, precision: Precision, count: int, name: str) -> np.ndarray:
    expected = count * precision.np_dtype.itemsize
    if len(content) != expected:
        raise content_size_error(expected, len(content), name)
    return np.frombuffer(content, dtype=precision.np_dtype)


def _from_typed(proto: TensorProto, precision: Precision, count: int, name: str) -> np.ndarray:
    field, conv = _TYPED_FIELDS[precision.name]
    values = getattr(proto, field)
    if len(values) != count:
        raise value_count_error(count, len(values), name)
    if count == 0:
        return np.empty(0, dtype=precision.np_dtype)
    return conv(values)


def _strings(proto: TensorProto, count: int, name: str) -> np.ndarray:
    values = proto.string_val
    if len(values) != count:
        raise value_count_error(count, len(values), name)
    array = np.empty(count, dtype=object)
    array[:] = list(values)  # element-wise assignment keeps each bytes value whole
    return array


def encode_array(array: np.ndarray, out: TensorProto, precision: Precision | None = None) -> None:
    """Fill the ``TensorProto`` ``out`` from ``array``.

    Numeric tensors go to ``tensor_content``; STRING tensors to ``string_val`` (``str``
    elements are UTF-8 encoded). ``precision`` overrides the one read from the numpy dtype,
    e.g. BF16 for uint16 data of a bf16 output.
    """
    p = precision or precision_of(array)
    out.dtype = tf_dtype(p)
    shape = out.tensor_shape
    del shape.dim[:]
    for d in array.shape:
        shape.dim.add().size = int(d)
    if p is _STRING:
        out.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1))
        return
    # tobytes() of a C-contiguous array is the row-major layout the wire expects.
    out.tensor_content = np.ascontiguousarray(array, dtype=p.np_dtype).tobytes()


def array_to_tensor(array: np.ndarray, precision: Precision | None = None) -> TensorProto:
    """A new ``TensorProto`` holding ``array`` (see :func:`encode_array`)."""
    proto = TensorProto()
    encode_array(array, proto, precision)
    return proto
