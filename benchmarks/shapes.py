"""Dynamic batch size: one client alternating batch 1 and batch 8, under each way of serving it.

``--batch_size auto`` with the default shape-variant cache, with ``--shape_variants 1`` (OVMS's one
compiled model, recompiled on every change), and ``--batch_size -1`` (one dynamic compile). The p50
of each, medians of the rounds; the ratio auto ÷ -1 is the figure to keep (≤ 1.10; 0.71 when this
section was written).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import grpc
from common import OPTS, OUT, ServerProcess, median, progress

CONFIGS = {
    "auto (cache of 4)": ["--batch_size", "auto"],
    "auto --shape_variants 1": ["--batch_size", "auto", "--shape_variants", "1"],
    "--batch_size -1": ["--batch_size", "-1"],
}
TARGET = 1.10


def alternating_p50(srv: ServerProcess, reqs: dict[int, bytes], rounds: int) -> float:
    """p50 latency (ms) of one client sending batch 1, 8, 1, 8, ... one at a time."""
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.port}", options=OPTS)
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict"
    )
    for b in (1, 8, 1, 8):  # warm-up: first compiles are not what this measures
        call(reqs[b], timeout=120)
    times = []
    for i in range(rounds):
        body = reqs[1 if i % 2 == 0 else 8]
        t = time.perf_counter()
        call(body, timeout=120)
        times.append((time.perf_counter() - t) * 1000)
    channel.close()
    return statistics.median(times)


def run(model_dir: Path, reqs: dict[int, bytes], repeat: int, rounds: int) -> dict[str, Any]:
    """Measure, print the table, draw the chart; p50 by configuration and the two ratios."""
    lat: dict[str, list[float]] = {k: [] for k in CONFIGS}
    for r in range(repeat):
        for name, extra in CONFIGS.items():
            srv = ServerProcess(model_dir, extra)
            try:
                lat[name].append(alternating_p50(srv, reqs, rounds))
            finally:
                srv.stop()
            progress(f"  shapes, round {r + 1}/{repeat}: {name}: p50 {lat[name][-1]:.2f} ms")
    p50 = {k: median(v) for k, v in lat.items()}
    res: dict[str, Any] = {
        "alternating_p50_ms": p50,
        "auto_over_dynamic": p50["auto (cache of 4)"] / p50["--batch_size -1"],
        "k1_over_dynamic": p50["auto --shape_variants 1"] / p50["--batch_size -1"],
    }
    print(f"\nAlternating batch 1 / 8, one client, p50 latency (medians of {repeat} rounds):")
    for k, v in p50.items():
        print(f"  {k:<26} {v:8.2f} ms")
    print(f"  auto ÷ -1: {res['auto_over_dynamic']:.2f}×   (target ≤ {TARGET:.2f})")
    print(f"  shape_variants 1 ÷ -1: {res['k1_over_dynamic']:.2f}×")
    res["chart"] = str(_chart(p50, OUT / "shapes.png"))
    return res


def _chart(p50: dict[str, float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(list(p50), list(p50.values()))
    ax.set_ylabel("p50 ms")
    ax.set_title("One client alternating batch 1 and 8 (demo CNN)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
