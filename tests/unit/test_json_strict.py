"""The REST decoders' building blocks: JSON depth limit, strict JSON types, the shared shape check."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.rest import jsonarray
from vinoserve.protocol.rest.jsonarray import json_array
from vinoserve.protocol.rest.jsoncodec import JsonTooDeep, check_depth, loads
from vinoserve.protocol.shapes import INDEX_MAX, checked_dims
from vinoserve.types import BY_NAME, PRECISIONS


def _nest(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + close * depth


def test_depth_limit() -> None:
    assert loads(_nest(64)) is not None
    assert loads(b'{"a":' * 64 + b"1" + b"}" * 64) is not None
    for deep in (_nest(65), b'{"a":' * 65 + b"1" + b"}" * 65, _nest(1000), _nest(100_000)):
        with pytest.raises(ValueError, match="deep|depth"):
            loads(deep)


def test_depth_ignores_brackets_in_strings() -> None:
    noise = '[[[{{ ]]]}} \\" \\\\ ' * 50
    check_depth(json.dumps({"s": noise, "t": json.loads(_nest(63))}).encode())
    with pytest.raises(JsonTooDeep):
        check_depth(json.dumps({"s": noise, "t": json.loads(_nest(64))}).encode())
    check_depth(b'["\\\\", ' + _nest(63) + b"]")  # an escaped backslash closes no string


def _bad(value: Any, precision: str | None, text: str, b64: bool = False) -> None:
    with pytest.raises(VinoserveError) as info:
        json_array(value, BY_NAME[precision] if precision else None, "b", b64=b64)
    assert info.value.code is StatusCode.JSON_INVALID
    assert text in info.value.details and info.value.details.endswith("input name: b")


@pytest.mark.parametrize(
    "p", [p for p in PRECISIONS if p.np_dtype.kind in "iu" and p.name != "BF16"], ids=lambda p: p.name
)
def test_integer_ranges(p: Any) -> None:
    info = np.iinfo(p.np_dtype)
    ok = json_array([[info.min, info.max, 3.0]], p, "b")
    assert ok.dtype == p.np_dtype and ok.tolist() == [[info.min, info.max, 3]]
    for outside in (info.min - 1, info.max + 1, float(info.max) * 2 + 2):
        _bad([1, outside], p.name, "out of the range")
    _bad([1, 2.5], p.name, "whole numbers")


def test_types_per_precision() -> None:
    for precision in ("FP32", "FP16", "FP64", "I32", "BF16"):
        _bad([1, None], precision, "takes no null")
        _bad([1, True], precision, "takes no true/false")
        _bad([[1], [1, 2]], precision, "array")
    _bad([1, 1e300], "FP32", "out of the range of FP32")
    _bad([70000], "FP16", "out of the range of FP16")
    _bad([1, 10**400], "FP64", "out of the range of FP64")  # a Python int beyond any float
    _bad([True, 1], "BOOL", "takes no number")
    assert json_array([True, False], BY_NAME["BOOL"], "b").tolist() == [True, False]
    assert json_array([1.0], BY_NAME["BF16"], "b").tolist() == [0x3F80]
    assert json_array([[1, 2]], BY_NAME["FP16"], "b").dtype == np.float16


def test_strings_and_b64() -> None:
    assert json_array(["a", {"b64": "AP8="}], BY_NAME["STRING"], "b", b64=True).tolist() == [b"a", b"\0\xff"]
    _bad([{"b64": "AP8="}], "STRING", "STRING takes strings, not object")
    _bad(["a", 1], "STRING", "not number")
    _bad([{"b64": "!!"}], "STRING", "object", b64=True)
    # TF Serving: strings sent to a numeric input stay strings; the data plane names the precision
    assert json_array(["x"], BY_NAME["FP32"], "b", b64=True).dtype == object
    _bad(["x"], "FP32", "takes no string")


def test_unknown_input_guesses_a_type() -> None:
    assert json_array([1.5], None, "b").dtype == np.float32
    assert json_array([1], None, "b").dtype == np.int64
    assert json_array([True], None, "b").dtype == np.bool_
    _bad([None], None, "null")


@pytest.mark.parametrize("shape", [(50_000, 3), (4, 40_000), (3, 3, 30_000), (70_000,)])
def test_large_values_in_slices_match(monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(1).random(shape)
    sliced = json_array(x.tolist(), BY_NAME["FP32"], "b")
    monkeypatch.setattr(jsonarray, "CHUNK_ELEMENTS", 10**9)
    whole = json_array(x.tolist(), BY_NAME["FP32"], "b")
    assert sliced.shape == whole.shape == shape
    np.testing.assert_array_equal(sliced, whole)


def test_large_ragged_value_is_refused() -> None:
    rows = np.zeros((50_000, 2)).tolist()
    rows[40_000] = [1.0]
    _bad(rows, "FP32", "array")
    wide: list[Any] = np.zeros((3, 70_000)).tolist()
    wide[2] = 1.0
    _bad(wide, "FP32", "n-dimensional")


def test_checked_dims() -> None:
    assert checked_dims([0, 5], "b", 4) == (0, 5)
    assert checked_dims([INDEX_MAX // 4], "b", 4) == (INDEX_MAX // 4,)
    bad = {
        (-1, 2): "Negative",
        (1,) * 65: "65 dimensions",
        (0, 2**40, 2**40): "overflows",
        (INDEX_MAX // 4 + 1,): "overflows",
        (0, 2**63): "overflows",
    }
    for dims, text in bad.items():
        with pytest.raises(VinoserveError) as info:
            checked_dims(dims, "b", 4)
        assert info.value.code is StatusCode.INVALID_SHAPE and text in info.value.details
