"""KServe v2 over REST and gRPC through a real server, with the stock tritonclient clients (and
ovmsclient over HTTP): health, server and model metadata, every datatype, bool and bytes, output
filters and ids, batch changes under auto, and the errors the clients raise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from vinoserve import __version__

from ...helpers.kserve import DTYPES, infer
from ...helpers.server import RunningServer


def test_health_and_server_metadata(server: RunningServer, http: Any, grpc_client: Any) -> None:
    for c in (http, grpc_client):
        assert c.is_server_live() and c.is_server_ready()
        assert c.is_model_ready("aff") and c.is_model_ready("aff", "1")
    # The health routes answer by status code with an empty body, as KServe v2 says.
    for route in ("/v2/health/live", "/v2/health/ready", "/v2/models/aff/ready", "/v2/models/aff/versions/1/ready"):
        r = requests.get(server.rest_url + route, timeout=30)
        assert (r.status_code, r.content) == (200, b""), route
    assert not http.is_model_ready("aff", "7")  # 404: not ready
    assert not http.is_model_ready("nope")
    with pytest.raises(InferenceServerException, match="Model with requested version is not found"):
        grpc_client.is_model_ready("aff", "7")  # NOT_FOUND, which tritonclient raises
    expected = {"name": "vinoserve", "version": __version__, "extensions": ["system_shared_memory"]}
    assert http.get_server_metadata() == expected
    assert grpc_client.get_server_metadata(as_json=True) == expected
    meta = grpc_client.get_server_metadata()
    assert (meta.name, meta.version, list(meta.extensions)) == ("vinoserve", __version__, ["system_shared_memory"])


def test_model_metadata(http: Any, grpc_client: Any) -> None:
    meta = http.get_model_metadata("aff")
    assert meta == {
        "name": "aff",
        "versions": ["1"],
        "platform": "OpenVINO",
        "inputs": [{"name": "b", "datatype": "FP32", "shape": [1, 10]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 10]}],
    }
    assert http.get_model_metadata("aff", "1") == meta
    g = grpc_client.get_model_metadata("i64", as_json=True)
    assert g["platform"] == "OpenVINO" and g["inputs"] == [{"name": "b", "datatype": "INT64", "shape": ["1", "10"]}]
    s = grpc_client.get_model_metadata("str", as_json=True)
    assert s["inputs"] == [{"name": "s", "datatype": "BYTES", "shape": ["-1"]}]


@pytest.mark.parametrize("model", list(DTYPES))
@pytest.mark.parametrize("binary", [True, False])
def test_infer_datatypes_http(http: Any, model: str, binary: bool) -> None:
    x = np.arange(10, dtype=DTYPES[model]).reshape(1, 10)
    out = infer(http, thttp, model, {"b": x}, binary, outputs=["y"]).as_numpy("y")
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, x * 2 + 1)


@pytest.mark.parametrize("model", list(DTYPES))
def test_infer_datatypes_grpc(grpc_client: Any, model: str) -> None:
    x = np.arange(10, dtype=DTYPES[model]).reshape(1, 10)
    out = infer(grpc_client, tgrpc, model, {"b": x}).as_numpy("y")
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, x * 2 + 1)


def test_bool_and_bytes(http: Any, grpc_client: Any) -> None:
    b = np.array([[True, False, False, True]])
    strings = np.array([b"hello", b"", "żółw".encode()], dtype=object)
    for client, mod in ((http, thttp), (grpc_client, tgrpc)):
        np.testing.assert_array_equal(infer(client, mod, "bool", {"b": b}).as_numpy("y"), ~b)
        assert list(infer(client, mod, "str", {"s": strings}).as_numpy("s")) == list(strings)
    np.testing.assert_array_equal(infer(http, thttp, "bool", {"b": b}, binary=False, outputs=["y"]).as_numpy("y"), ~b)
    json_out = infer(http, thttp, "str", {"s": strings}, binary=False, outputs=["s"]).as_numpy("s")
    assert [v.encode() if isinstance(v, str) else v for v in json_out] == list(strings)


def test_outputs_filter_and_id(http: Any, grpc_client: Any) -> None:
    a, b = np.ones((1, 10), np.float32), np.full((1, 10), 3, np.float32)
    for client, mod in ((http, thttp), (grpc_client, tgrpc)):
        res = infer(client, mod, "two", {"a": a, "b": b}, outputs=["diff"], request_id="r-7")
        np.testing.assert_array_equal(res.as_numpy("diff"), a - b)
        assert res.as_numpy("sum") is None
        response = res.get_response()
        assert (response["id"] if mod is thttp else response.id) == "r-7"


def test_batch_changes_under_auto(http: Any, grpc_client: Any) -> None:
    for n in (1, 8, 3, 8, 1):
        x = np.arange(10 * n, dtype=np.float32).reshape(n, 10)
        for client, mod in ((http, thttp), (grpc_client, tgrpc)):
            np.testing.assert_allclose(infer(client, mod, "auto", {"b": x}).as_numpy("y"), x * 2 + 1)
        assert http.get_model_metadata("auto")["inputs"][0]["shape"] == [n, 10]


def test_errors_through_stock_clients(http: Any, grpc_client: Any) -> None:
    x = np.ones((1, 10), np.float32)
    with pytest.raises(InferenceServerException, match="Model with requested name is not found"):
        infer(http, thttp, "nope", {"b": x})
    with pytest.raises(InferenceServerException) as info:
        infer(grpc_client, tgrpc, "nope", {"b": x})
    assert info.value.status() == "StatusCode.NOT_FOUND"
    wrong = "Invalid input shape - Expected: (1,10); Actual: (1,12); input name: b"
    with pytest.raises(InferenceServerException, match=f"^\\[400\\] {wrong.replace('(', '.').replace(')', '.')}$"):
        infer(http, thttp, "aff", {"b": np.ones((1, 12), np.float32)})
    with pytest.raises(InferenceServerException, match="Invalid input precision - Expected: FP32; Actual: I32"):
        infer(grpc_client, tgrpc, "aff", {"b": np.ones((1, 10), np.int32)})
    with pytest.raises(InferenceServerException, match="Model with requested version is not found"):
        infer(http, thttp, "aff", {"b": x}, model_version="5")
    with pytest.raises(InferenceServerException, match="Invalid output name: zz"):
        infer(http, thttp, "aff", {"b": x}, outputs=["zz"])


def test_ovmsclient_over_http(server: RunningServer) -> None:
    ovmsclient = pytest.importorskip("ovmsclient")
    client = ovmsclient.make_http_client(f"localhost:{server.rest_port}")
    x = np.arange(10, dtype=np.float32).reshape(1, 10)
    np.testing.assert_allclose(client.predict({"b": x}, "aff"), x * 2 + 1)
    np.testing.assert_allclose(client.predict({"b": x}, "aff", model_version=1), x * 2 + 1)
    assert client.get_model_metadata("aff") == {
        "model_version": 1,
        "inputs": {"b": {"dtype": "DT_FLOAT", "shape": [1, 10]}},
        "outputs": {"y": {"dtype": "DT_FLOAT", "shape": [1, 10]}},
    }
    assert client.get_model_status("aff") == {1: {"state": "AVAILABLE", "error_code": 0, "error_message": "OK"}}
    with pytest.raises(ovmsclient.ModelNotFoundError):
        client.predict({"b": x}, "nope")
