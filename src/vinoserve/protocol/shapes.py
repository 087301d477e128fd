"""The checks of a client-declared tensor shared by every decoder (SPEC §6): its shape, and the
content size and value count that must match it.

TF Serving gRPC (``tensor_shape``), KServe gRPC and REST (``shape``) let the client declare a shape
apart from the data. Before anything is sized or reshaped from it, the shape must be one numpy can
hold: numpy refuses (with a ``ValueError`` that would surface as INTERNAL) a shape whose byte size
overflows its index type even when a dimension is 0, so ``(0, 2**40, 2**40)`` is as bad as
``(2**40, 2**40, 2**40)``. A JSON body gets its shape from its nesting, which the JSON reader bounds
to the same rank. Once the shape holds, the bytes or values present must be exactly what it implies:
:func:`content_size_error` and :func:`value_count_error` word the refusals alike for every API.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.types import format_shape

MAX_RANK = 64  # numpy's NPY_MAXDIMS
INDEX_MAX = 2**63 - 1  # numpy sizes arrays in a signed 64-bit index (npy_intp)


def checked_dims(dims: Sequence[int], name: str, itemsize: int) -> tuple[int, ...]:
    """``dims`` as a tuple, once it is a shape numpy can index; else ``Invalid input shape``.

    Refused: a negative dimension, more than 64 dimensions, and a shape whose element count — the
    product of its nonzero dimensions, as numpy counts it — times ``itemsize`` exceeds int64.
    """
    shape = tuple(dims)
    if any(d < 0 for d in shape):
        raise VinoserveError(
            StatusCode.INVALID_SHAPE,
            f"Negative or zero dimension size is not acceptable: {format_shape(shape)}; input name: {name}",
        )
    if len(shape) > MAX_RANK:
        raise VinoserveError(
            StatusCode.INVALID_SHAPE, f"{len(shape)} dimensions; at most {MAX_RANK} are supported; input name: {name}"
        )
    # Python ints: the product itself cannot overflow here.
    if math.prod(d for d in shape if d) * max(itemsize, 1) > INDEX_MAX:
        raise VinoserveError(
            StatusCode.INVALID_SHAPE,
            f"the element count of {format_shape(shape)} overflows a 64-bit size; input name: {name}",
        )
    return shape


def content_size_error(expected: int, actual: int, name: str) -> VinoserveError:
    """``Invalid content size of tensor proto``: a buffer of ``actual`` bytes where the shape needs ``expected``."""
    return VinoserveError(
        StatusCode.INVALID_CONTENT_SIZE, f"Expected: {expected} bytes; Actual: {actual} bytes; input name: {name}"
    )


def value_count_error(expected: int, actual: int, name: str) -> VinoserveError:
    """``Invalid number of values in tensor proto container``: ``actual`` values for ``expected`` elements."""
    return VinoserveError(StatusCode.INVALID_VALUE_COUNT, f"Expected: {expected}; Actual: {actual}; input name: {name}")
