"""Inference through system shared memory regions (made by ``tritonclient.utils.shared_memory``) with
the stock tritonclient clients: inputs and outputs in regions, mixed with message tensors, bytes
tensors, and how long the server keeps a region mapped (a request running or cancelled, a stop)."""

from __future__ import annotations

import gc
import queue
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from ...helpers.management import version_object
from ...helpers.models import write_affine
from ...helpers.server import F32, RunningServer
from ...helpers.shm import WIDE, Regions, mapped, mod, plain_input, shm_input, shm_output


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
