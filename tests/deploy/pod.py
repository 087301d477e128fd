"""Runs one KServe predictor container's command the way a pod runs it, and probes it.

Executed as root inside ``unshare --net --mount`` (a new network and mount namespace), not imported by
pytest: ``python pod.py SPEC.json``. The model directory is bound read-only onto ``/mnt/models`` as
KServe's storage initializer leaves it, loopback is brought up, the container's command is started, and
the probes, the four inference APIs and ``/metrics`` are called on the container's ports. The results
go to the spec's ``result`` file as JSON; the server's output to its ``log`` file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def prepare_namespace(models: str, own_paths: list[str]) -> None:
    """``/mnt/models`` as a read-only bind of ``models``; loopback up. Touches nothing outside."""
    _run("mount", "--make-rprivate", "/")
    if not os.path.isdir("/mnt/models"):
        # A tmpfs over /mnt makes the mount point without creating it on the host, unless one of the
        # paths this run needs lives under /mnt.
        if os.path.isdir("/mnt") and not any(p.startswith("/mnt/") for p in own_paths):
            _run("mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "tmpfs", "/mnt")
        os.makedirs("/mnt/models", exist_ok=True)
    _run("mount", "--bind", models, "/mnt/models")
    _run("mount", "-o", "remount,bind,ro", "/mnt/models")
    _run("ip", "link", "set", "lo", "up")


def _get(port: int, path: str) -> int:
    try:
        return requests.get(f"http://127.0.0.1:{port}{path}", timeout=10).status_code
    except requests.ConnectionError:
        return 0


def _wait_started(server: subprocess.Popen[bytes], port: int, path: str, deadline: float) -> int:
    """Polls the startup probe like the kubelet does, until it answers 200, the server exits, or time is up."""
    status = 0
    while time.monotonic() < deadline and server.poll() is None:
        status = _get(port, path)
        if status == 200:
            break
        time.sleep(0.2)
    return status


def call_apis(spec: dict[str, Any], x: np.ndarray) -> dict[str, Any]:
    """One inference over each API the runtime declares, plus the metrics the annotations point at."""
    import ovmsclient
    import tritonclient.grpc as tgrpc

    name, rest, grpc_port = spec["model"], spec["rest_port"], spec["grpc_port"]
    inp, out = spec["input"], spec["output"]
    res: dict[str, Any] = {}
    r = requests.post(f"http://127.0.0.1:{rest}/v1/models/{name}:predict", json={"instances": x.tolist()}, timeout=60)
    res["v1_rest"] = [r.status_code, r.json().get("predictions")]
    body = {"inputs": [{"name": inp, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    r = requests.post(f"http://127.0.0.1:{rest}/v2/models/{name}/infer", json=body, timeout=60)
    outputs = r.json().get("outputs", [{}])
    res["v2_rest"] = [r.status_code, outputs[0].get("shape"), outputs[0].get("data")]
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    tin = tgrpc.InferInput(inp, list(x.shape), "FP32")
    tin.set_data_from_numpy(x)
    res["v2_grpc_ready"] = client.is_model_ready(name)
    res["v2_grpc"] = client.infer(name, [tin]).as_numpy(out).tolist()
    client.close()
    res["v1_grpc"] = ovmsclient.make_grpc_client(f"127.0.0.1:{grpc_port}").predict({inp: x}, name).tolist()
    port, path = spec["metrics"]
    r = requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)
    res["metrics"] = [r.status_code, r.text]
    return res


def main(spec_path: str) -> int:
    """Prepare the namespace, start the server, probe it, stop it with SIGTERM; always writes a result."""
    spec = json.loads(Path(spec_path).read_text())
    result: dict[str, Any] = {}
    prepare_namespace(spec["models"], [sys.prefix, spec["models"], spec_path, __file__])
    with open(spec["log"], "wb") as log:
        server = subprocess.Popen(spec["argv"], stdout=log, stderr=subprocess.STDOUT)
    try:
        port, path = spec["probes"]["startup"]
        result["startup"] = _wait_started(server, port, path, time.monotonic() + spec["timeout"])
        if result["startup"] == 200:
            result["probes"] = {k: _get(p, q) for k, (p, q) in spec["probes"].items()}
            result.update(call_apis(spec, np.array(spec["x"], dtype=np.float32)))
            result["models_read_only"] = _read_only("/mnt/models")
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            result["exit_code"] = server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            result["exit_code"] = "killed after SIGTERM"
        Path(spec["result"]).write_text(json.dumps(result))
    return 0


def _read_only(mount_point: str) -> bool:
    """Whether the last mount on ``mount_point`` is read-only (mountinfo field 6: per-mount options)."""
    ro = False
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == mount_point:
            ro = "ro" in fields[5].split(",")
    return ro


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
