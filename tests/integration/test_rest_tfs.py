"""TF Serving REST through a real server with plain HTTP: predict formats, status, metadata, config, errors."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from ..helpers.management import write_config
from ..helpers.models import write_affine, write_rigid, write_strings, write_two_inputs
from ..helpers.server import F32, RunningServer, Serve

X = list(range(10))
Y = [2 * v + 1 for v in X]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """aff (y = 2b + 1, [1,10]), two inputs, a string echo, a rigid model under auto, a broken model."""
    root = tmp_path_factory.mktemp("tfs")
    (root / "broken" / "1").mkdir(parents=True)
    paths = {
        "aff": write_affine(root / "aff"),
        "two": write_two_inputs(root / "two"),
        "str": write_strings(root / "str"),
        "rigid": write_rigid(root / "rigid"),
        "broken": root / "broken",
    }
    entries = [
        {
            "name": n,
            "base_path": str(p),
            "plugin_config": json.loads(F32),
            **({"batch_size": "auto"} if n == "rigid" else {}),
        }
        for n, p in paths.items()
    ]
    config = write_config(root / "config.json", entries)
    s = RunningServer(
        ["--config_path", str(config), "--max_request_mb", "1", "--file_system_poll_wait_seconds", "0"],
        rest=True,
        runtime=None,
    )
    yield s
    s.stop()


def _predict(server: RunningServer, body: Any, model: str = "aff", version: int | None = None) -> requests.Response:
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "") + ":predict"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(server.rest_url + path, data=data, timeout=30)


def _ok(r: requests.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def test_row_and_column_formats(server: RunningServer) -> None:
    assert _ok(_predict(server, {"instances": [X]})) == {"predictions": [Y]}
    assert _ok(_predict(server, {"instances": [{"b": X}], "signature_name": "serving_default"})) == {"predictions": [Y]}
    assert _ok(_predict(server, {"inputs": [X]}, version=1)) == {"outputs": [Y]}
    assert _ok(_predict(server, {"inputs": {"b": [X]}}, version=0)) == {"outputs": [Y]}


def test_several_outputs(server: RunningServer) -> None:
    a, b = [1.0] * 10, [3.0] * 10
    rows = _ok(_predict(server, {"instances": [{"a": a, "b": b}]}, "two"))
    assert rows == {"predictions": [{"sum": [4.0] * 10, "diff": [-2.0] * 10}]}
    cols = _ok(_predict(server, {"inputs": {"a": [a], "b": [b]}}, "two"))
    assert cols == {"outputs": {"sum": [[4.0] * 10], "diff": [[-2.0] * 10]}}


def test_b64_and_strings(server: RunningServer) -> None:
    blob = bytes([0, 255, 1])
    enc = base64.b64encode(blob).decode()
    out = _ok(_predict(server, {"instances": [{"b64": enc}, "text"]}, "str"))["predictions"]
    assert out == [{"b64": enc}, "text"]
    r = _predict(server, {"instances": [{"b64": enc}]})
    assert r.status_code == 400
    assert r.json() == {"error": "Invalid input precision - Expected: FP32; Actual: STRING; input name: b"}
    r = _predict(server, {"instances": [{"b64": "!!not base64"}]}, "str")
    assert r.status_code == 400 and r.json()["error"].startswith("Could not parse instance content")


def test_status_metadata_config(server: RunningServer) -> None:
    ok = {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": "OK"}}
        ]
    }
    assert _ok(requests.get(server.rest_url + "/v1/models/aff", timeout=30)) == ok
    assert _ok(requests.get(server.rest_url + "/v1/models/aff/versions/1", timeout=30)) == ok
    broken = _ok(requests.get(server.rest_url + "/v1/models/broken", timeout=30))["model_version_status"][0]
    assert broken["state"] == "LOADING" and broken["status"]["error_code"] == "UNKNOWN"
    assert "File not found or cannot open" in broken["status"]["error_message"]
    meta = _ok(requests.get(server.rest_url + "/v1/models/aff/versions/1/metadata", timeout=30))
    dims = [{"size": "1", "name": ""}, {"size": "10", "name": ""}]
    info = {"dtype": "DT_FLOAT", "tensorShape": {"dim": dims, "unknownRank": False}}
    assert meta == {
        "modelSpec": {"name": "aff", "signatureName": "", "version": "1"},
        "metadata": {
            "signature_def": {
                "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
                "signatureDef": {
                    "serving_default": {
                        "inputs": {"b": {**info, "name": "b"}},
                        "outputs": {"y": {**info, "name": "y"}},
                        "methodName": "tensorflow/serving/predict",
                    }
                },
            }
        },
    }
    config = _ok(requests.get(server.rest_url + "/v1/config", timeout=30))
    assert set(config) == {"aff", "two", "str", "rigid", "broken"} and config["aff"] == ok


def test_reload(serve: Serve, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "aff")
    server = serve(
        ["--model_name", "aff", "--model_path", str(base), "--file_system_poll_wait_seconds", "0"], rest=True
    )
    r = requests.post(server.rest_url + "/v1/config/reload", timeout=60)
    assert r.status_code == 200 and r.json()["aff"]["model_version_status"][0]["state"] == "AVAILABLE"
    shutil.copytree(base / "1", base / "2")
    r = requests.post(server.rest_url + "/v1/config/reload", timeout=60)
    assert r.status_code == 201, r.text
    states = {s["version"]: s["state"] for s in r.json()["aff"]["model_version_status"]}
    assert states == {"2": "AVAILABLE", "1": "END"}
    retired = _predict(server, {"instances": [X]}, version=1)
    assert (retired.status_code, retired.json()) == (404, {"error": "Model with requested version is retired"})


def _kserve(server: RunningServer, body: dict[str, Any]) -> requests.Response:
    return requests.post(server.rest_url + "/v2/models/aff/infer", data=json.dumps(body), timeout=30)


def _tensor(shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"inputs": [{"name": "b", "shape": shape, "datatype": "FP32", "data": data}]}


SPEC_ROWS: list[tuple[str, Callable[[RunningServer], requests.Response], int, str]] = [
    (
        "model not found",
        lambda s: _predict(s, {"instances": [X]}, "nope"),
        404,
        "Model with requested name is not found",
    ),
    # the model is looked up before the body is read as its inputs' types
    (
        "model not found, bad JSON",
        lambda s: _predict(s, b"{instances: [1", "nope"),
        404,
        "Model with requested name is not found",
    ),
    (
        "version not found",
        lambda s: _predict(s, {"instances": [X]}, version=3),
        404,
        "Model with requested version is not found",
    ),
    (
        "version loading",
        lambda s: _predict(s, {"instances": [X]}, "broken", 1),
        503,
        "Model with requested version is not loaded yet",
    ),
    (
        "wrong number of inputs",
        lambda s: _predict(s, {"inputs": {"a": [X]}}, "two"),
        400,
        "Invalid number of inputs - Expected: 2; Actual: 1",
    ),
    (
        "unnamed on two inputs",
        lambda s: _predict(s, {"instances": [X]}, "two"),
        400,
        "Invalid number of inputs - Expected: 2; Actual: 1",
    ),
    (
        "missing input",
        lambda s: _predict(s, {"inputs": {"c": [X]}}),
        400,
        "Missing input with specific name - Required input: b",
    ),
    (
        "wrong rank",
        lambda s: _predict(s, {"inputs": [[X]]}),
        400,
        "Invalid number of shape dimensions - Expected: (1,10); Actual: (1,1,10); input name: b",
    ),
    (
        "wrong batch",
        lambda s: _predict(s, {"instances": [X, X]}),
        400,
        "Invalid input batch size - Expected: 1; Actual: 2; input name: b",
    ),
    (
        "wrong shape",
        lambda s: _predict(s, {"instances": [X + [1, 2]]}),
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
        lambda s: _predict(s, b"{instances: [1"),
        400,
        "Could not parse instance content. Not valid ndarray detected",
    ),
    (
        "ragged",
        lambda s: _predict(s, {"instances": [[[1, 2], [3]]]}),
        400,
        "Could not parse instance content. Not valid ndarray detected",
    ),
    (
        "not numbers",
        lambda s: _predict(s, {"instances": [[{"x": 1}] * 10]}),
        400,
        "Could not parse instance content. Not valid ndarray detected",
    ),
    (
        "both formats",
        lambda s: _predict(s, {"instances": [X], "inputs": [X]}),
        400,
        "Invalid JSON structure. Could not detect row or column format",
    ),
    (
        "neither format",
        lambda s: _predict(s, {"signature_name": "x"}),
        400,
        "Invalid JSON structure. Could not detect row or column format",
    ),
    ("not an object", lambda s: _predict(s, [X]), 400, "Invalid JSON structure. Could not detect row or column format"),
    (
        "reshape impossible",
        lambda s: _predict(s, {"instances": [X, X]}, "rigid"),
        412,
        "Model could not be reshaped with requested shape",
    ),
    (
        "body too large",
        lambda s: _predict(s, b" " * (2 * 1024 * 1024)),
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


def test_content_type_routes_and_methods(server: RunningServer) -> None:
    # The body decides, not the header: curl -d sends form encoding, and valid JSON is served.
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/octet-stream"):
        r = requests.post(
            server.rest_url + "/v1/models/aff:predict",
            data=json.dumps({"instances": [X]}),
            headers={"Content-Type": ctype},
            timeout=30,
        )
        assert _ok(r) == {"predictions": [Y]}
    r = requests.post(
        server.rest_url + "/v1/models/aff:predict",
        data=b"\x89PNG\r\n\x1a\n\0\0",
        headers={"Content-Type": "image/png"},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"].startswith("Could not parse instance content")
    r = requests.get(server.rest_url + "/v1/nothing/here", timeout=30)
    assert r.status_code == 404 and "error" in r.json()
    r = requests.delete(server.rest_url + "/v1/models/aff", timeout=30)
    assert r.status_code == 405 and "error" in r.json()
    r = requests.get(server.rest_url + "/metrics", timeout=30)  # metrics not enabled
    assert r.status_code == 404


def test_numbers_take_the_model_dtype(server: RunningServer) -> None:
    assert _ok(_predict(server, {"instances": [[1] * 10]})) == {"predictions": [[3.0] * 10]}
    np.testing.assert_allclose(_ok(_predict(server, {"inputs": [[0.5] * 10]}))["outputs"], [[2.0] * 10])
