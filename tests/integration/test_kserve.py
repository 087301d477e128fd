"""KServe v2 over REST and gRPC through a real server, with the stock tritonclient clients."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from vinoserve import __version__
from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2 as pb
from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2_grpc as pb_grpc

from ..helpers.clients import rpc_error
from ..helpers.management import write_config
from ..helpers.models import write_affine, write_bool, write_strings, write_two_inputs
from ..helpers.server import F32, RunningServer

DTYPES = {"aff": np.float32, "i32": np.int32, "i64": np.int64, "u8": np.uint8, "f16": np.float16}
KSERVE = {np.float32: "FP32", np.int32: "INT32", np.int64: "INT64", np.uint8: "UINT8", np.float16: "FP16"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module: affine models of several dtypes, bool, strings, two inputs, auto."""
    root = tmp_path_factory.mktemp("kserve")
    paths = {name: write_affine(root / name, dtype=dt) for name, dt in DTYPES.items()}
    paths["auto"] = write_affine(root / "auto")
    paths["bool"] = write_bool(root / "bool")
    paths["str"] = write_strings(root / "str")
    paths["two"] = write_two_inputs(root / "two")
    entries = [
        {
            "name": n,
            "base_path": str(p),
            "plugin_config": json.loads(F32),
            **({"batch_size": "auto"} if n == "auto" else {}),
        }
        for n, p in paths.items()
    ]
    s = RunningServer(["--config_path", str(write_config(root / "config.json", entries))], rest=True)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def http(server: RunningServer) -> thttp.InferenceServerClient:
    return thttp.InferenceServerClient(f"localhost:{server.rest_port}")


@pytest.fixture(scope="module")
def grpc_client(server: RunningServer) -> tgrpc.InferenceServerClient:
    return tgrpc.InferenceServerClient(server.grpc_address)


def _infer(
    client: Any,
    mod: Any,
    model: str,
    arrays: dict[str, np.ndarray],
    binary: bool = True,
    outputs: list[str] | None = None,
    **kw: Any,
) -> Any:
    inputs = []
    for name, a in arrays.items():
        dt = "BYTES" if a.dtype == object else KSERVE.get(a.dtype.type, "BOOL")
        i = mod.InferInput(name, list(a.shape), dt)
        if mod is thttp:
            i.set_data_from_numpy(a, binary_data=binary)
        else:
            i.set_data_from_numpy(a)
        inputs.append(i)
    req_out = None
    if outputs is not None:
        req_out = [
            mod.InferRequestedOutput(o, binary_data=binary) if mod is thttp else mod.InferRequestedOutput(o)
            for o in outputs
        ]
    return client.infer(model, inputs, outputs=req_out, **kw)


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
    out = _infer(http, thttp, model, {"b": x}, binary, outputs=["y"]).as_numpy("y")
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, x * 2 + 1)


@pytest.mark.parametrize("model", list(DTYPES))
def test_infer_datatypes_grpc(grpc_client: Any, model: str) -> None:
    x = np.arange(10, dtype=DTYPES[model]).reshape(1, 10)
    out = _infer(grpc_client, tgrpc, model, {"b": x}).as_numpy("y")
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, x * 2 + 1)


def test_bool_and_bytes(http: Any, grpc_client: Any) -> None:
    b = np.array([[True, False, False, True]])
    strings = np.array([b"hello", b"", "żółw".encode()], dtype=object)
    for client, mod in ((http, thttp), (grpc_client, tgrpc)):
        np.testing.assert_array_equal(_infer(client, mod, "bool", {"b": b}).as_numpy("y"), ~b)
        assert list(_infer(client, mod, "str", {"s": strings}).as_numpy("s")) == list(strings)
    np.testing.assert_array_equal(_infer(http, thttp, "bool", {"b": b}, binary=False, outputs=["y"]).as_numpy("y"), ~b)
    json_out = _infer(http, thttp, "str", {"s": strings}, binary=False, outputs=["s"]).as_numpy("s")
    assert [v.encode() if isinstance(v, str) else v for v in json_out] == list(strings)


def test_outputs_filter_and_id(http: Any, grpc_client: Any) -> None:
    a, b = np.ones((1, 10), np.float32), np.full((1, 10), 3, np.float32)
    for client, mod in ((http, thttp), (grpc_client, tgrpc)):
        res = _infer(client, mod, "two", {"a": a, "b": b}, outputs=["diff"], request_id="r-7")
        np.testing.assert_array_equal(res.as_numpy("diff"), a - b)
        assert res.as_numpy("sum") is None
        response = res.get_response()
        assert (response["id"] if mod is thttp else response.id) == "r-7"


def test_batch_changes_under_auto(http: Any, grpc_client: Any) -> None:
    for n in (1, 8, 3, 8, 1):
        x = np.arange(10 * n, dtype=np.float32).reshape(n, 10)
        for client, mod in ((http, thttp), (grpc_client, tgrpc)):
            np.testing.assert_allclose(_infer(client, mod, "auto", {"b": x}).as_numpy("y"), x * 2 + 1)
        assert http.get_model_metadata("auto")["inputs"][0]["shape"] == [n, 10]


def test_errors_through_stock_clients(http: Any, grpc_client: Any) -> None:
    x = np.ones((1, 10), np.float32)
    with pytest.raises(InferenceServerException, match="Model with requested name is not found"):
        _infer(http, thttp, "nope", {"b": x})
    with pytest.raises(InferenceServerException) as info:
        _infer(grpc_client, tgrpc, "nope", {"b": x})
    assert info.value.status() == "StatusCode.NOT_FOUND"
    wrong = "Invalid input shape - Expected: (1,10); Actual: (1,12); input name: b"
    with pytest.raises(InferenceServerException, match=f"^\\[400\\] {wrong.replace('(', '.').replace(')', '.')}$"):
        _infer(http, thttp, "aff", {"b": np.ones((1, 12), np.float32)})
    with pytest.raises(InferenceServerException, match="Invalid input precision - Expected: FP32; Actual: I32"):
        _infer(grpc_client, tgrpc, "aff", {"b": np.ones((1, 10), np.int32)})
    with pytest.raises(InferenceServerException, match="Model with requested version is not found"):
        _infer(http, thttp, "aff", {"b": x}, model_version="5")
    with pytest.raises(InferenceServerException, match="Invalid output name: zz"):
        _infer(http, thttp, "aff", {"b": x}, outputs=["zz"])


def _post(server: RunningServer, body: bytes, header_len: int | None = None, model: str = "aff") -> requests.Response:
    headers = {} if header_len is None else {"Inference-Header-Content-Length": str(header_len)}
    return requests.post(f"{server.rest_url}/v2/models/{model}/infer", data=body, headers=headers, timeout=30)


def test_binary_payload_errors_are_400(server: RunningServer) -> None:
    def header(size: int, shape: list[int] | None = None, dt: str = "FP32") -> bytes:
        return json.dumps(
            {
                "inputs": [
                    {"name": "b", "shape": shape or [1, 10], "datatype": dt, "parameters": {"binary_data_size": size}}
                ]
            }
        ).encode()

    h = header(40)
    cases = {
        "truncated": (
            h + b"\0" * 36,
            len(h),
            "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 36 bytes; input name: b",
        ),
        "size vs shape": (
            header(36) + b"\0" * 36,
            len(header(36)),
            "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 36 bytes; input name: b",
        ),
        "leftover": (h + b"\0" * 44, len(h), "Invalid content size of tensor proto - 4 bytes"),
        "header too long": (h, len(h) + 5, "Invalid argument - Inference-Header-Content-Length"),
        "no header length": (h, None, "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 0 bytes"),
        "negative dim": (
            header(40, [-1, 10]) + b"\0" * 40,
            len(header(40, [-1, 10])),
            "Invalid input shape - Negative or zero dimension size is not acceptable: (-1,10)",
        ),
        "bytes truncated": (
            header(9, [2], "BYTES") + struct.pack("<I", 5) + b"abcde",
            len(header(9, [2], "BYTES")),
            "Invalid number of values in tensor proto container - Expected: 2; Actual: 1",
        ),
        "bytes overrun": (
            header(7, [1], "BYTES") + struct.pack("<I", 50) + b"abc",
            len(header(7, [1], "BYTES")),
            "Invalid content size of tensor proto - BYTES element 0 declares 50 bytes",
        ),
        "bad datatype": (
            header(40, dt="FP33") + b"\0" * 40,
            len(header(40, dt="FP33")),
            "Invalid input precision - Unsupported precision: FP33",
        ),
    }
    for what, (body, hl, text) in cases.items():
        r = _post(server, body, hl, model="str" if "bytes" in what else "aff")
        assert r.status_code == 400, (what, r.text)
        assert r.json()["error"].startswith(text), (what, r.text)
    r = _post(server, h, "x")  # type: ignore[arg-type]
    assert r.status_code == 400 and "must be an integer" in r.json()["error"]


def test_json_request_errors_are_400(server: RunningServer) -> None:
    def body(data: Any, shape: list[int] | None = None) -> bytes:
        return json.dumps(
            {"inputs": [{"name": "b", "shape": shape or [1, 10], "datatype": "FP32", "data": data}]}
        ).encode()

    cases = [
        (b"{not json", "Could not parse instance content. Not valid ndarray detected"),
        (b'{"inputs": 3}', "Invalid argument - the request needs an inputs list"),
        (body(list(range(9))), "Invalid number of values in tensor proto container - Expected: 10; Actual: 9"),
        (body([[1, 2], [3]], [1, 3]), "Could not parse instance content"),
        (body(["x"] * 10), "Could not parse instance content"),
        (body(list(range(10)), [10**6, 10**6]), "Invalid number of values in tensor proto container"),
        (body(list(range(10)), [10**12, 10**12]), "Invalid input shape - the element count of"),
    ]
    for raw, text in cases:
        r = _post(server, raw)
        assert r.status_code == 400, r.text
        assert r.json()["error"].startswith(text), r.text
    ok = _post(server, body([list(range(5)), list(range(5, 10))]))  # nested data is flattened
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [2 * i + 1 for i in range(10)]


def test_grpc_typed_contents_and_raw_count(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        req = pb.ModelInferRequest(model_name="aff", id="t")
        t = req.inputs.add(name="b", datatype="FP32", shape=[1, 10])
        t.contents.fp32_contents.extend(range(10))
        res = infer(req, timeout=30)
        assert res.id == "t" and res.model_version == "1"
        y = np.frombuffer(res.raw_output_contents[0], np.float32)
        np.testing.assert_array_equal(y, np.arange(10) * 2 + 1)
        del t.contents.fp32_contents[:]
        t.contents.fp32_contents.extend(range(9))
        err = rpc_error(infer, req, timeout=30)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == (
            "Invalid number of values in tensor proto container - Expected: 10; Actual: 9; input name: b"
        )
        req.raw_input_contents.extend([b"\0" * 40, b"\0" * 40])
        err = rpc_error(infer, req, timeout=30)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "one per input" in (err.details() or "")
        ready = pb_grpc.GRPCInferenceServiceStub(channel).ModelReady
        err = rpc_error(ready, pb.ModelReadyRequest(name="zz"), timeout=30)
        assert err.code() == grpc.StatusCode.NOT_FOUND


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
