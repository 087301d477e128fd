"""The REST layer's JSON codec writes numpy values and bytes, and reads bodies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vinoserve.protocol.rest import jsoncodec

DOC = {
    "f32": np.array([[0.5, 1.0], [2.0, -3.25]], np.float32),
    "f16": np.array([1.5], np.float16),
    "i64": np.arange(3, dtype=np.int64),
    "u8": np.array([0, 255], np.uint8),
    "bool": np.array([True, False]),
    "strided": np.arange(6, dtype=np.int32)[::2],
    "scalar": np.float32(2.5),
    "text": np.array([b"abc", b"\xff\x00"], dtype=object),
    "row": [{"y": np.array([1, 2], np.int32)[i]} for i in range(2)],
}
EXPECTED = {
    "f32": [[0.5, 1.0], [2.0, -3.25]],
    "f16": [1.5],
    "i64": [0, 1, 2],
    "u8": [0, 255],
    "bool": [True, False],
    "strided": [0, 2, 4],
    "scalar": 2.5,
    "text": ["abc", {"b64": "/wA="}],
    "row": [{"y": 1}, {"y": 2}],
}


def test_numpy_and_bytes_both_ways() -> None:
    assert json.loads(jsoncodec.dumps(DOC)) == EXPECTED
    assert jsoncodec.loads(memoryview(b'{"a": [1, 2.5]}')) == {"a": [1, 2.5]}
    with pytest.raises(ValueError):
        jsoncodec.loads(b"{nope")
    with pytest.raises(ValueError):
        jsoncodec.loads(b"\xff{")


def test_small_documents_keep_their_spacing() -> None:
    response = jsoncodec.json_response({"error": "x"}, 404)
    assert (response.status, response.text, response.content_type) == (404, '{"error": "x"}', "application/json")
