"""KServe v2 tensors <-> numpy, shared by the KServe REST routes and the KServe gRPC servicer.

Nothing here allocates from a declared shape before the data present has been checked against
it: raw buffers are compared byte for byte with ``count * itemsize``, value lists by length, and
BYTES buffers are walked (never pre-sized) until they run out. Raw numeric buffers are decoded
without a copy (``np.frombuffer``; the array is read-only).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.shapes import checked_dims, content_size_error, value_count_error
from vinoserve.shm import Lease, ShmRef
from vinoserve.types import BY_KSERVE, BY_NAME, Precision, precision_of

STRING = BY_NAME["STRING"]
_LEN = struct.Struct("<I")  # BYTES elements are prefixed by their length, 4 bytes little-endian


def precision_for(datatype: str, name: str) -> Precision:
    """The precision of a KServe datatype string such as ``FP32``; unknown ones are refused."""
    p = BY_KSERVE.get(datatype)
    if p is None:
        raise VinoserveError(StatusCode.INVALID_PRECISION, f"Unsupported precision: {datatype}; input name: {name}")
    return p


def datatype_of(array: np.ndarray) -> str:
    """The KServe datatype of an output array."""
    return precision_of(array).kserve


def checked_shape(shape: Sequence[Any], precision: Precision, name: str) -> tuple[int, ...]:
    """The declared shape, once every dimension is an integer and numpy can hold it (SPEC §6).

    JSON may carry ``1.5``, ``"1"`` or ``true`` as a dimension: refused, never truncated or cast.
    """
    if not all(type(d) is int for d in shape):  # exact type: a bool is an int to isinstance
        raise VinoserveError(StatusCode.INVALID_SHAPE, f"shape must be a list of integers; input name: {name}")
    return checked_dims(shape, name, precision.np_dtype.itemsize)


def from_raw(buf: bytes | memoryview, precision: Precision, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Decode a raw (binary extension / ``raw_input_contents``) buffer of ``shape``."""
    count = math.prod(shape)  # Python int: a declared shape cannot overflow here
    if precision is STRING:
        return decode_bytes(buf, count, name).reshape(shape)
    expected = count * precision.np_dtype.itemsize
    if len(buf) != expected:
        raise content_size_error(expected, len(buf), name)
    return np.frombuffer(buf, dtype=precision.np_dtype).reshape(shape)


def decode_bytes(buf: bytes | memoryview, count: int, name: str) -> np.ndarray:
    """Split a buffer of length-prefixed BYTES elements; exactly ``count`` must be present."""
    view = memoryview(buf)
    items: list[bytes] = []
    pos, end = 0, len(view)
    while pos < end:
        if pos + 4 > end or len(items) >= count:
            break
        (n,) = _LEN.unpack_from(view, pos)
        pos += 4
        if pos + n > end:
            raise VinoserveError(
                StatusCode.INVALID_CONTENT_SIZE,
                f"BYTES element {len(items)} declares {n} bytes but {end - pos} remain; input name: {name}",
            )
        items.append(bytes(view[pos : pos + n]))
        pos += n
    if pos != end:
        raise VinoserveError(
            StatusCode.INVALID_CONTENT_SIZE,
            f"{end - pos} bytes left over after {len(items)} BYTES elements; input name: {name}",
        )
    if len(items) != count:
        raise value_count_error(count, len(items), name)
    array = np.empty(count, dtype=object)
    array[:] = items  # element-wise assignment keeps each bytes value whole
    return array


def encode_bytes(array: np.ndarray) -> bytes:
    """BYTES elements of ``array`` (bytes, or str as UTF-8), each with its 4-byte length prefix."""
    parts: list[bytes] = []
    for v in array.reshape(-1):
        b = v if isinstance(v, bytes) else str(v).encode()
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def to_raw(array: np.ndarray) -> bytes:
    """The raw wire bytes of an output: row-major data, or length-prefixed BYTES elements."""
    if array.dtype.kind in ("O", "S", "U"):
        return encode_bytes(array)
    return np.ascontiguousarray(array).tobytes()


def from_values(values: Sequence[Any], precision: Precision, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Decode the typed ``contents`` of a gRPC input (a flat, typed protobuf list) of ``shape``."""
    count = math.prod(shape)
    if len(values) != count:
        raise value_count_error(count, len(values), name)
    if precision is STRING:
        array = np.empty(count, dtype=object)
        array[:] = list(values)  # element-wise assignment keeps each bytes value whole
        return array.reshape(shape)
    if precision.np_dtype.kind in ("i", "u") and precision.np_dtype.itemsize < 4:
        # narrow ints arrive widened in int_contents/uint_contents; wrap as a C cast would, as OVMS does
        return np.asarray(values, dtype=np.int64).astype(precision.np_dtype).reshape(shape)
    return np.asarray(values, dtype=precision.np_dtype).reshape(shape)


def to_values(array: np.ndarray) -> np.ndarray | list[str]:
    """Flat JSON values of an output: the flat array (for a JSON writer that takes numpy), or
    BYTES elements as UTF-8 text."""
    if array.dtype.kind in ("O", "S", "U"):
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
    return array.reshape(-1)


def parse_version(version: str | None) -> int | None:
    """A KServe model version string; None (the default version) when empty or 0."""
    if not version:
        return None
    try:
        number = int(version)
    except ValueError:
        raise VinoserveError(StatusCode.INVALID_ARGUMENT, f"Model version must be an integer: {version!r}") from None
    if number < 0:
        raise VinoserveError(StatusCode.INVALID_ARGUMENT, f"Model version must not be negative: {version!r}")
    return number or None


def dims_of(shape: Any) -> list[int]:
    """Metadata dimensions: static sizes, -1 for a dynamic or ranged dimension."""
    return [d.lo if d.is_static else -1 for d in shape]


SHM_REGION = "shared_memory_region"
SHM_BYTE_SIZE = "shared_memory_byte_size"
SHM_OFFSET = "shared_memory_offset"


def shm_ref(params: Mapping[str, Any], what: str) -> ShmRef | None:
    """The shared memory span a tensor's parameters name (Triton's ``shared_memory_*``), or None.

    ``what`` is ``input x`` or ``output x``, for the error text.
    """
    region = params.get(SHM_REGION)
    if region is None:
        if SHM_BYTE_SIZE in params or SHM_OFFSET in params:
            raise VinoserveError(
                StatusCode.INVALID_ARGUMENT, f"{what} gives a shared memory size or offset but no {SHM_REGION}"
            )
        return None
    size, offset = params.get(SHM_BYTE_SIZE), params.get(SHM_OFFSET, 0)
    if type(region) is not str or type(size) is not int or type(offset) is not int or size < 0 or offset < 0:
        raise VinoserveError(
            StatusCode.INVALID_ARGUMENT,
            f"{what} needs {SHM_REGION} (a string), "
            f"{SHM_BYTE_SIZE} and optionally {SHM_OFFSET} (non-negative integers)",
        )
    return ShmRef(region, size, offset)


def from_shm(lease: Lease, ref: ShmRef, precision: Precision, shape: tuple[int, ...], name: str) -> np.ndarray:
    """An input read from shared memory: a view of the region (no copy), checked like a raw buffer."""
    return from_raw(lease.input_bytes(ref, name), precision, shape, name)


def to_shm(lease: Lease, name: str, array: np.ndarray) -> None:
    """Write an output into the shared memory its request named, in the raw wire layout."""
    lease.write(name, encode_bytes(array) if array.dtype.kind in ("O", "S", "U") else array)
