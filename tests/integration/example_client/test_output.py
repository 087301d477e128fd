"""The example client's output against a real server: SPEC §8 format, classes, names, marks, accuracy.

The served quadrant model has answers known by construction (the brightest 4x4 quadrant), so every
printed class can be checked; :func:`check_output` checks every line and recomputes the statistics.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from ...helpers.example_client import (
    CLIENT,
    LABELS,
    NAMES,
    accuracy,
    check_output,
    quadrant_images,
    run_client,
    serve_quadrants,
)
from ...helpers.server import RunningServer, Serve


@pytest.mark.parametrize("batch, iterations", [(1, 10), (8, 1)])
def test_batches_classify_every_image(quad: RunningServer, data: Path, batch: int, iterations: int) -> None:
    """Batch 1 and batch 8 through --batch_size auto: every line in format, 100 % correct, names shown."""
    res = run_client(
        quad.grpc_port,
        data,
        "--batchsize",
        str(batch),
        "--labels_numpy_path",
        str(data / "lbs.npy"),
        "--labels_names",
        str(data / "names.txt"),
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    results = check_output(res.stdout, batch, iterations, 10, str(data / "imgs.npy"))
    assert [c for _, _, c, _ in results] == LABELS[: batch * iterations]
    assert [n for _, n, _, _ in results] == [NAMES[k] for k in LABELS[: batch * iterations]]
    assert {mark for *_, mark in results} == {"; Correct match."}
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"


def test_incorrect_matches_name_the_expected_class(quad: RunningServer, data: Path) -> None:
    wrong = list(LABELS)
    wrong[2], wrong[5] = 3, 1
    np.save(data / "wrong.npy", np.array(wrong).reshape(-1, 1))  # the [n,1] layout is accepted too
    res = run_client(
        quad.grpc_port, data, "--labels_numpy_path", str(data / "wrong.npy"), "--labels_names", str(data / "names.txt")
    )
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, 1, 10, 10, str(data / "imgs.npy"))
    assert results[2] == (0, "top_left", 0, "; Incorrect match. Should be 3 bottom_right")
    assert results[5] == (0, "top_left", 0, "; Incorrect match. Should be 1 top_right")
    assert accuracy(res.stdout) == "Classification accuracy: 80.00"


def test_without_labels_or_names_prints_class_indices(quad: RunningServer, data: Path) -> None:
    res = run_client(quad.grpc_port, data, "--batchsize", "5")
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, 5, 2, 10, str(data / "imgs.npy"))
    assert [(n, c, mark) for _, n, c, mark in results] == [(str(k), k, "") for k in LABELS]
    assert "Classification accuracy" not in res.stdout


@pytest.mark.parametrize("batch, images, iterations", [(4, 8, 2), (9, 16, 1)])
def test_batch_not_below_image_count_doubles_the_data(
    quad: RunningServer, data: Path, batch: int, images: int, iterations: int
) -> None:
    """4 images: batch 4 uses them twice (8), batch 9 four times (16); labels follow."""
    np.save(data / "four.npy", quadrant_images(LABELS[:4]))
    np.save(data / "four_lbs.npy", np.array(LABELS[:4]))
    res = run_client(
        quad.grpc_port,
        data,
        "--batchsize",
        str(batch),
        "--labels_numpy_path",
        str(data / "four_lbs.npy"),
        images="four.npy",
    )
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, batch, iterations, images, str(data / "four.npy"))
    assert [c for _, _, c, _ in results] == (LABELS[:4] * 4)[: batch * iterations]
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"


def test_more_iterations_than_batches_go_round_again(quad: RunningServer, data: Path) -> None:
    res = run_client(
        quad.grpc_port, data, "--iterations", "13", "--batchsize", "3", "--labels_numpy_path", str(data / "lbs.npy")
    )
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, 3, 13, 10, str(data / "imgs.npy"))
    starts = [0, 3, 6] * 5  # three whole batches of 3 fit in 10 images
    assert [c for _, _, c, _ in results] == [LABELS[s + i] for s in starts[:13] for i in range(3)]
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"


def test_nhwc_images_are_transposed_by_default(quad: RunningServer, data: Path) -> None:
    np.save(data / "nhwc.npy", quadrant_images(LABELS).transpose(0, 2, 3, 1) * 7.0 - 3.0)
    args = [
        *CLIENT,
        "--grpc_port",
        str(quad.grpc_port),
        "--model_name",
        "quad",
        "--input_name",
        "image",
        "--output_name",
        "probabilities",
        "--images_numpy_path",
        str(data / "nhwc.npy"),
        "--labels_numpy_path",
        str(data / "lbs.npy"),
    ]
    res = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    check_output(res.stdout, 1, 10, 10, str(data / "nhwc.npy"))
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"


def test_background_class_shifts_indices(serve: Serve, tmp_path: Path, data: Path) -> None:
    """With 1001 outputs, index 0 is background: printed classes are argmax - 1."""
    server = serve_quadrants(serve, tmp_path / "m1001", classes=1001)
    res = run_client(
        server.grpc_port,
        data,
        "--batchsize",
        "8",
        "--labels_numpy_path",
        str(data / "lbs.npy"),
        "--labels_names",
        str(data / "names.txt"),
    )
    assert res.returncode == 0, res.stderr
    results = check_output(res.stdout, 8, 1, 10, str(data / "imgs.npy"))
    assert [c for _, _, c, _ in results] == LABELS[:8]
    assert accuracy(res.stdout) == "Classification accuracy: 100.00"
