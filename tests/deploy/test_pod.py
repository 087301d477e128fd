"""The image's contract without an image: the Containerfile's entrypoint with the KServe runtime's args,
for the example InferenceService, run as a pod runs it (own network namespace, model at /mnt/models)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ..helpers.models import write_affine
from .manifests import containerfile, exec_form, inference_service, port_number, predictor_container, runtime

POD = Path(__file__).resolve().parent / "pod.py"


def _namespaces_unavailable() -> str | None:
    """Why ``unshare --net --mount`` cannot be used here, or None."""
    for tool in ("unshare", "ip", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(
        ["unshare", "--net", "--mount", "ip", "link", "set", "lo", "up"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        return f"unshare --net --mount is not permitted here: {probe.stderr.strip()}"
    return None


def _entrypoint() -> str:
    """The Containerfile's ENTRYPOINT, resolved to the console script installed with this package."""
    (text,) = containerfile()["ENTRYPOINT"]
    (program,) = exec_form(text)
    found = Path(sys.executable).parent / program
    assert found.exists(), f"{program} is not installed next to {sys.executable}"
    return str(found)


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs the predictor container of the example InferenceService once; its probe results."""
    reason = _namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("pod")
    isvc = inference_service()
    container = predictor_container(runtime(), isvc)
    rest = port_number(container, "http1")
    annotations = runtime()["spec"]["annotations"]
    probes = {
        k.removesuffix("Probe"): [
            port_number(container, container[k]["httpGet"]["port"]),
            container[k]["httpGet"]["path"],
        ]
        for k in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    (healthcheck,) = containerfile()["HEALTHCHECK"]
    probes["healthcheck"] = [rest, healthcheck.split("127.0.0.1:8080", 1)[1].split("'", 1)[0]]
    spec = {
        "argv": [_entrypoint(), *container["args"]],
        "models": str(write_affine(tmp / "model")),
        "model": isvc["metadata"]["name"],
        "input": "b",
        "output": "y",
        "rest_port": rest,
        "grpc_port": port_number(container, "grpc"),
        "probes": probes,
        "metrics": [int(annotations["prometheus.kserve.io/port"]), annotations["prometheus.kserve.io/path"]],
        # integers: exact in every inference precision; batch 3 against a [1,10] model needs --batch_size=auto
        "x": np.arange(30, dtype=np.float32).reshape(3, 10).tolist(),
        "timeout": 120,
        "log": str(tmp / "server.log"),
        "result": str(tmp / "result.json"),
    }
    (tmp / "spec.json").write_text(json.dumps(spec))
    run = subprocess.run(
        ["unshare", "--net", "--mount", sys.executable, str(POD), str(tmp / "spec.json")],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": ""},
    )
    log = (tmp / "server.log").read_text() if (tmp / "server.log").exists() else ""
    assert run.returncode == 0 and (tmp / "result.json").exists(), f"{run.stderr}\n--- server ---\n{log}"
    result: dict[str, Any] = json.loads((tmp / "result.json").read_text())
    result["log"] = log
    return result


def expected() -> list[list[float]]:
    return (np.arange(30, dtype=np.float32).reshape(3, 10) * 2 + 1).tolist()


def test_probes_answer_ready_and_live(pod: dict[str, Any]) -> None:
    assert pod["startup"] == 200, pod["log"]
    assert pod["probes"] == {"startup": 200, "readiness": 200, "liveness": 200, "healthcheck": 200}


def test_v1_rest_predict(pod: dict[str, Any]) -> None:
    assert pod["v1_rest"] == [200, expected()]


def test_v2_rest_and_grpc_infer(pod: dict[str, Any]) -> None:
    assert pod["v2_rest"] == [200, [3, 10], [v for row in expected() for v in row]]
    assert pod["v2_grpc_ready"] is True
    assert pod["v2_grpc"] == expected()


def test_tfs_grpc_predict(pod: dict[str, Any]) -> None:
    assert pod["v1_grpc"] == expected()


def test_metrics_count_the_requests(pod: dict[str, Any]) -> None:
    status, text = pod["metrics"]
    assert status == 200
    name = inference_service()["metadata"]["name"]
    served = [
        line
        for line in text.splitlines()
        if line.startswith("ovms_requests_success_total{") and f'name="{name}"' in line
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in served) >= 4, served


def test_model_directory_read_only_and_clean_exit(pod: dict[str, Any]) -> None:
    assert pod["models_read_only"] is True
    assert pod["exit_code"] == 0, pod["log"]
