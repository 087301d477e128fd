"""Batch-8 throughput per front end, as a ratio to raw in-process OpenVINO.

The demo CNN compiled for batch 8 (``--batch_size 8``, the THROUGHPUT hint, OpenVINO's optimal nireq),
``nireq + 1`` requests in flight, each front end in turn on one server; raw OpenVINO is an
``AsyncInferQueue`` with the same settings and nireq, measured in the same round. Ratios are per round
(server ÷ raw of that round), then the median of the rounds. Shared memory (KServe gRPC, the tensors
in system shared memory regions: ``shm_bench.py``'s client) runs on the same server in the same round.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import shm_bench
from common import OUT, PLUGIN, ServerProcess, median, progress
from frontends import FRONT_ENDS, SHARED_MEMORY, calls, throughput

from vinoserve.runtime.openvino import CPU_DEFAULTS


def raw_throughput(model_xml: Path, batch: np.ndarray, seconds: float, nireq: int) -> float:
    """Requests/s of in-process OpenVINO with the server's compile settings and nireq."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(model_xml))
    model.reshape({model.inputs[0].get_any_name(): list(batch.shape)})
    compiled = core.compile_model(model, "CPU", {**CPU_DEFAULTS, **PLUGIN})  # as the server compiles
    queue = ov.AsyncInferQueue(compiled, nireq)
    for _ in range(nireq):
        queue.start_async({0: batch})
    queue.wait_all()
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        queue.start_async({0: batch})
        done += 1
    queue.wait_all()
    return done / (time.perf_counter() - start)


def optimal_nireq(model_xml: Path, shape: tuple[int, ...]) -> int:
    """What the server picks for nireq 0 with the same settings."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(model_xml))
    model.reshape({model.inputs[0].get_any_name(): list(shape)})
    n = int(core.compile_model(model, "CPU", PLUGIN).get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    return max(n, 2)


def run(
    model_dir: Path,
    xml: Path,
    batch: np.ndarray,
    nireq: int,
    rounds: int,
    seconds: float,
    front_ends: tuple[str, ...] = FRONT_ENDS,
) -> dict[str, Any]:
    """Measure, print the table, draw the chart; req/s and ratios by front end."""
    reqs = calls("resnet", "image", batch)
    names = (*front_ends, SHARED_MEMORY)
    srv_rps: dict[str, list[float]] = {fe: [] for fe in names}
    ratios: dict[str, list[float]] = {fe: [] for fe in names}
    raw: list[float] = []
    for r in range(rounds):
        raw.append(raw_throughput(xml, batch, seconds, nireq))
        srv = ServerProcess(model_dir, ["--batch_size", str(len(batch)), "--nireq", str(nireq)], rest=True)
        try:
            for fe in front_ends:
                rps = asyncio.run(throughput(reqs[fe], srv.port, srv.rest_port, seconds, nireq + 1))
                srv_rps[fe].append(rps)
                ratios[fe].append(rps / raw[-1])
            rps = asyncio.run(shm_bench._shm_throughput(srv.port, batch, seconds, nireq + 1))
            srv_rps[SHARED_MEMORY].append(rps)
            ratios[SHARED_MEMORY].append(rps / raw[-1])
        finally:
            srv.stop()
        progress(
            f"  batch 8, round {r + 1}/{rounds}: raw {raw[-1]:.1f} req/s; "
            + ", ".join(f"{fe} {v[-1]:.2f}×" for fe, v in ratios.items())
        )
    res: dict[str, Any] = {
        "raw_rps": median(raw),
        "nireq": nireq,
        "rounds": rounds,
        "seconds": seconds,
        "plugin_config": PLUGIN,
        "front_ends": {fe: {"rps": median(srv_rps[fe]), "over_raw": median(ratios[fe])} for fe in names},
    }
    print(
        f"\nBatch-8 throughput (demo CNN, nireq {nireq}, {nireq + 1} in flight), medians of {rounds} rounds "
        f"of {seconds:g} s; raw OpenVINO {res['raw_rps']:.1f} req/s:"
    )
    for fe, m in res["front_ends"].items():
        print(f"  {fe:<12} {m['rps']:8.1f} req/s   {m['over_raw']:.2f}× raw")
    print(
        f"  targets: shared memory ≥ 0.90× raw ({res['front_ends'][SHARED_MEMORY]['over_raw']:.2f}); "
        "over sockets, no lower than before"
    )
    res["chart"] = str(_chart(res, OUT / "batch8.png"))
    return res


def _chart(res: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["front_ends"])
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(names, [m["over_raw"] for m in res["front_ends"].values()])
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel("throughput ÷ raw OpenVINO")
    ax.set_title(f"Batch 8 throughput per front end (raw OpenVINO: {res['raw_rps']:.1f} req/s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
