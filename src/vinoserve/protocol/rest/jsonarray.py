"""JSON tensor values -> numpy arrays for both REST APIs (TF Serving and KServe), strictly typed.

numpy lays the nested lists out in C (``np.array(value, dtype=object)``, at most 64 dimensions;
the JSON reader already refused deeper nesting), so no Python recursion walks client data, and a
ragged list shows up as a list element, which no precision takes. Then every element's JSON type
must suit the input's precision, as OVMS requires (numpy alone would make ``null`` NaN, ``true``
1.0, and wrap ``300`` into a U8):

- floating inputs take JSON numbers within the dtype's range (``1e300`` is no FP32);
- integer inputs take JSON integers, and numbers with no fractional part (``3.0``), within the
  dtype's range: ``1.5``, or ``300`` for U8, is refused rather than truncated or wrapped;
- BOOL inputs take ``true`` and ``false`` only (OVMS refuses numbers there as well);
- STRING inputs take strings (as UTF-8) and, for TF Serving, ``{"b64": ...}`` objects.

Every refusal is ``Could not parse instance content. Not valid ndarray detected`` (400), with
details naming the input and the JSON type found.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.types import BY_NAME, Precision

STRING = BY_NAME["STRING"]
BF16 = BY_NAME["BF16"]
BOOL = BY_NAME["BOOL"]
CHUNK_ELEMENTS = 65536  # values converted per numpy call on a large input
_NUMBERS = frozenset({int, float})
_TEXT = frozenset({str, dict})
_JSON_TYPES = {
    type(None): "null",
    bool: "true/false",
    int: "number",
    float: "number",
    str: "string",
    dict: "object",
    list: "array (ragged, or nested too deep)",
}


def _bad(name: str, text: str) -> VinoserveError:
    return VinoserveError(StatusCode.JSON_INVALID, f"{text}; input name: {name}")


def _wrong_types(kinds: set[type], allowed: frozenset[type], precision: Precision, name: str) -> VinoserveError:
    found = sorted({_JSON_TYPES.get(k, k.__name__) for k in kinds - allowed})
    return _bad(name, f"{precision.name} takes no {', '.join(found)}")


def json_array(value: Any, precision: Precision | None, name: str, *, b64: bool = False) -> np.ndarray:
    """One input's JSON value (nested lists, or one scalar) as an array of ``precision``'s dtype.

    ``precision`` None (an input the model does not have) reads the type from the values, so the
    data plane can name the real problem. With ``b64`` (TF Serving), values that are all strings
    or ``{"b64": ...}`` make a STRING array whatever the precision: the data plane then answers
    with the precision error, which tells the client what to change.
    """
    per_row = _row_elements(value)
    if type(value) is not list or len(value) < 2 or len(value) * per_row <= CHUNK_ELEMENTS:
        return _array(value, precision, name, b64)
    # A large value goes in slices: each numpy call then holds the GIL for milliseconds, and a
    # decode on a worker thread lets the event loop run between them. Recursion is bounded by
    # the nesting limit (64) the JSON reader enforces.
    if per_row > CHUNK_ELEMENTS:  # each row is large itself: one row at a time, split further
        parts = [json_array(row, precision, name, b64=b64) for row in value]
        _same_layout(parts, name, 0)
        return np.stack(parts)
    step = CHUNK_ELEMENTS // max(per_row, 1)
    parts = [_array(value[i : i + step], precision, name, b64) for i in range(0, len(value), step)]
    _same_layout(parts, name, 1)
    return np.concatenate(parts)


def _row_elements(value: Any) -> int:
    """Elements in one row of ``value``, read down its first elements (a guess, checked later)."""
    count = 1
    row = value[0] if type(value) is list and value else None
    while type(row) is list:
        count *= len(row)
        row = row[0] if row else None
    return count


def _same_layout(parts: list[np.ndarray], name: str, skip: int) -> None:
    if len({(p.shape[skip:], p.dtype) for p in parts}) != 1:  # ragged, or types differing between slices
        raise _bad(name, "not an n-dimensional array")


def _array(value: Any, precision: Precision | None, name: str, b64: bool) -> np.ndarray:
    try:
        layout = np.array(value, dtype=object)
    except (ValueError, TypeError):
        raise _bad(name, "not an n-dimensional array") from None
    flat: list[Any] = layout.ravel().tolist()
    kinds = set(map(type, flat))
    if precision is None:
        precision = _guess(kinds)
    if precision is STRING or (b64 and kinds and kinds <= _TEXT):
        return _strings(flat, layout.shape, name, b64)
    if precision is BOOL:
        if not kinds <= {bool}:
            raise _wrong_types(kinds, frozenset({bool}), precision, name)
        return layout.astype(np.bool_)
    if not kinds <= _NUMBERS:
        raise _wrong_types(kinds, _NUMBERS, precision, name)
    try:
        if precision.np_dtype.kind != "f" and precision is not BF16:
            return _integers(layout, flat, float in kinds, precision, name)
        with np.errstate(over="ignore"):
            floats = layout.astype(np.float32 if precision is BF16 else precision.np_dtype)
    except OverflowError:  # an integer beyond any float: orjson reads none, but a caller may pass one
        raise _bad(name, f"a value is out of the range of {precision.name}") from None
    if not np.isfinite(floats).all():  # JSON numbers are finite: 1e300 overflowed the dtype
        raise _bad(name, f"a value is out of the range of {precision.name}")
    if precision is BF16:  # bf16 travels as the upper 16 bits of a float32
        return (floats.view(np.uint32) >> 16).astype(np.uint16)
    return floats


def _guess(kinds: set[type]) -> Precision:
    if kinds and kinds <= {bool}:
        return BOOL
    if kinds and kinds <= _TEXT:
        return STRING
    return BY_NAME["FP32"] if float in kinds or not kinds else BY_NAME["I64"]


def _integers(layout: np.ndarray, flat: list[Any], has_floats: bool, precision: Precision, name: str) -> np.ndarray:
    info = np.iinfo(precision.np_dtype)
    out_of_range = _bad(name, f"a value is out of the range of {precision.name} [{info.min}, {info.max}]")
    if not flat:
        return layout.astype(precision.np_dtype)
    if has_floats:
        values = layout.astype(np.float64)
        if not (np.isfinite(values).all() and np.array_equal(values, np.trunc(values))):
            raise _bad(name, f"{precision.name} takes whole numbers only")
    # Python compares ints and floats exactly, whatever their size; numpy then casts each value
    # through int(), so 2**63 - 1 next to a 3.0 stays exact
    if min(flat) < info.min or max(flat) > info.max:
        raise out_of_range
    return layout.astype(precision.np_dtype)


def _leaf_bytes(value: Any, b64: bool) -> bytes | None:
    if type(value) is str:
        return value.encode()
    if b64 and type(value) is dict and len(value) == 1 and type(value.get("b64")) is str:
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def _strings(flat: list[Any], shape: tuple[int, ...], name: str, b64: bool) -> np.ndarray:
    items = [_leaf_bytes(v, b64) for v in flat]
    if any(v is None for v in items):
        kinds = {type(v) for v, b in zip(flat, items, strict=True) if b is None}
        found = sorted({_JSON_TYPES.get(k, k.__name__) for k in kinds})
        what = 'strings or {"b64": ...} objects' if b64 else "strings"
        raise _bad(name, f"STRING takes {what}, not {', '.join(found)}")
    array = np.empty(len(items), dtype=object)
    array[:] = items  # element-wise assignment keeps each bytes value whole
    return array.reshape(shape)
