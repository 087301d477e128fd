"""Small requests: what the server adds to a request, against a bare Python gRPC echo server.

One client sends a 10-float request to a 10-float model one at a time, through each front end (and
KServe gRPC with the tensors in system shared memory, when the server offers it); the
same requests go to :mod:`echo_server` (TF Serving and KServe gRPC), which parses each one and
answers with its inputs: no numpy, no model; and to its minimal OpenVINO server, which runs the
model inline and nothing else (the floor for a Python gRPC server that runs a model). The servers
alternate within each round; p50 and p99 are medians of the rounds, and the server's CPU per request
is read from ``/proc``. The ratios of each front end are to the reference's p50 on the same message
family (TFS gRPC to its TFS answer, the KServe ones to its KServe answer).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from common import OUT, ServerProcess, free_port, median, percentile, progress, stop_group
from frontends import FRONT_ENDS, KSERVE_GRPC, REST_BINARY, SHARED_MEMORY, TFS_GRPC, SharedMemoryCall, calls, sequential

MODEL, INPUT = "tiny", "x"
F32 = {"INFERENCE_PRECISION_HINT": "f32"}
TARGET_GRPC_RATIO = 1.1  # p50 over the echo server's, TFS and KServe gRPC
TARGET_REST_BINARY_MS = 0.5


def write_model(base: Path) -> Path:
    """A 10-float add-one model (input ``x`` [1,10], output ``y``) as IR in ``base/1``; returns ``base``."""
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([1, 10], ov.Type.f32, name=INPUT)
    x.output(0).get_tensor().set_names({INPUT})
    y = ops.add(x, ops.constant(np.float32(1.0)))
    y.output(0).get_tensor().set_names({"y"})
    (base / "1").mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([y.output(0)], [x], "tiny"), str(base / "1" / "model.xml"), compress_to_fp16=False)
    return base


class EchoProcess:
    """:mod:`echo_server` in its own process group; with ``model_xml``, the minimal OpenVINO server."""

    def __init__(self, model_xml: Path | None = None) -> None:
        self.port = free_port()
        model = [str(model_xml)] if model_xml else []
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("echo_server.py")), str(self.port), *model],
            start_new_session=True,
        )
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)

    def stop(self) -> None:
        """SIGTERM and wait."""
        stop_group(self.proc)


def run(rounds: int, n: int, warm: int = 200) -> dict[str, Any]:
    """Measure, print the table, draw the chart; the results by front end."""
    model_dir = write_model(OUT / "models" / MODEL)
    x = np.arange(10, dtype=np.float32).reshape(1, 10)
    reqs = calls(MODEL, INPUT, x)
    front_ends = (*FRONT_ENDS, SHARED_MEMORY)
    p50: dict[str, list[float]] = {}
    p99: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for r in range(rounds):
        for ref, xml in (("echo", None), ("minimal", model_dir / "1" / "model.xml")):
            echo = EchoProcess(xml)
            try:
                for fe in (TFS_GRPC, KSERVE_GRPC):
                    times = sequential(reqs[fe], echo.port, 0, n, warm)
                    p50.setdefault(f"{ref} {fe}", []).append(percentile(times, 0.5) * 1e3)
                    p99.setdefault(f"{ref} {fe}", []).append(percentile(times, 0.99) * 1e3)
            finally:
                echo.stop()
        srv = ServerProcess(model_dir, [], model=MODEL, rest=True, plugin=F32)
        try:
            regions = SharedMemoryCall(srv.port, MODEL, INPUT, "y", x, x.nbytes)
            reqs[SHARED_MEMORY] = regions.call
            for fe in front_ends:
                before = srv.cpu_seconds()
                try:
                    times = sequential(reqs[fe], srv.port, srv.rest_port, n, warm)
                finally:
                    if fe == SHARED_MEMORY:
                        regions.close()
                cpu.setdefault(fe, []).append((srv.cpu_seconds() - before) / (n + warm) * 1e6)
                p50.setdefault(fe, []).append(percentile(times, 0.5) * 1e3)
                p99.setdefault(fe, []).append(percentile(times, 0.99) * 1e3)
        finally:
            srv.stop()
        progress(
            f"  small requests, round {r + 1}/{rounds}: "
            + ", ".join(f"{k} {v[-1]:.3f}" for k, v in p50.items())
            + " ms p50"
        )
        time.sleep(0.5)
    res: dict[str, Any] = {"n": n, "rounds": rounds, "echo": {}, "minimal": {}, "front_ends": {}}
    for ref in ("echo", "minimal"):
        for fe in (TFS_GRPC, KSERVE_GRPC):
            res[ref][fe] = {"p50_ms": median(p50[f"{ref} {fe}"]), "p99_ms": median(p99[f"{ref} {fe}"])}
    for fe in front_ends:
        echo_fe = TFS_GRPC if fe == TFS_GRPC else KSERVE_GRPC
        e = res["echo"][echo_fe]
        m = {"p50_ms": median(p50[fe]), "p99_ms": median(p99[fe]), "cpu_us_per_request": median(cpu[fe])}
        m["p50_over_echo"] = m["p50_ms"] / e["p50_ms"]
        m["p99_over_echo"] = m["p99_ms"] / e["p99_ms"]
        m["p50_over_minimal"] = m["p50_ms"] / res["minimal"][echo_fe]["p50_ms"]
        res["front_ends"][fe] = m
    _print(res)
    res["chart"] = str(_chart(res, OUT / "small_requests.png"))
    return res


def _print(res: dict[str, Any]) -> None:
    print(
        f"\nSmall requests (10 floats, batch 1), one client, medians of {res['rounds']} rounds of "
        f"{res['n']} requests; ratios to the bare gRPC echo server (no model) and to the minimal "
        "OpenVINO gRPC server (echo_server.py with the model run inline, nothing else):"
    )
    print(
        f"  {'front end':<15} {'p50 ms':>8} {'p99 ms':>8} {'p50 ÷ echo':>11} {'p99 ÷ echo':>11} "
        f"{'p50 ÷ minimal':>14} {'CPU µs/req':>11}"
    )
    for ref in ("echo", "minimal"):
        for fe, e in res[ref].items():
            print(f"  {ref + ' ' + fe.split()[0]:<15} {e['p50_ms']:8.3f} {e['p99_ms']:8.3f}")
    for fe, m in res["front_ends"].items():
        print(
            f"  {fe:<15} {m['p50_ms']:8.3f} {m['p99_ms']:8.3f} {m['p50_over_echo']:10.2f}× "
            f"{m['p99_over_echo']:10.2f}× {m['p50_over_minimal']:13.2f}× {m['cpu_us_per_request']:11.0f}"
        )
    f = res["front_ends"]
    print(
        f"  targets: p50 ÷ echo ≤ {TARGET_GRPC_RATIO} on TFS gRPC ({f[TFS_GRPC]['p50_over_echo']:.2f}) and "
        f"KServe gRPC ({f[KSERVE_GRPC]['p50_over_echo']:.2f}); REST binary p50 ≤ {TARGET_REST_BINARY_MS} ms "
        f"({f[REST_BINARY]['p50_ms']:.3f})"
    )


def _chart(res: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = [(f"{ref} {fe.split()[0]}", r) for ref in ("echo", "minimal") for fe, r in res[ref].items()]
    names = [n for n, _ in refs] + list(res["front_ends"])
    rows = [r for _, r in refs] + list(res["front_ends"].values())
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(x - 0.2, [r["p50_ms"] for r in rows], 0.4, label="p50")
    ax.bar(x + 0.2, [r["p99_ms"] for r in rows], 0.4, label="p99")
    ax.set_xticks(x, names, rotation=15)
    ax.set_ylabel("ms")
    ax.set_title("Small requests, one client: vinoserve per front end vs a bare gRPC echo server")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
