"""The example client (``vinoserve-grpc-client``) as a process, and a line-by-line check of its output.

Its tests serve :func:`..helpers.models.quadrant_model`, whose answers are known by construction: the
brightest 4x4 quadrant of an 8x8 image. Every line the client prints is checked against the SPEC §8
format, and the statistics block is recomputed from the per-iteration times it printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .models import write_quadrants
from .server import F32, RunningServer, Serve

NAMES = ["top_left", "top_right", "bottom_left", "bottom_right"]
LABELS = [1, 3, 0, 2, 2, 0, 3, 1, 0, 3]
CLIENT = [sys.executable, "-m", "vinoserve.client.grpc_serving_client"]

NUM = r"(\d+\.\d\d|inf)"
ITERATION = re.compile(rf"Iteration (\d+); Processing time: (\d+\.\d\d) ms; speed {NUM} fps")
RESULT = re.compile(r"\t (\d+) (\S+) (-?\d+) (|; Correct match\.|; Incorrect match\. Should be (\d+) (\S+))")
STATS = [
    re.compile(rf"{t}: (\d+\.\d\d) ms; {s}: {NUM} fps")
    for t, s in [
        ("average time", "average speed"),
        ("median time", "median speed"),
        ("max time", "min speed"),
        ("min time", "max speed"),
        ("time percentile 90", "speed percentile 90"),
        ("time percentile 50", "speed percentile 50"),
    ]
]


def quadrant_images(labels: list[int], seed: int = 0) -> np.ndarray:
    """NCHW float32 in 0..1: dim noise everywhere, one bright quadrant per image."""
    rng = np.random.default_rng(seed)
    imgs = rng.uniform(0.0, 0.3, (len(labels), 3, 8, 8)).astype(np.float32)
    for i, k in enumerate(labels):
        r, c = divmod(k, 2)
        imgs[i, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = rng.uniform(0.7, 1.0, (3, 4, 4))
    return imgs


def serve_quadrants(serve: Serve, base: Path, classes: int = 4, extra: Sequence[str] = ()) -> RunningServer:
    """Serve the quadrant model as ``quad`` with ``--batch_size auto`` (and ``extra`` flags)."""
    return serve(
        [
            "--model_name",
            "quad",
            "--model_path",
            str(write_quadrants(base / "quad", classes)),
            "--batch_size",
            "auto",
            "--plugin_config",
            F32,
            *extra,
        ]
    )


def run_client(port: int, data: Path, *extra: str, images: str = "imgs.npy") -> subprocess.CompletedProcess[str]:
    """The example client with the quadrant model's names; labels and names unless overridden."""
    args = [
        "--grpc_port",
        str(port),
        "--model_name",
        "quad",
        "--input_name",
        "image",
        "--output_name",
        "probabilities",
        "--transpose_input",
        "False",
        "--images_numpy_path",
        str(data / images),
        *extra,
    ]
    return subprocess.run([*CLIENT, *args], capture_output=True, text=True, timeout=120, check=False)


def check_output(
    text: str, batch: int, iterations: int, images: int, path: str, model: str = "quad"
) -> list[tuple[int, str, int, str]]:
    """Assert the SPEC §8 format line by line; return (index, name, class, mark) of every result line."""
    lines = text.split("\n")
    assert lines.pop() == "", "output must end with a newline"
    assert lines[:7] == [
        "Image data range: 0.0 : 255.0",
        "Start processing:",
        f"\tModel name: {model}",
        f"\tIterations: {iterations}",
        f"\tImages numpy path: {path}",
        f"\tNumpy file shape: ({images}, 3, 8, 8)",
        "",
    ]
    pos = 7
    results: list[tuple[int, str, int, str]] = []
    times: list[int] = []
    for it in range(1, iterations + 1):
        m = ITERATION.fullmatch(lines[pos])
        assert m and int(m[1]) == it, lines[pos]
        times.append(int(float(m[2])))
        assert lines[pos + 1] == "imagenet top results in a single batch:"
        for i in range(batch):
            r = RESULT.fullmatch(lines[pos + 2 + i])
            assert r and int(r[1]) == i, repr(lines[pos + 2 + i])
            results.append((i, r[2], int(r[3]), r[4]))
        pos += 2 + batch
    assert lines[pos : pos + 2] == ["", "processing time for all iterations"]
    _check_statistics(lines[pos + 2 :], times, batch)
    return results


def _check_statistics(lines: list[str], times: list[int], batch: int) -> None:
    """The statistics block against the whole milliseconds the iterations printed."""
    # A time printed as 2.00 may have been 1.998 (truncated to 1): allow 1 ms against the printed times.
    t = np.array(times)
    n = len(times)
    expected = [t.mean(), np.median(t), t.max(), t.min(), np.percentile(t, 90), np.percentile(t, 50)]
    printed = []
    for regex, line, value in zip(STATS, lines[:6], expected, strict=True):
        m = regex.fullmatch(line)
        assert m, line
        ms = float(m[1])
        printed.append(ms)
        assert abs(ms - value) <= 1.0, (line, times)
        # The speed comes from the unrounded time, within 0.005 of the printed one, and is itself rounded to
        # 0.005: at low speeds (a slow iteration) that rounding moves 1000 * batch / speed by more than 0.005 ms.
        if ms == 0:
            assert m[2] == "inf", line
        else:
            low_speed, high_speed = 1000 * batch / (ms + 0.005), 1000 * batch / (ms - 0.005)
            assert low_speed - 0.005 - 1e-9 <= float(m[2]) <= high_speed + 0.005 + 1e-9, line
    mean, median, high, low = printed[:4]
    assert high == int(high) and low == int(low) and low <= median <= high and low <= mean <= high
    assert abs(mean * n - round(mean * n)) < 0.005 * n, "the mean of whole milliseconds"
    assert printed[5] == median and low <= printed[4] <= high
    std = re.fullmatch(r"time standard deviation: (\d+\.\d\d)", lines[6])
    var = re.fullmatch(r"time variance: (\d+\.\d\d)", lines[7])
    assert std and var, lines[6:8]
    assert abs(float(std[1]) ** 2 - float(var[1])) <= 0.01 * float(std[1]) + 0.0001
    rest = lines[8:]
    assert all(re.fullmatch(r"Classification accuracy: \d+\.\d\d", line) for line in rest) and len(rest) <= 1


def accuracy(text: str) -> str:
    """The last line the client printed (the accuracy line when labels were given)."""
    return text.rstrip("\n").rsplit("\n", 1)[-1]
