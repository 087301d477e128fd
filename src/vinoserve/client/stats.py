"""The example client's numbers: input rescaling and the latency/throughput summary (SPEC §8).

Both follow OVMS's example client exactly, so results read the same side by side: the summary is
computed with numpy over per-request times already truncated to whole milliseconds, the standard
deviation and variance are the population ones (numpy's default), and each speed is the batch
size over the corresponding time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

import numpy as np


def rescale_to_255(images: np.ndarray) -> np.ndarray:
    """``(x - min) / (max - min) * 255`` over the whole array, as float32.

    A constant array (no range to stretch) becomes all zeros instead of NaN.
    """
    data = np.asarray(images, dtype=np.float32)
    if data.size == 0:
        return data.copy()
    shifted: np.ndarray = data - data.min()
    span = shifted.max()
    scaled: np.ndarray = shifted / span * np.float32(255) if span > 0 else shifted
    return scaled


def _speed(batch: int, ms: float) -> float:
    # A request under one millisecond truncates to 0 ms: its speed is reported as inf, not an error.
    with np.errstate(divide="ignore"):
        return float(np.float64(1000 * batch) / np.float64(ms))


def print_statistics(times_ms: Sequence[int], batch: int, out: TextIO) -> None:
    """Print the summary block over per-request times in whole milliseconds."""
    t = np.asarray(times_ms, dtype=np.int64)
    print("\nprocessing time for all iterations", file=out)
    if t.size == 0:
        return
    rows = [
        ("average time", "average speed", float(np.mean(t))),
        ("median time", "median speed", float(np.median(t))),
        ("max time", "min speed", float(np.max(t))),
        ("min time", "max speed", float(np.min(t))),
        ("time percentile 90", "speed percentile 90", float(np.percentile(t, 90))),
        ("time percentile 50", "speed percentile 50", float(np.percentile(t, 50))),
    ]
    for time_label, speed_label, ms in rows:
        print(f"{time_label}: {ms:.2f} ms; {speed_label}: {_speed(batch, ms):.2f} fps", file=out)
    print(f"time standard deviation: {float(np.std(t)):.2f}", file=out)
    print(f"time variance: {float(np.var(t)):.2f}", file=out)
