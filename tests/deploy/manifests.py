"""Reading the deployment files the way KServe and a container engine read them."""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KSERVE = ROOT / "deploy" / "kserve"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
SCHEMA_OF = {
    "ServingRuntime": "servingruntime_v1alpha1.json",
    "ClusterServingRuntime": "clusterservingruntime_v1alpha1.json",
    "InferenceService": "inferenceservice_v1beta1.json",
}


def load(path: Path) -> dict[str, Any]:
    """The one YAML document of ``path``."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{path}: expected one document, got {len(docs)}"
    return dict(docs[0])


@cache
def schema(kind: str) -> dict[str, Any]:
    """The strict CRD schema of ``kind``."""
    return dict(json.loads((SCHEMAS / SCHEMA_OF[kind]).read_text()))


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Every violation of the CRD schema of the document's kind, as ``path: message``."""
    from jsonschema import Draft7Validator

    validator = Draft7Validator(schema(doc["kind"]))
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc))


def runtime() -> dict[str, Any]:
    """The namespaced ``ServingRuntime``."""
    return load(KSERVE / "servingruntime.yaml")


def inference_service() -> dict[str, Any]:
    """The example ``InferenceService``."""
    return load(KSERVE / "inferenceservice.yaml")


def predictor_container(rt: dict[str, Any], isvc: dict[str, Any]) -> dict[str, Any]:
    """The runtime's container as KServe makes it for ``isvc``: service args appended, placeholders
    filled in across the whole container (KServe renders every string of it as a Go template over the
    InferenceService's metadata, so ``{{.Name}}`` works in probe paths too)."""
    (container,) = [c for c in rt["spec"]["containers"] if c["name"] == "kserve-container"]
    rendered = json.loads(json.dumps(container).replace("{{.Name}}", isvc["metadata"]["name"]))
    assert "{{" not in json.dumps(rendered), "a placeholder other than {{.Name}} is left"
    rendered["args"] = [*rendered.get("args", []), *isvc["spec"]["predictor"]["model"].get("args", [])]
    return dict(rendered)


def port_number(container: dict[str, Any], port: int | str) -> int:
    """A probe's port, given as a number or as the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def containerfile() -> dict[str, list[str]]:
    """The Containerfile's instructions of the final stage, keyword → arguments (continuations joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Containerfile").read_text())
    final = text.split("\nFROM ")[-1]
    out: dict[str, list[str]] = {}
    for line in final.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, rest = line.partition(" ")
            out.setdefault(key.upper(), []).append(rest.strip())
    return out


def exec_form(text: str) -> list[str]:
    """An ENTRYPOINT/CMD argument: the JSON exec form, or a shell form split like a shell."""
    return json.loads(text) if text.startswith("[") else shlex.split(text)
