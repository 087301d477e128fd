"""System shared memory regions with the stock tritonclient clients over gRPC and HTTP: registering,
listing and unregistering them, the server metadata naming the extension, and every refusal (bad
keys, spans, duplicates, unknown or too small regions, malformed bodies and parameters)."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2 as pb
from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2_grpc as pb_grpc

from ...helpers.clients import rpc_error
from ...helpers.server import RunningServer
from ...helpers.shm import Regions, mod, plain_input, shm_input, shm_output


def test_status_and_unregister(client: Any, regions: Regions) -> None:
    _, k1 = regions.make(4096)
    _, k2 = regions.make(64)
    client.register_system_shared_memory("r1", k1, 1000, offset=96)
    client.register_system_shared_memory("r2", k2, 64)

    def listed(name: str = "") -> dict[str, tuple[str, int, int]]:
        st = client.get_system_shared_memory_status(name)
        if mod(client) is tgrpc:
            return {n: (r.key, r.offset, r.byte_size) for n, r in st.regions.items()}
        return {r["name"]: (r["key"], r["offset"], r["byte_size"]) for r in st}

    assert listed() == {"r1": (k1, 96, 1000), "r2": (k2, 64 * 0, 64)}
    assert listed("r2") == {"r2": (k2, 0, 64)}
    client.unregister_system_shared_memory("r1")
    client.unregister_system_shared_memory("r1")  # an unknown name is no error, as in Triton
    assert listed() == {"r2": (k2, 0, 64)}
    client.register_system_shared_memory("r1", k1, 8)  # the name is free again
    client.unregister_system_shared_memory()
    assert listed() == {}


def _error(fn: Any, *args: Any, **kw: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        fn(*args, **kw)
    return info.value


def _is_invalid(client: Any, err: InferenceServerException) -> None:
    assert err.status() == ("StatusCode.INVALID_ARGUMENT" if mod(client) is tgrpc else "400"), err


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("/vinoserve-test-missing", "Unable to open shared memory region"),
        ("../etc/passwd", "not a path"),
        ("/a/b", "not a path"),
        ("/..", "not a path"),
        ("", "not a path"),
    ],
)
def test_register_refuses_bad_keys(client: Any, key: str, text: str) -> None:
    err = _error(client.register_system_shared_memory, "bad", key, 16)
    _is_invalid(client, err)
    assert text in err.message()


def test_register_refuses_bad_spans_and_duplicates(client: Any, regions: Regions) -> None:
    _, key = regions.make(100)
    for offset, size in ((0, 101), (90, 11), (100, 1), (0, 0)):
        err = _error(client.register_system_shared_memory, "r", key, size, offset=offset)
        _is_invalid(client, err)
    client.register_system_shared_memory("r", key, 100)
    err = _error(client.register_system_shared_memory, "r", key, 10)
    _is_invalid(client, err)
    assert "already in manager" in err.message()
    err = _error(client.get_system_shared_memory_status, "nope")
    _is_invalid(client, err)


def test_infer_refuses_bad_regions(client: Any, regions: Regions) -> None:
    x = np.ones((1, 10), dtype=np.float32)
    _, key = regions.make(64)
    client.register_system_shared_memory("r", key, 48, offset=16)
    cases = [
        (shm_input(client, "b", [1, 10], "nope", 40), None, "Unable to find system shared memory region: 'nope'"),
        (shm_input(client, "b", [1, 10], "r", 40, offset=12), None, "beyond the 48 bytes of region 'r'"),
        (shm_input(client, "b", [1, 10], "r", 36), None, "Expected: 40 bytes; Actual: 36 bytes"),
        (plain_input(client, "b", x), shm_output(client, "y", "nope", 40), "Unable to find"),
        (plain_input(client, "b", x), shm_output(client, "y", "r", 40, offset=9), "beyond the 48 bytes"),
        (plain_input(client, "b", x), shm_output(client, "y", "r", 36), "should be at least 40 bytes"),
    ]
    for inp, out, text in cases:
        err = _error(client.infer, "aff", [inp], outputs=None if out is None else [out])
        _is_invalid(client, err)
        assert text in err.message(), err.message()
    np.testing.assert_array_equal(client.infer("aff", [plain_input(client, "b", x)]).as_numpy("y"), x * 3)


def test_server_metadata_names_the_extension(client: Any) -> None:
    meta = client.get_server_metadata()
    extensions = meta.extensions if mod(client) is tgrpc else meta["extensions"]
    assert "system_shared_memory" in extensions


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"byte_size": 8}',
        b'{"key": 5, "byte_size": 8}',
        b'{"key": "/k"}',
        b'{"key": "/k", "byte_size": true}',
        b'{"key": "/k", "byte_size": 8, "offset": -1}',
        b'{"key": "/k", "byte_size": 8.5}',
    ],
)
def test_rest_register_refuses_malformed_bodies(server: RunningServer, body: bytes) -> None:
    r = requests.post(f"{server.rest_url}/v2/systemsharedmemory/region/r/register", data=body, timeout=30)
    assert r.status_code == 400 and "error" in r.json()


@pytest.mark.parametrize(
    "params",
    [
        {"shared_memory_region": "r"},  # no byte size
        {"shared_memory_region": "r", "shared_memory_byte_size": "40"},
        {"shared_memory_region": 7, "shared_memory_byte_size": 40},
        {"shared_memory_region": "r", "shared_memory_byte_size": 40, "shared_memory_offset": -4},
        {"shared_memory_byte_size": 40},  # no region
    ],
)
def test_malformed_shared_memory_parameters(server: RunningServer, params: dict[str, Any]) -> None:
    doc: dict[str, Any] = {"inputs": [{"name": "b", "datatype": "FP32", "shape": [1, 10], "parameters": params}]}
    r = requests.post(f"{server.rest_url}/v2/models/aff/infer", json=doc, timeout=30)
    assert r.status_code == 400 and "shared_memory" in r.json()["error"]
    request = pb.ModelInferRequest(model_name="aff")
    tensor = request.inputs.add(name="b", datatype="FP32", shape=[1, 10])
    for k, v in params.items():
        if isinstance(v, str):
            tensor.parameters[k].string_param = v
        else:
            tensor.parameters[k].int64_param = v
    with grpc.insecure_channel(server.grpc_address) as channel:
        err = rpc_error(pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer, request, timeout=30)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_shared_memory_input_with_data_too_is_refused(server: RunningServer, regions: Regions) -> None:
    _, key = regions.make(64)
    requests.post(
        f"{server.rest_url}/v2/systemsharedmemory/region/r/register", json={"key": key, "byte_size": 64}, timeout=30
    ).raise_for_status()
    try:
        x = np.ones((1, 10), dtype=np.float32)
        params = {"shared_memory_region": "r", "shared_memory_byte_size": 40}
        doc: dict[str, Any] = {
            "inputs": [
                {"name": "b", "datatype": "FP32", "shape": [1, 10], "data": x.ravel().tolist(), "parameters": params}
            ]
        }
        r = requests.post(f"{server.rest_url}/v2/models/aff/infer", json=doc, timeout=30)
        assert r.status_code == 400 and "must not carry data" in r.json()["error"]
        # gRPC: a raw buffer, but no input outside shared memory for it
        request = pb.ModelInferRequest(model_name="aff", raw_input_contents=[x.tobytes()])
        tensor = request.inputs.add(name="b", datatype="FP32", shape=[1, 10])
        tensor.parameters["shared_memory_region"].string_param = "r"
        tensor.parameters["shared_memory_byte_size"].int64_param = 40
        with grpc.insecure_channel(server.grpc_address) as channel:
            err = rpc_error(pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer, request, timeout=30)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "raw_input_contents has 1 entries for 0 inputs" in (err.details() or "")
    finally:
        requests.post(f"{server.rest_url}/v2/systemsharedmemory/unregister", timeout=30).raise_for_status()
