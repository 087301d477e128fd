"""The committed gencode matches the .proto sources, and it lives in a private descriptor pool."""

from __future__ import annotations

import filecmp
import importlib.util
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_protos.py"
GENERATED = ROOT / "src" / "vinoserve" / "protocol" / "generated"


def _load_script() -> ModuleType:  # scripts/ is not a package
    spec = importlib.util.spec_from_file_location("gen_protos", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for pattern in ("*.py", "*.pyi") for p in root.rglob(pattern)}


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    gen = _load_script()
    try:
        found = metadata.version("grpcio-tools")
    except metadata.PackageNotFoundError:
        pin = gen.GRPCIO_TOOLS_PIN
        pytest.skip(f"grpcio-tools is not installed (pip install --no-deps grpcio-tools=={pin})")
    if found != gen.GRPCIO_TOOLS_PIN:
        pytest.skip(f"grpcio-tools {found} is not the pinned {gen.GRPCIO_TOOLS_PIN}; gencode would differ")
    out = tmp_path / "generated"
    gen.generate(out)
    assert _tree(out) == _tree(GENERATED), "generated file set differs: run `make protos`"
    stale = [f for f in sorted(_tree(out)) if not filecmp.cmp(out / f, GENERATED / f, shallow=False)]
    assert not stale, f"stale generated files {stale}: run `make protos`"


_COEXIST = """
import tritonclient.grpc  # registers inference.* in protobuf's default pool
from tritonclient.grpc import service_pb2
from google.protobuf import descriptor_pool
from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2 as kpb
from vinoserve.protocol.generated.tensorflow_serving.apis import predict_pb2
import ovmsclient  # its own copy of the TF Serving protos
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import predict_pb2 as ovms_predict

req = predict_pb2.PredictRequest()
req.model_spec.name = "m"
req.model_spec.version.value = 3
req.inputs["b"].tensor_content = b"1234"
theirs = ovms_predict.PredictRequest.FromString(req.SerializeToString())
assert theirs.model_spec.version.value == 3 and theirs.inputs["b"].tensor_content == b"1234"

infer = kpb.ModelInferRequest(model_name="m")
infer.raw_input_contents.append(b"abcd")
triton = service_pb2.ModelInferRequest.FromString(infer.SerializeToString())
assert triton.raw_input_contents[0] == b"abcd"
assert kpb.ModelInferRequest.FromString(triton.SerializeToString()) == infer

try:
    descriptor_pool.Default().FindMessageTypeByName("tensorflow.serving.PredictRequest")
    raise SystemExit("our messages leaked into the default pool")
except KeyError:
    pass
print("ok")
"""


def test_private_pool_coexists_with_stock_clients() -> None:
    pytest.importorskip("tritonclient.grpc")
    pytest.importorskip("ovmsclient")
    # A fresh interpreter: import order matters and other tests may have imported things already.
    env_path = str(ROOT / "src")
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r})\n{_COEXIST}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
