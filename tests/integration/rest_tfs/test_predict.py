"""TF Serving REST through a real server with plain HTTP, when requests are right: the row and column
formats, several outputs, b64 and strings, numbers taking the model's dtype, status, metadata,
config and reload, and content types, routes and methods."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import requests

from ...helpers.models import write_affine
from ...helpers.server import RunningServer, Serve
from ...helpers.tfs_rest import X, Y, ok_json, predict


def test_row_and_column_formats(server: RunningServer) -> None:
    assert ok_json(predict(server, {"instances": [X]})) == {"predictions": [Y]}
    assert ok_json(predict(server, {"instances": [{"b": X}], "signature_name": "serving_default"})) == {
        "predictions": [Y]
    }
    assert ok_json(predict(server, {"inputs": [X]}, version=1)) == {"outputs": [Y]}
    assert ok_json(predict(server, {"inputs": {"b": [X]}}, version=0)) == {"outputs": [Y]}


def test_several_outputs(server: RunningServer) -> None:
    a, b = [1.0] * 10, [3.0] * 10
    rows = ok_json(predict(server, {"instances": [{"a": a, "b": b}]}, "two"))
    assert rows == {"predictions": [{"sum": [4.0] * 10, "diff": [-2.0] * 10}]}
    cols = ok_json(predict(server, {"inputs": {"a": [a], "b": [b]}}, "two"))
    assert cols == {"outputs": {"sum": [[4.0] * 10], "diff": [[-2.0] * 10]}}


def test_b64_and_strings(server: RunningServer) -> None:
    blob = bytes([0, 255, 1])
    enc = base64.b64encode(blob).decode()
    out = ok_json(predict(server, {"instances": [{"b64": enc}, "text"]}, "str"))["predictions"]
    assert out == [{"b64": enc}, "text"]
    r = predict(server, {"instances": [{"b64": enc}]})
    assert r.status_code == 400
    assert r.json() == {"error": "Invalid input precision - Expected: FP32; Actual: STRING; input name: b"}
    r = predict(server, {"instances": [{"b64": "!!not base64"}]}, "str")
    assert r.status_code == 400 and r.json()["error"].startswith("Could not parse instance content")


def test_status_metadata_config(server: RunningServer) -> None:
    ok = {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": "OK"}}
        ]
    }
    assert ok_json(requests.get(server.rest_url + "/v1/models/aff", timeout=30)) == ok
    assert ok_json(requests.get(server.rest_url + "/v1/models/aff/versions/1", timeout=30)) == ok
    broken = ok_json(requests.get(server.rest_url + "/v1/models/broken", timeout=30))["model_version_status"][0]
    assert broken["state"] == "LOADING" and broken["status"]["error_code"] == "UNKNOWN"
    assert "File not found or cannot open" in broken["status"]["error_message"]
    meta = ok_json(requests.get(server.rest_url + "/v1/models/aff/versions/1/metadata", timeout=30))
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
    config = ok_json(requests.get(server.rest_url + "/v1/config", timeout=30))
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
    retired = predict(server, {"instances": [X]}, version=1)
    assert (retired.status_code, retired.json()) == (404, {"error": "Model with requested version is retired"})


def test_content_type_routes_and_methods(server: RunningServer) -> None:
    # The body decides, not the header: curl -d sends form encoding, and valid JSON is served.
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/octet-stream"):
        r = requests.post(
            server.rest_url + "/v1/models/aff:predict",
            data=json.dumps({"instances": [X]}),
            headers={"Content-Type": ctype},
            timeout=30,
        )
        assert ok_json(r) == {"predictions": [Y]}
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
    assert ok_json(predict(server, {"instances": [[1] * 10]})) == {"predictions": [[3.0] * 10]}
    np.testing.assert_allclose(ok_json(predict(server, {"inputs": [[0.5] * 10]}))["outputs"], [[2.0] * 10])
