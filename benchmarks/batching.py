"""The batching section of ``make bench``: many batch-1 clients, with and without request batching.

1, 4, 16 and 64 concurrent clients, each sending one image at a time over TFS gRPC, against the same
model served three ways: no batching (the model's own batch 1), batching under ``--batch_size auto``
and batching under ``--batch_size -1``. Configurations alternate within each round (the machine is
shared and noisy) and medians of the rounds are reported: throughput (rows/s: images for the CNN), p50 and p99 latency,
the mean batch the server merged, and the compiles after load; throughput as ratios to raw OpenVINO
at batch 8 and to no batching. One client is also measured under auto and -1 without batching, so
what the batcher costs a lone client is told apart from what a dynamic shape costs. A plot of
throughput and p99 against clients goes to ``bench-out/``.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import requests

CLIENTS = (1, 4, 16, 64)
BATCHING = '{"max_batch_size": 8}'
CONFIGS = {
    "no batching": [],
    "batching, auto": ["--batch_size", "auto", "--dynamic_batching", BATCHING],
    "batching, -1": ["--batch_size", "-1", "--dynamic_batching", BATCHING],
}
# The same batch settings without batching, at one client only: what the batcher itself costs a lone
# client (a -1 model compiled for dynamic shapes runs a little slower than a static one regardless).
ALONE = {"auto, no batching": ["--batch_size", "auto"], "-1, no batching": ["--batch_size", "-1"]}
SHAPE_VARIANTS = 4  # the server's default --shape_variants
# The weight-bound model of the second table: where a batch of 8 costs little more than a batch of 1.
MLP_WIDTH, MLP_LAYERS = 2048, 4


async def load(
    port: int, body: bytes, clients: int, warm: float, seconds: float, opts: list[tuple[str, int]]
) -> tuple[float, list[float]]:
    """Images/s and per-request latencies (ms) of ``clients`` closed-loop batch-1 clients."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict"
        )
        lat: list[float] = []
        start = time.perf_counter()
        t0, end = start + warm, start + warm + seconds
        done = 0

        async def client() -> None:
            nonlocal done
            while True:
                t = time.perf_counter()
                if t >= end:
                    return
                await call(body, timeout=120)
                if t >= t0:
                    lat.append((time.perf_counter() - t) * 1000)
                    done += 1

        await asyncio.gather(*(client() for _ in range(clients)))
        return done / (time.perf_counter() - t0), lat


def scrape(rest_port: int) -> dict[str, float]:
    """Batch-size sum and count and compiles after load, from ``/metrics``."""
    text = requests.get(f"http://127.0.0.1:{rest_port}/metrics", timeout=30).text

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M))

    return {
        "sum": total("vinoserve_batch_size_sum"),
        "count": total("vinoserve_batch_size_count"),
        "compiles": total("vinoserve_reshapes_total"),
    }


def write_mlp(base: Path, width: int = MLP_WIDTH, layers: int = MLP_LAYERS) -> Path:
    """A weight-bound model as IR in ``base/1``: ``layers`` dense ReLU layers of ``width``×``width``
    (64 MB of FP32 weights by default), input ``x`` [-1, width]. At batch 1 an inference streams every
    weight from memory for one row; at batch 8 the same pass serves eight rows."""
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([-1, width], ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    h = x
    rng = np.random.default_rng(0)
    for _ in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        h = ops.relu(ops.matmul(h, ops.constant(w), False, False))
    h.output(0).get_tensor().set_names({"y"})
    (base / "1").mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([h.output(0)], [x], "mlp"), str(base / "1" / "model.xml"), compress_to_fp16=False)
    return base


def run(
    model_dir: Path,
    body: bytes,
    raw_ips: dict[int, float],
    out: Path,
    *,
    label: str = "demo CNN",
    chart: str = "batching.png",
    clients: tuple[int, ...] = CLIENTS,
    rounds: int,
    seconds: float,
    server: Callable[[Path, list[str]], Any],
    free_port: Callable[[], int],
    opts: list[tuple[str, int]],
    server_b8_ips: float | None = None,
) -> dict[str, Any]:
    """Measure every configuration and client count; print the table; write the plot. ``server``
    starts ``vinoserve`` (gRPC on ``.port``) with extra flags and has ``stop()``; ``raw_ips`` is raw
    OpenVINO's rows/s at batch 1 and 8, ``server_b8_ips`` what batch-8 clients get from the server."""
    raw_b8_ips = raw_ips[8]
    samples: dict[tuple[str, int], list[dict[str, float]]] = {(c, n): [] for c in CONFIGS for n in clients}
    samples.update({(c, 1): [] for c in ALONE})
    compiles: dict[str, list[float]] = {c: [] for c in [*CONFIGS, *ALONE]}
    for r in range(rounds):
        for name, extra in [*CONFIGS.items(), *ALONE.items()]:
            rest = free_port()
            srv = server(model_dir, [*extra, "--rest_port", str(rest), "--metrics_enable"])
            try:
                for n in clients if name in CONFIGS else (1,):
                    before = scrape(rest)
                    ips, lat = asyncio.run(load(srv.port, body, n, 1.0, seconds, opts))
                    after = scrape(rest)
                    merged = after["count"] - before["count"]
                    samples[(name, n)].append(
                        {
                            "ips": ips,
                            "p50": float(np.percentile(lat, 50)),
                            "p99": float(np.percentile(lat, 99)),
                            "batch": (after["sum"] - before["sum"]) / merged if merged else 1.0,
                        }
                    )
                    print(
                        f"  round {r + 1}: {name:<15} {n:>2} clients: {ips:7.1f} rows/s, "
                        f"p50 {samples[(name, n)][-1]['p50']:6.2f} ms",
                        flush=True,
                    )
                compiles[name].append(scrape(rest)["compiles"])
            finally:
                srv.stop()
    res: dict[str, Any] = {
        "raw_ips": raw_ips,
        "server_b8_ips": server_b8_ips,
        "rounds": rounds,
        "seconds": seconds,
        "rows": [],
    }
    med = {
        k: {m: statistics.median(s[m] for s in v) for m in ("ips", "p50", "p99", "batch")} for k, v in samples.items()
    }
    print(
        f"\n{label}: batch-1 clients, TFS gRPC, max_batch_size 8, medians of {rounds} rounds of {seconds:g} s; "
        f"raw OpenVINO: {raw_ips[1]:.1f} rows/s at batch 1, {raw_b8_ips:.1f} at batch 8 "
        f"({raw_b8_ips / raw_ips[1]:.2f}×)"
    )
    print(
        f"  {'configuration':<17} {'clients':>7} {'rows/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6} "
        f"{'compiles':>8} {'÷raw b8':>8} {'÷no batch':>9}"
    )
    for (name, n), m in med.items():
        base = med[("no batching", n)] if name in CONFIGS else med[("no batching", 1)]
        row = {
            "config": name,
            "clients": n,
            **m,
            "compiles": max(compiles[name]),
            "over_raw_b8": m["ips"] / raw_b8_ips,
            "over_no_batching": m["ips"] / base["ips"],
        }
        res["rows"].append(row)
        print(
            f"  {name:<17} {n:>7} {m['ips']:8.1f} {m['p50']:8.2f} {m['p99']:8.2f} {m['batch']:6.2f} "
            f"{row['compiles']:8.0f} {row['over_raw_b8']:8.2f} {row['over_no_batching']:9.2f}"
        )
    targets = {
        "16 clients, auto ÷ no batching (≥ 1.25)": med[("batching, auto", 16)]["ips"] / med[("no batching", 16)]["ips"],
        "16 clients, -1 ÷ no batching (≥ 1.25)": med[("batching, -1", 16)]["ips"] / med[("no batching", 16)]["ips"],
        "1 client p50, auto ÷ no batching (≤ 1.05)": med[("batching, auto", 1)]["p50"] / med[("no batching", 1)]["p50"],
        "1 client p50, -1 ÷ no batching (≤ 1.05)": med[("batching, -1", 1)]["p50"] / med[("no batching", 1)]["p50"],
        "1 client p50, auto ÷ auto without batching": med[("batching, auto", 1)]["p50"]
        / med[("auto, no batching", 1)]["p50"],
        "1 client p50, -1 ÷ -1 without batching": med[("batching, -1", 1)]["p50"] / med[("-1, no batching", 1)]["p50"],
        f"compiles under auto, whole run (≤ {SHAPE_VARIANTS})": max(compiles["batching, auto"]),
    }
    if server_b8_ips:
        targets["16 clients, best batching ÷ batch-8 clients of the server (≥ 0.85)"] = (
            max(med[("batching, auto", 16)]["ips"], med[("batching, -1", 16)]["ips"]) / server_b8_ips
        )
    res["targets"] = targets
    print("Targets:")
    for k, v in targets.items():
        print(f"  {k}: {v:.2f}")
    plot(med, raw_b8_ips, out / chart, label, clients)
    print(f"  plot: {out / chart}")
    return res


def plot(
    med: dict[tuple[str, int], dict[str, float]], raw_b8_ips: float, path: Path, label: str, clients: tuple[int, ...]
) -> None:
    """Throughput and p99 against clients, one line per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (tp, p99) = plt.subplots(1, 2, figsize=(11, 4))
    for name in CONFIGS:
        tp.plot(clients, [med[(name, n)]["ips"] for n in clients], marker="o", label=name)
        p99.plot(clients, [med[(name, n)]["p99"] for n in clients], marker="o", label=name)
    tp.axhline(raw_b8_ips, color="grey", linestyle="--", label="raw OpenVINO, batch 8")
    for ax, title, unit in ((tp, "Throughput", "rows/s"), (p99, "p99 latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(n) for n in clients])
        ax.set_xlabel("concurrent batch-1 clients")
        ax.set_ylabel(unit)
        ax.set_title(f"{title}, {label}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
