"""TF Serving REST through a real server with plain HTTP, when requests are wrong: every SPEC §6 row
with its HTTP status and text, and a chunked body over the request limit."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from ...helpers.server import RunningServer
from ...helpers.tfs_rest import X, predict


def _kserve(server: RunningServer, body: dict[str, Any]) -> requests.Response:
    return requests.post(server.rest_url + "/v2/models/aff/infer", data=json.dumps(body), timeout=30)


def _tensor(shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"inputs": [{"name": "b", "shape": shape, "datatype": "FP32", "data": data}]}


SPEC_ROWS: list[tuple[str, Callable[[RunningServer], requests.Response], int, str]] = [
    (
        "model not found",
        lambda s: predict(s, {"instances": [X]}, "nope"),
        404,
        "Model with requested name is not found",
    ),
    # the model is looked up before the body is read as its inputs' types
    (
        "model not found, bad JSON",
        lambda s: predict(s, b"{instances: [1", "nope"),
        404,
        "Model with requested name is not found",
    ),
    (
        "version not found",
        lambda s: predict(s, {"instances": [X]}, version=3),
        404,
        "Model with requested version is not found",
    ),
    (
        "version loading",
        lambda s: predict(s, {"instances": [X]}, "broken", 1),
        503,
        "Model with requested version is not loaded yet",
    ),
    (
        "wrong number of inputs",
        lambda s: predict(s, {"inputs": {"a": [X]}}, "two"),
        400,
        "Invalid number of inputs - Expected: 2; Actual: 1",
    ),
    (
        "unnamed on two inputs",
        lambda s: predict(s, {"instances": [X]}, "two"),
        400,
        "Invalid number of inputs - Expected: 2; Actual: 1",
    ),
    (
        "missing input",
        lambda s: predict(s, {"inputs": {"c": [X]}}),
        400,
        "Missing input with specific name - Required input: b",
    ),
    (
        "wrong rank",
        lambda s: predict(s, {"inputs": [[X]]}),
        400,
        "Invalid number of shape dimensions - Expected: (1,10); Actual: (1,1,10); input name: b",
    ),
    (
        "wrong batch",
        lambda s: predict(s, {"instances": [X, X]}),
        400,
        "Invalid input batch size - Expected: 1; Actual: 2; input name: b",
    ),
    (
        "wrong shape",
        lambda s: predict(s, {"instances": [X + [1, 2]]}),
        400,
        "Invalid input shape - Expected: (1,10); Actual: (1,12); input name: b",
    ),
    (
        "negative dim",
        lambda s: _kserve(s, _tensor([-5, 10], X)),
        400,
        "Invalid input shape - Negative or zero dimension size is not acceptable: (-5,10); input name: b",
    ),
    (
        "value count",
        lambda s: _kserve(s, _tensor([1, 10], X[:9])),
        400,
        "Invalid number of values in tensor proto container - Expected: 10; Actual: 9; input name: b",
    ),
    (
        "bad JSON",
        lambda s: predict(s, b"{instances: [1"),
        400,
        "Could not parse instance content. Not valid ndarray detected",
    ),
    (
        "ragged",
        lambda s: predict(s, {"instances": [[[1, 2], [3]]]}),
        400,
        "Could not parse instance content. Not valid ndarray detected",
    ),
    (
        "not numbers",
        lambda s: predict(s, {"instances": [[{"x": 1}] * 10]}),
        400,
        "Could not parse instance content. Not valid ndarray detected",
    ),
    (
        "both formats",
        lambda s: predict(s, {"instances": [X], "inputs": [X]}),
        400,
        "Invalid JSON structure. Could not detect row or column format",
    ),
    (
        "neither format",
        lambda s: predict(s, {"signature_name": "x"}),
        400,
        "Invalid JSON structure. Could not detect row or column format",
    ),
    ("not an object", lambda s: predict(s, [X]), 400, "Invalid JSON structure. Could not detect row or column format"),
    (
        "reshape impossible",
        lambda s: predict(s, {"instances": [X, X]}, "rigid"),
        412,
        "Model could not be reshaped with requested shape",
    ),
    (
        "body too large",
        lambda s: predict(s, b" " * (2 * 1024 * 1024)),
        413,
        "Request exceeds the size limit - body of 2097152 bytes is over --max_request_mb 1 (1048576 bytes)",
    ),
]


@pytest.mark.parametrize(("case", "call", "status", "text"), SPEC_ROWS, ids=[r[0] for r in SPEC_ROWS])
def test_spec_error_rows(
    server: RunningServer, case: str, call: Callable[[RunningServer], requests.Response], status: int, text: str
) -> None:
    r = call(server)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"].startswith(text)


def test_chunked_body_over_the_limit(server: RunningServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 65536

    r = requests.post(server.rest_url + "/v1/models/aff:predict", data=chunks(), timeout=30)
    assert r.status_code == 413
    limit = "Request exceeds the size limit - chunked body is over --max_request_mb 1 (1048576 bytes)"
    assert r.json() == {"error": limit}
