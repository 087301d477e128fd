"""vinoserve on a real two-node Ray cluster (one machine, loopback-only network namespace).

The cluster runs in ``unshare --net --pid --fork --mount-proc``: Ray binds only 127.0.0.1 there, and
every process it starts lives in the namespace's own process tree. Both nodes run a proxy (HTTP and
gRPC) and one replica; stock clients talk to both nodes' proxies; one replica is killed under traffic.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ..helpers.models import write_affine
from ..helpers.server import F32, Serve
from .calls import EXPECTED, MODEL, errors

ROOT = Path(__file__).resolve().parents[2]
LIMIT_MB = 1
FLAGS = {
    "model_name": MODEL,
    "batch_size": "auto",
    "plugin_config": F32,
    "max_request_mb": LIMIT_MB,
    "file_system_poll_wait_seconds": 0,
}


def _unavailable() -> str | None:
    """Why the cluster cannot run here, or None."""
    # found, not imported: importing Ray here would run its deprecation warnings into pytest's errors
    ray = importlib.util.find_spec("ray")
    if ray is None or not ray.submodule_search_locations or importlib.util.find_spec("starlette") is None:
        return "ray[serve] is not installed (pip install vinoserve[ray])"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc", "ip", "link", "set", "lo", "up"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"unshare --net --pid --mount-proc is not permitted here: {probe.stderr.strip()}"
    return None


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline[:200]}")
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs the cluster script once; its results, plus the Ray processes still found afterwards."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("ray")
    # Ray's socket paths must stay under 108 bytes: a short directory of its own
    ray_tmp = Path(tempfile.mkdtemp(prefix="vsray-"))
    try:
        spec = {
            "config": str(ROOT / "deploy" / "ray" / "serve.yaml"),
            "temp_dir": str(ray_tmp),
            "result": str(tmp / "result.json"),
            "limit_bytes": LIMIT_MB * 2**20,
            "flags": {**FLAGS, "model_path": str(write_affine(tmp / "model"))},
        }
        (tmp / "spec.json").write_text(json.dumps(spec))
        run = subprocess.run(
            [
                "unshare",
                "--net",
                "--pid",
                "--fork",
                "--mount-proc",
                sys.executable,
                "-m",
                "tests.rayserve.cluster",
                str(tmp / "spec.json"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=400,
            env={**os.environ, "PYTHONPATH": ""},
        )
        assert run.returncode == 0 and (tmp / "result.json").exists(), run.stdout[-3000:] + run.stderr[-5000:]
        result: dict[str, Any] = json.loads((tmp / "result.json").read_text())
        result["left_on_host"] = _processes_mentioning(str(ray_tmp))
        assert "error" not in result, f"{result['error']}\n{run.stderr[-5000:]}"
        return result
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_serve_run_starts_the_documented_config(cluster: dict[str, Any]) -> None:
    code, output = cluster["serve_run"]
    assert code == 0, output


@pytest.mark.parametrize("node", ["head", "worker"])
def test_stock_clients_get_correct_results_through_each_node(cluster: dict[str, Any], node: str) -> None:
    got = cluster[node]
    for client in ("triton_http", "triton_grpc", "ovms_grpc", "ovms_http"):
        assert got[client] == EXPECTED, client
    assert got["triton_http_ready"] and got["triton_grpc_ready"]
    assert got["triton_grpc_inputs"] == ["b"]
    assert got["ovms_grpc_status"] == {"1": "AVAILABLE"}


def test_each_node_proxy_is_served_by_its_own_replica(cluster: dict[str, Any]) -> None:
    """Ray's proxies prefer local replicas: each node's ports reach that node's replica, so both serve."""
    nodes = cluster["nodes"]
    for when in ("served_by", "served_by_after_kill"):
        for node in ("head", "worker"):
            assert set(cluster[when][node]) == {nodes[node]}, (when, node)


def test_errors_are_the_standalone_servers(cluster: dict[str, Any], serve: Serve, tmp_path: Path) -> None:
    """Same gRPC codes, HTTP statuses and texts through Ray's proxies as from vinoserve itself."""
    flags = {**FLAGS, "model_path": str(write_affine(tmp_path / "model"))}
    s = serve([f"--{k}={v}" for k, v in flags.items()], rest=True)
    standalone = errors(s.rest_port, s.grpc_port, LIMIT_MB * 2**20)
    assert cluster["errors"] == standalone
    assert cluster["errors"]["tfs_too_large"][0] == "RESOURCE_EXHAUSTED"
    assert cluster["errors"]["v2_unknown_model"][0] == 404


def test_killed_replica_is_replaced_without_failed_requests(cluster: dict[str, Any]) -> None:
    kill = cluster["kill"]
    assert kill["failed"] == [] and kill["wrong"] == 0
    assert kill["victim"] not in kill["replicas_after"] and len(kill["replicas_after"]) == 2
    # requests went on while the replacement started, and after it
    assert kill["killed_at"] < kill["replaced_at"] < kill["requests"]


def test_no_ray_process_is_left(cluster: dict[str, Any]) -> None:
    assert cluster["left"] == [], "left in the namespace after shutdown"
    assert cluster["left_on_host"] == []
