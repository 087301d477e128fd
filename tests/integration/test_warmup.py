"""Warm-up (SPEC §7.5) through real servers: sizes compiled before traffic, carried across versions."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import ovmsclient
import pytest
import requests
import tritonclient.http as thttp
from prometheus_client.parser import text_string_to_metric_families

from vinoserve.runtime.openvino import Runtime

from ..helpers.management import add_version, predict, reload, states, write_config
from ..helpers.models import write_affine, write_rigid, write_strings
from ..helpers.server import F32, RunningServer, Serve

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: RunningServer) -> Samples:
    r = requests.get(server.rest_url + "/metrics", timeout=30)
    assert r.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def get(samples: Samples, metric: str, **labels: str) -> float:
    """Sum of the samples of ``metric`` whose labels include ``labels`` (0 when none yet)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and want <= ls)


RESHAPES, MISSES, HITS = (
    "vinoserve_reshapes_total",
    "vinoserve_variant_cache_misses_total",
    "vinoserve_variant_cache_hits_total",
)


def rows(n: int) -> np.ndarray:
    return np.arange(n * 10, dtype=np.float32).reshape(n, 10) / 7


def infer_http(s: RunningServer, n: int, model: str = "m") -> np.ndarray:
    """One KServe REST inference with the stock Triton client; checks the affine answer (2x + 1)."""
    client = thttp.InferenceServerClient(f"localhost:{s.rest_port}")
    inp = thttp.InferInput("b", [n, 10], "FP32")
    inp.set_data_from_numpy(rows(n))
    out = client.infer(model, [inp]).as_numpy("y")
    np.testing.assert_allclose(out, rows(n) * 2 + 1, rtol=1e-6)
    return np.asarray(out)


def auto_server(serve: Serve, base: Path, *extra: str, runtime: Runtime | None = None) -> RunningServer:
    return serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(base),
            "--batch_size",
            "auto",
            "--plugin_config",
            F32,
            "--metrics_enable",
            "--file_system_poll_wait_seconds",
            "0",
            *extra,
        ],
        rest=True,
        runtime=runtime,
    )


def test_first_request_of_a_warmed_size_triggers_no_reshape(serve: Serve, tmp_path: Path) -> None:
    s = auto_server(serve, write_affine(tmp_path / "m"), "--warmup_batch_sizes", "1,8,3")
    warm = scrape(s)
    # 1 is the model's own batch, compiled at load; 8 and 3 were compiled by the warm-up, before traffic
    assert get(warm, RESHAPES, name="m", cause="warmup") == 2
    assert get(warm, RESHAPES, name="m", cause="request") == 0
    assert get(warm, MISSES, name="m") == 0 and get(warm, HITS, name="m") == 0
    assert get(warm, "vinoserve_variants_resident", name="m") == 3
    for n in (8, 3, 1):
        infer_http(s, n)
    after = scrape(s)
    assert get(after, RESHAPES, name="m") == 2  # no reshape for the first real request of each size
    assert get(after, MISSES, name="m") == 0 and get(after, HITS, name="m") == 3
    # metadata still shows the model's own shape until a request moves it (as without warm-up)
    meta = ovmsclient.make_grpc_client(s.grpc_address).get_model_metadata("m")
    assert meta["inputs"]["b"]["shape"] == [1, 10]


def test_more_sizes_than_shape_variants_warm_the_first_ones(
    serve: Serve, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = auto_server(serve, write_affine(tmp_path / "m"), "--shape_variants", "2", "--warmup_batch_sizes", "2,4,6")
    assert "3 warm-up batch sizes but 2 shape variants: warming the first 2 only" in caplog.text
    warm = scrape(s)
    assert get(warm, RESHAPES, name="m", cause="warmup") == 2
    assert get(warm, "vinoserve_variants_resident", name="m") == 2
    for n in (2, 4):
        infer_http(s, n)
    assert get(scrape(s), MISSES, name="m") == 0
    infer_http(s, 6)  # not warmed: compiled on request
    after = scrape(s)
    assert get(after, MISSES, name="m") == 1 and get(after, RESHAPES, name="m", cause="request") == 1


def test_dynamic_fixed_and_range_batches(serve: Serve, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base = write_affine(tmp_path / "m")
    caplog.set_level("INFO", logger="vinoserve")
    common = ["--model_name", "m", "--model_path", str(base), "--plugin_config", F32, "--metrics_enable"]
    dyn = serve([*common, "--batch_size", "-1", "--warmup_batch_sizes", "1,8"], rest=True)
    assert "Model m version 1 warmed up b(1,10), b(8,10) in" in caplog.text  # one inference at each size
    infer_http(dyn, 8)
    caplog.clear()
    fixed = serve([*common, "--warmup_batch_sizes", "1,8"], rest=True)
    assert "Model m version 1 warmed up b(1,10) in" in caplog.text  # the one compiled variant, once
    infer_http(fixed, 1)
    caplog.clear()
    # a size the range does not take is logged and skipped; the version loads and serves
    rng = serve([*common, "--batch_size", "2:4", "--warmup_batch_sizes", "1,3"], rest=True)
    assert "warm-up of b(1,10) failed: Invalid input batch size - Expected: [2~4]; Actual: 1" in caplog.text
    assert "Model m version 1 warmed up b(3,10) in" in caplog.text
    infer_http(rng, 3)
    for s in (dyn, fixed, rng):  # a fixed or dynamic model has no shape variants: still no reshape series
        assert not [n for (n, _) in scrape(s) if n.startswith("vinoserve_reshape")]


def test_a_shape_the_model_cannot_take_does_not_fail_the_load(serve: Serve, tmp_path: Path) -> None:
    s = auto_server(serve, write_rigid(tmp_path / "m"), "--warmup_batch_sizes", "3,1")
    assert states(s) == {1: "AVAILABLE"}
    warm = scrape(s)
    assert get(warm, "vinoserve_reshape_failures_total", name="m") == 1
    assert get(warm, MISSES, name="m") == 0
    client = thttp.InferenceServerClient(f"localhost:{s.rest_port}")
    inp = thttp.InferInput("b", [1, 10], "FP32")
    inp.set_data_from_numpy(rows(1))
    assert client.infer("m", [inp]).as_numpy("y").shape == (1, 2, 5)


def test_string_inputs_are_warmed_with_empty_bytes(serve: Serve, tmp_path: Path) -> None:
    s = auto_server(serve, write_strings(tmp_path / "m"), "--warmup_batch_sizes", "2")
    assert get(scrape(s), RESHAPES, name="m", cause="warmup") == 1
    client = thttp.InferenceServerClient(f"localhost:{s.rest_port}")
    inp = thttp.InferInput("s", [2], "BYTES")
    inp.set_data_from_numpy(np.array([b"ab", b"c"], dtype=object))
    assert list(client.infer("m", [inp]).as_numpy("s")) == [b"ab", b"c"]
    assert get(scrape(s), MISSES, name="m") == 0


def test_new_version_warms_what_the_old_one_served(serve: Serve, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "m", 1, bias=1.0)
    s = auto_server(serve, base, "--shape_variants", "2")
    for n in (4, 4, 4, 2, 2, 6):  # 4 and 2 served most; 6 is the most recent; 1 (loaded) is never used
        infer_http(s, n)
    add_version(base, 2, tmp_path / "staging", bias=1.0)
    assert reload(s) is True
    assert states(s) == {2: "AVAILABLE", 1: "END"}
    warm = scrape(s)
    assert get(warm, RESHAPES, name="m", version="2", cause="warmup") == 2
    assert get(warm, MISSES, name="m", version="2") == 0
    for n in (4, 2):
        infer_http(s, n)
    after = scrape(s)
    assert get(after, MISSES, name="m", version="2") == 0 and get(after, HITS, name="m", version="2") == 2
    assert get(after, RESHAPES, name="m", version="2", cause="request") == 0


def test_config_reload_warms_what_the_model_served(serve: Serve, tmp_path: Path) -> None:
    entry = {
        "name": "m",
        "base_path": str(write_affine(tmp_path / "m")),
        "batch_size": "auto",
        "plugin_config": json.loads(F32),
        "warmup_batch_sizes": [2],
    }
    cfg = write_config(tmp_path / "config.json", [entry])
    s = serve(["--config_path", str(cfg), "--metrics_enable", "--file_system_poll_wait_seconds", "0"], rest=True)
    for n in (5, 5, 2):
        infer_http(s, n)
    before = scrape(s)
    assert get(before, RESHAPES, name="m", cause="warmup") == 1 and get(before, MISSES, name="m") == 1
    write_config(cfg, [{**entry, "nireq": 2, "warmup_batch_sizes": [3]}])  # a change: the model reloads
    assert reload(s) is True
    warm = scrape(s)
    # the new object of version 1 warmed 3 (configured), then 5 and 2 (served by the old one)
    assert get(warm, RESHAPES, name="m", cause="warmup") - get(before, RESHAPES, name="m", cause="warmup") == 3
    for n in (5, 2, 3):
        infer_http(s, n)
    after = scrape(s)
    assert get(after, MISSES, name="m") == get(before, MISSES, name="m")
    assert get(after, RESHAPES, name="m", cause="request") == get(before, RESHAPES, name="m", cause="request")


def test_bad_values_are_config_errors(serve: Serve, tmp_path: Path) -> None:
    entry = {"name": "m", "base_path": str(write_affine(tmp_path / "m"))}
    cfg = write_config(tmp_path / "config.json", [entry])
    s = serve(["--config_path", str(cfg), "--file_system_poll_wait_seconds", "0"])
    write_config(cfg, [{**entry, "warmup_batch_sizes": [8, 0]}])
    assert reload(s) is False
    assert (
        s.server.manager.config_error
        == "Config of model 'm': 'warmup_batch_sizes' must hold positive integers only (got 0)"
    )
    assert predict(s) == (1, 1.0)


def test_version_is_not_available_until_its_warm_up_ended(serve: Serve, tmp_path: Path) -> None:
    base = write_affine(tmp_path / "m", 1, bias=1.0)
    gate, compiling, hold = threading.Event(), threading.Event(), threading.Event()
    runtime = Runtime()

    def slow_batch_3(shapes: Any) -> None:  # the runtime's seam: hold the compile of batch 3 once armed
        if hold.is_set() and next(iter(shapes.values()))[0].lo == 3:
            compiling.set()
            gate.wait(30)

    runtime.before_compile = slow_batch_3
    s = auto_server(serve, base, "--warmup_batch_sizes", "3", runtime=runtime)
    hold.set()
    add_version(base, 2, tmp_path / "staging", bias=2.0)
    done: dict[str, bool] = {}
    reloading = threading.Thread(target=lambda: done.update(changed=reload(s)))
    reloading.start()
    try:
        assert compiling.wait(30)
        status = ovmsclient.make_grpc_client(s.grpc_address).get_model_status("m")
        assert status[2]["state"] == "LOADING" and status[1]["state"] == "AVAILABLE"
        assert predict(s) == (1, 1.0)  # version 1 serves while version 2 warms up
    finally:
        gate.set()
        reloading.join(60)
    assert done == {"changed": True}
    assert states(s) == {2: "AVAILABLE", 1: "END"}
    assert predict(s, x=np.ones((3, 10), np.float32)) == (2, 2.0)
    assert get(scrape(s), MISSES, name="m", version="2") == 0
