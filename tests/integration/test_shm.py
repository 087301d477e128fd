"""System shared memory (the KServe v2 extension as Triton defines it) with the stock tritonclient
clients over gRPC and HTTP: regions made by ``tritonclient.utils.shared_memory``."""

from __future__ import annotations

import gc
import json
import queue
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2 as pb
from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2_grpc as pb_grpc

from ..helpers.clients import rpc_error
from ..helpers.management import version_object, write_config
from ..helpers.models import write_affine, write_slow_affine, write_strings, write_two_inputs
from ..helpers.server import F32, RunningServer

F32_BYTES = 4
WIDE = 4096  # f32 columns of the "wide" model: one row is 16 KiB, an input OpenVINO reads in place


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server: affine [1,10], two inputs, strings, and a slow model for requests in flight."""
    root = tmp_path_factory.mktemp("shm")
    paths = {
        "aff": write_affine(root / "aff"),
        "two": write_two_inputs(root / "two"),
        "str": write_strings(root / "str"),
        "slow": write_slow_affine(root / "slow"),
        # one row of 16 KiB (read in place, not copied) and the work of a batch of 32 of "slow"
        "wide": write_slow_affine(root / "wide", rows_per_item=32 * 32, width=WIDE),
    }
    entries = [{"name": n, "base_path": str(p), "plugin_config": json.loads(F32)} for n, p in paths.items()]
    s = RunningServer(["--config_path", str(write_config(root / "config.json", entries))], rest=True)
    yield s
    s.stop()


@pytest.fixture(params=["grpc", "http"])
def client(request: pytest.FixtureRequest, server: RunningServer) -> Iterator[Any]:
    """A tritonclient of each protocol; every region is unregistered after the test."""
    if request.param == "grpc":
        c: Any = tgrpc.InferenceServerClient(server.grpc_address)
    else:
        c = thttp.InferenceServerClient(f"localhost:{server.rest_port}")
    yield c
    c.unregister_system_shared_memory()
    c.close()


class Regions:
    """Shared-memory objects made for one test, destroyed (unmapped and unlinked) after it."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def make(self, size: int) -> tuple[Any, str]:
        """A new object of ``size`` bytes and its key."""
        key = f"/vinoserve-test-{uuid.uuid4().hex[:12]}"
        handle = shm.create_shared_memory_region(key.strip("/"), key, size, create_only=True)
        self.handles.append(handle)
        return handle, key

    def destroy(self, handle: Any) -> None:
        """Unmap and unlink one object now."""
        self.handles.remove(handle)
        shm.destroy_shared_memory_region(handle)


@pytest.fixture
def regions() -> Iterator[Regions]:
    r = Regions()
    yield r
    for h in list(r.handles):
        r.destroy(h)


def mod(client: Any) -> Any:
    return tgrpc if isinstance(client, tgrpc.InferenceServerClient) else thttp


def shm_input(
    client: Any, name: str, shape: list[int], region: str, size: int, offset: int = 0, datatype: str = "FP32"
) -> Any:
    i = mod(client).InferInput(name, shape, datatype)
    i.set_shared_memory(region, size, offset)
    return i


def shm_output(client: Any, name: str, region: str, size: int, offset: int = 0) -> Any:
    o = mod(client).InferRequestedOutput(name)
    o.set_shared_memory(region, size, offset)
    return o


def plain_input(client: Any, name: str, array: np.ndarray) -> Any:
    i = mod(client).InferInput(name, list(array.shape), "FP32")
    i.set_data_from_numpy(array)
    return i


def mapped(key: str) -> bool:
    """Whether this process (the test server runs in it) maps the shared-memory object ``key``."""
    return f"/dev/shm/{key.strip('/')}" in Path("/proc/self/maps").read_text()


def test_inputs_and_outputs_in_shared_memory(client: Any, regions: Regions) -> None:
    x = np.arange(10, dtype=np.float32).reshape(1, 10) / 3
    h_in, k_in = regions.make(256)
    h_out, k_out = regions.make(256)
    shm.set_shared_memory_region(h_in, [x], offset=24)
    client.register_system_shared_memory("in", k_in, 100, offset=20)  # the region starts at byte 20
    client.register_system_shared_memory("out", k_out, 200)
    result = client.infer(
        "aff",
        [shm_input(client, "b", [1, 10], "in", 40, offset=4)],
        outputs=[shm_output(client, "y", "out", 40, offset=64)],
    )
    np.testing.assert_array_equal(shm.get_contents_as_numpy(h_out, np.float32, [1, 10], offset=64), x * 2 + 1)
    # the response carries the output's metadata and no data
    out = result.get_output("y")
    shape = out.shape if mod(client) is tgrpc else out["shape"]
    assert list(shape) == [1, 10]
    assert (out.datatype if mod(client) is tgrpc else out["datatype"]) == "FP32"
    if mod(client) is thttp:
        assert "data" not in out and "binary_data_size" not in out.get("parameters", {})
    else:
        assert result.get_response().raw_output_contents == [b""]


def test_mixed_shared_memory_and_message_tensors(client: Any, regions: Regions) -> None:
    a = np.linspace(-1, 1, 10, dtype=np.float32).reshape(1, 10)
    b = np.arange(10, dtype=np.float32).reshape(1, 10)
    h, key = regions.make(128)
    shm.set_shared_memory_region(h, [a])
    client.register_system_shared_memory("io", key, 128)
    result = client.infer(
        "two",
        [shm_input(client, "a", [1, 10], "io", 40), plain_input(client, "b", b)],
        outputs=[mod(client).InferRequestedOutput("sum"), shm_output(client, "diff", "io", 40, offset=64)],
    )
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
    np.testing.assert_array_equal(shm.get_contents_as_numpy(h, np.float32, [1, 10], offset=64), a - b)
    np.testing.assert_array_equal(shm.get_contents_as_numpy(h, np.float32, [1, 10]), a)  # input untouched


def test_bytes_tensors_in_shared_memory(client: Any, regions: Regions) -> None:
    s = np.array([b"one", b"", b"three"], dtype=object)
    raw = tgrpc.serialize_byte_tensor(s).item()
    h, key = regions.make(256)
    shm.set_shared_memory_region(h, [np.array([raw], dtype=object)])
    client.register_system_shared_memory("s", key, 256)
    client.infer(
        "str",
        [shm_input(client, "s", [3], "s", len(raw), datatype="BYTES")],
        outputs=[shm_output(client, "s", "s", 128, offset=128)],
    )
    assert list(shm.get_contents_as_numpy(h, np.object_, [3], offset=128)) == list(s)


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


def test_unregister_while_a_request_runs(server: RunningServer, regions: Regions) -> None:
    """Regions unregistered while a request reads and writes them stay mapped until it ends."""
    batch = 32
    x = np.arange(batch * 10, dtype=np.float32).reshape(batch, 10)
    h, key = regions.make(2 * x.nbytes)
    shm.set_shared_memory_region(h, [x])
    grpc_client = tgrpc.InferenceServerClient(server.grpc_address)
    http_client = thttp.InferenceServerClient(f"localhost:{server.rest_port}")
    grpc_client.register_system_shared_memory("slow-in", key, x.nbytes)
    grpc_client.register_system_shared_memory("slow-out", key, x.nbytes, offset=x.nbytes)
    done: queue.Queue[tuple[Any, Any]] = queue.Queue()
    inp = shm_input(grpc_client, "b", [batch, 10], "slow-in", x.nbytes)
    grpc_client.async_infer(
        "slow",
        [inp],
        lambda result, error: done.put((result, error)),
        outputs=[shm_output(grpc_client, "y", "slow-out", x.nbytes), tgrpc.InferRequestedOutput("work")],
        client_timeout=120,
    )
    deadline = time.monotonic() + 60
    while server.server.dataplane.drain.in_flight == 0 and done.empty() and time.monotonic() < deadline:
        time.sleep(0.005)
    http_client.unregister_system_shared_memory()
    assert http_client.get_system_shared_memory_status() == []
    result, error = done.get(timeout=120)
    assert error is None, error
    np.testing.assert_array_equal(shm.get_contents_as_numpy(h, np.float32, [batch, 10], offset=x.nbytes), x * 2 + 1)
    assert result.as_numpy("work").shape == (1, 1)
    regions.destroy(h)  # the test's own mapping goes; the server's would show as '(deleted)'
    gc.collect()
    assert not mapped(key)
    grpc_client.close()
    http_client.close()


def test_a_cancelled_request_keeps_its_region_until_the_inference_ends(server: RunningServer, regions: Regions) -> None:
    """The client gives up mid-inference and unregisters: OpenVINO still reads the input in place (a
    16 KiB input is not copied), so the mapping stays while the inference runs, then goes; the server
    keeps serving."""
    x = np.arange(WIDE, dtype=np.float32).reshape(1, WIDE)
    c = tgrpc.InferenceServerClient(server.grpc_address)
    seen_running = False
    # on a loaded machine the deadline may pass before the request reaches the model: try a few times
    for _ in range(4):
        h, key = regions.make(x.nbytes)
        shm.set_shared_memory_region(h, [x])
        c.register_system_shared_memory("cut-in", key, x.nbytes)
        try:
            c.infer("wide", [shm_input(c, "b", [1, WIDE], "cut-in", x.nbytes)], client_timeout=0.05)
        except InferenceServerException as exc:
            assert "Deadline" in str(exc.message()) or "DEADLINE" in str(exc.status())
        c.unregister_system_shared_memory()
        regions.destroy(h)
        held = mapped(key)
        pools = [v.pool for v in version_object(server, "wide", 1)._variants.variants()]
        if any(p.idle < p.size for p in pools):  # still running now, so it was when mapped() looked
            assert held, "the region was unmapped while OpenVINO read it in place"
            seen_running = True
        deadline = time.monotonic() + 60
        while True:
            gc.collect()
            if not mapped(key) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert not mapped(key)
        if seen_running:
            break
    assert seen_running, "no cancelled inference was still running after the unregistration"
    y = np.ones((1, 10), dtype=np.float32)
    np.testing.assert_array_equal(c.infer("aff", [plain_input(c, "b", y)]).as_numpy("y"), y * 3)
    c.close()


def test_stop_unmaps_every_region(tmp_path: Path, regions: Regions) -> None:
    s = RunningServer(
        ["--model_name", "aff", "--model_path", str(write_affine(tmp_path / "aff")), "--plugin_config", F32]
    )
    try:
        c = tgrpc.InferenceServerClient(s.grpc_address)
        h, key = regions.make(128)
        c.register_system_shared_memory("in", key, 40)
        c.register_system_shared_memory("out", key, 64, offset=64)
        c.infer("aff", [shm_input(c, "b", [1, 10], "in", 40)], outputs=[shm_output(c, "y", "out", 40)])
        c.close()
        regions.destroy(h)
        assert mapped(key)  # the server's mappings of the (now unlinked) object
    finally:
        s.stop()
    assert not mapped(key)


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
