"""The KServe manifests against KServe's strict CRD schemas, and their args against vinoserve's flags."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from vinoserve.cli import build_settings
from vinoserve.config import ServerSettings, parse_batch

from .manifests import (
    KSERVE,
    ROOT,
    containerfile,
    exec_form,
    inference_service,
    load,
    port_number,
    predictor_container,
    runtime,
    schema_errors,
)

FIXTURES = ROOT / "tests" / "deploy" / "fixtures"
MANIFESTS = sorted(p.name for p in KSERVE.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_passes_strict_schema(name: str) -> None:
    assert schema_errors(load(KSERVE / name)) == []


@pytest.mark.parametrize(
    ("fixture", "where", "message"),
    [
        ("runtime_misspelt_key.yaml", "spec: ", "'supportedModelFormat' was unexpected"),
        ("runtime_string_port.yaml", "spec/containers/0/ports/0/containerPort: ", "is not of type 'integer'"),
        ("isvc_misspelt_key.yaml", "spec/predictor/model: ", "'storageURI' was unexpected"),
        ("clusterruntime_probe_port_list.yaml", "spec/containers/0/readinessProbe/httpGet/port: ", "is not valid"),
    ],
)
def test_schema_rejects_broken_manifest(fixture: str, where: str, message: str) -> None:
    errors = schema_errors(load(FIXTURES / fixture))
    assert len(errors) == 1, errors
    assert errors[0].startswith(where) and message in errors[0], errors


def test_cluster_runtime_has_the_same_spec() -> None:
    cluster = load(KSERVE / "clusterservingruntime.yaml")
    assert cluster["kind"] == "ClusterServingRuntime"
    assert cluster["metadata"] == runtime()["metadata"]
    assert cluster["spec"] == runtime()["spec"]


def test_runtime_ports_probes_and_metrics_agree_with_its_args() -> None:
    rt = runtime()
    container = predictor_container(rt, inference_service())
    settings = build_settings(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http1": settings.rest_port, "grpc": settings.port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert port_number(container, container[probe]["httpGet"]["port"]) == settings.rest_port, probe
    assert int(rt["spec"]["annotations"]["prometheus.kserve.io/port"]) == settings.rest_port
    assert rt["spec"]["annotations"]["prometheus.kserve.io/path"] == "/metrics" and settings.metrics_enable
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["runAsUser"] != 0


def test_runtime_serves_kserve_defaults_and_the_example_service() -> None:
    rt, isvc = runtime(), inference_service()
    formats = {f["name"]: f.get("autoSelect", False) for f in rt["spec"]["supportedModelFormats"]}
    assert formats == {"openvino": True, "onnx": False}
    # KServe gives an InferenceService without protocolVersion v1: the runtime must list it
    assert {"v1", "v2", "grpc-v1", "grpc-v2"} <= set(rt["spec"]["protocolVersions"])
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == rt["metadata"]["name"]
    assert model["modelFormat"]["name"] in formats
    assert model.get("protocolVersion", "v1") in rt["spec"]["protocolVersions"]


def test_service_args_are_taken_after_the_runtime_args() -> None:
    isvc = inference_service()
    settings = build_settings(predictor_container(runtime(), isvc)["args"])
    (model,) = settings.models
    assert model.name == isvc["metadata"]["name"]
    assert str(model.base_path) == "/mnt/models"
    assert model.batch == parse_batch("auto")
    assert model.plugin_config == {"PERFORMANCE_HINT": "THROUGHPUT"}
    assert settings.file_system_poll_wait_seconds == 0


# flag → (an InferenceService's later value, how the settings show it)
OVERRIDES: dict[str, tuple[str, Callable[[ServerSettings], Any]]] = {
    "model_name": ("other", lambda s: s.models[0].name),
    "model_path": ("/srv/models", lambda s: str(s.models[0].base_path)),
    "port": ("9001", lambda s: str(s.port)),
    "rest_port": ("8081", lambda s: str(s.rest_port)),
    "file_system_poll_wait_seconds": ("2", lambda s: str(int(s.file_system_poll_wait_seconds))),
    "batch_size": ("8", lambda s: "8" if s.models[0].batch == parse_batch("8") else repr(s.models[0].batch)),
    "metrics_enable": ("false", lambda s: str(s.metrics_enable).lower()),
}


def test_every_runtime_flag_has_an_override_check() -> None:
    runtime_flags = [a.split("=", 1)[0].removeprefix("--") for a in runtime()["spec"]["containers"][0]["args"]]
    assert sorted(runtime_flags) == sorted(OVERRIDES)


@pytest.mark.parametrize("flag", sorted(OVERRIDES))
def test_last_value_of_a_flag_wins(flag: str) -> None:
    value, shown = OVERRIDES[flag]
    args = predictor_container(runtime(), inference_service())["args"]
    assert shown(build_settings(args)) != value  # the runtime's own value is in effect before
    assert shown(build_settings([*args, f"--{flag}={value}"])) == value
    assert shown(build_settings([*args, f"--{flag}", value])) == value


def test_kustomization_lists_every_manifest_and_sets_the_image() -> None:
    kust = load(KSERVE / "kustomization.yaml")
    assert sorted(kust["resources"]) == MANIFESTS
    (image,) = kust["images"]
    assert {c["image"].split(":")[0] for c in runtime()["spec"]["containers"]} == {image["name"]}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not installed")
def test_kustomize_build_is_valid_and_uses_the_set_image() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(KSERVE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert sorted(d["kind"] for d in docs) == ["ClusterServingRuntime", "InferenceService", "ServingRuntime"]
    image = load(KSERVE / "kustomization.yaml")["images"][0]
    for doc in docs:
        assert schema_errors(doc) == [], doc["kind"]
        for c in doc["spec"].get("containers", []):
            assert c["image"] == f"{image['newName']}:{image['newTag']}"


def test_containerfile_matches_the_runtime() -> None:
    cf, rt = containerfile(), runtime()
    container = rt["spec"]["containers"][0]
    (entrypoint,) = cf["ENTRYPOINT"]
    assert exec_form(entrypoint) == ["vinoserve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["vinoserve"] == "vinoserve.cli:main"
    exposed = {int(p) for line in cf["EXPOSE"] for p in line.split()}
    assert exposed == {p["containerPort"] for p in container["ports"]}
    (user,) = cf["USER"]
    assert int(user.split(":")[0]) == container["securityContext"]["runAsUser"]
    (healthcheck,) = cf["HEALTHCHECK"]
    url = urlsplit(healthcheck.split("urlopen('", 1)[1].split("'", 1)[0])
    assert (url.path, url.port) == (container["startupProbe"]["httpGet"]["path"], 8080)
    (cmd,) = cf["CMD"]
    settings = build_settings(exec_form(cmd))
    assert (settings.rest_port, settings.port) == (8080, 9000)


def test_container_build_context_is_the_package_source_only() -> None:
    ignore = (ROOT / ".containerignore").read_text()
    assert (ROOT / ".dockerignore").read_text() == ignore
    kept = [line[1:] for line in ignore.splitlines() if line.startswith("!")]
    assert sorted(kept) == ["README.md", "pyproject.toml", "src/"]
    copied = [line.split()[1] for line in (ROOT / "Containerfile").read_text().splitlines() if line.startswith("COPY ")]
    assert {c.rstrip("/") for c in copied if not c.startswith("--")} == {"pyproject.toml", "src"}
