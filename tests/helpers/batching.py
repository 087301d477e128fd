"""Helpers of the request-batching tests on real servers: distinct rows per client, one sender per
protocol, the slow model served with batching, many clients at once, and the batching metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from .clients import out_array, predict_raw
from .models import write_slow
from .server import F32, RunningServer, Serve

CLIENTS = 32
SIZE, DEPTH = 16, 4  # the slow model: y = roll(x, DEPTH, axis=1) on rows of SIZE


def metric(s: RunningServer, name: str, model: str = "m") -> float:
    """One per-version sample of ``GET /metrics`` (0 when absent)."""
    text = requests.get(s.rest_url + "/metrics", timeout=30).text
    m = re.search(rf'^{name}{{name="{model}",version="1"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def mean_batch(s: RunningServer) -> float:
    """The mean number of rows per batch run so far (0 before any)."""
    count = metric(s, "vinoserve_batch_size_count")
    return metric(s, "vinoserve_batch_size_sum") / count if count else 0.0


def distinct(i: int, rows: int = 1, width: int = SIZE) -> np.ndarray:
    """Rows no other client sends: client i's row r holds i*100 + r*10 + column."""
    return (i * 100 + np.arange(rows)[:, None] * 10 + np.arange(width)[None, :]).astype(np.float32)


def tfs_grpc(s: RunningServer, x: np.ndarray, name: str) -> np.ndarray:
    """Output y for input ``name`` = x over TFS gRPC."""
    return out_array(predict_raw(s, {name: x}, timeout=120), "y")


def tfs_rest(s: RunningServer, x: np.ndarray, name: str) -> np.ndarray:
    """Output y for input ``name`` = x over TFS REST."""
    r = requests.post(f"{s.rest_url}/v1/models/m:predict", data=json.dumps({"inputs": {name: x.tolist()}}), timeout=120)
    assert r.status_code == 200, r.text
    return np.array(r.json()["outputs"], dtype=np.float32)


def kserve_grpc(s: RunningServer, x: np.ndarray, name: str) -> np.ndarray:
    """Output y for input ``name`` = x over KServe gRPC (tritonclient)."""
    client = tgrpc.InferenceServerClient(s.grpc_address)
    try:
        inp = tgrpc.InferInput(name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = client.infer("m", [inp], client_timeout=120).as_numpy("y")
        assert out is not None
        return np.asarray(out)
    finally:
        client.close()


def kserve_rest(s: RunningServer, x: np.ndarray, name: str) -> np.ndarray:
    """Output y for input ``name`` = x over KServe REST (tritonclient, binary data)."""
    client = thttp.InferenceServerClient(f"localhost:{s.rest_port}", network_timeout=120)
    try:
        inp = thttp.InferInput(name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        out = client.infer("m", [inp]).as_numpy("y")
        assert out is not None
        return np.asarray(out)
    finally:
        client.close()


PROTOCOLS: dict[str, Callable[[RunningServer, np.ndarray, str], np.ndarray]] = {
    "tfs-grpc": tfs_grpc,
    "tfs-rest": tfs_rest,
    "kserve-grpc": kserve_grpc,
    "kserve-rest": kserve_rest,
}


def slow_server(serve: Serve, tmp_path: Path, batching: dict[str, object], *extra: str) -> RunningServer:
    """The slow model (one infer request, so requests queue behind a running batch) with batching."""
    base = write_slow(tmp_path / "slow", size=SIZE, depth=DEPTH, repeat=2048)
    return serve(
        [
            "--model_name",
            "m",
            "--model_path",
            str(base),
            "--nireq",
            "1",
            "--plugin_config",
            F32,
            "--metrics_enable",
            "--dynamic_batching",
            json.dumps(batching),
            *extra,
        ],
        rest=True,
    )


def run_clients(fn: Callable[[int], None], n: int = CLIENTS) -> None:
    """Run ``fn(i)`` for i in 0..n-1, all at once on n threads; re-raises the first failure."""
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(fn, range(n)))
