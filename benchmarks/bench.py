"""`make bench`: the one place to see vinoserve's speed, every section side by side in one run.

Sections (one module each; ``--only`` runs some of them):

- ``small`` (``small_requests.py``): one client, 10-float requests through each front end (TFS gRPC,
  KServe gRPC, REST binary, REST JSON, shared memory): p50/p99 as ratios to a bare Python gRPC echo
  server.
- ``batch8`` (``batch8.py``): batch-8 throughput of the demo CNN through each front end and with
  system shared memory (``shm_bench.py``'s client), as a ratio to raw in-process OpenVINO
  (AsyncInferQueue) with the same settings and nireq.
- ``shapes`` (``shapes.py``): one client alternating batch 1 and 8 under ``--batch_size auto``, with
  ``--shape_variants 1`` and under ``--batch_size -1``.
- ``ray`` (``ray_bench.py``): Ray Serve's proxy hop against vinoserve alone (when Ray is installed).
- ``batching`` (``batching.py``): 1 to 64 concurrent batch-1 clients with and without request batching.

Servers alternate within each round (the machine is shared and noisy); medians and ratios are
reported. Progress goes to stderr, the tables to stdout, everything to ``bench-out/results.json``
and a PNG chart per section to ``bench-out/``. The CNN is the demo's (PP-LCNet, 224×224), prepared
by ``examples/prepare_demo.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import batch8
import batching
import numpy as np
import shapes
import small_requests
from common import OPTS, OUT, PLUGIN, ROOT, ServerProcess, free_port, progress, request
from frontends import SHARED_MEMORY, TFS_GRPC, Call, throughput

SECTIONS = ("small", "batch8", "shapes", "ray", "batching")
optimal_nireq, raw_throughput = batch8.optimal_nireq, batch8.raw_throughput
# what ray_bench.py and shm_bench.py take from here
__all__ = ["OPTS", "PLUGIN", "ROOT", "ServerProcess", "free_port", "optimal_nireq", "raw_throughput", "request"]


async def _throughput(port: int, body: bytes, seconds: float, inflight: int) -> float:
    """Requests/s of ``inflight`` closed-loop TFS gRPC clients sending ``body``."""
    return await throughput(Call(TFS_GRPC, body), port, 0, seconds, inflight)


def ray_overhead(model_dir: Path, nireq: int, rounds: int, seconds: float, repeat: int) -> dict[str, float]:
    """``ray_bench.py``'s medians, in a loopback-only namespace where permitted; {} without Ray."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return {}
    out = ROOT / "bench-out" / "ray.json"
    out.parent.mkdir(exist_ok=True)
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "ray_bench.py"),
        str(out),
        str(model_dir),
        "--nireq",
        str(nireq),
        "--rounds",
        str(rounds),
        "--seconds",
        str(seconds),
        "--repeat",
        str(repeat),
    ]
    ns = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]
    if subprocess.run([*ns, "true"], capture_output=True).returncode == 0:
        cmd = ns + cmd
    subprocess.run(cmd, check=True, timeout=1800)
    return dict(json.loads(out.read_text()))


def _batching(
    label: str,
    model_dir: Path,
    model: str,
    input_name: str,
    batches: dict[int, np.ndarray],
    args: argparse.Namespace,
    nireq: int,
    raw8: float | None,
    srv8: float | None,
    clients: tuple[int, ...] = batching.CLIENTS,
) -> dict[str, Any]:
    """The batching section on one model: raw OpenVINO and the server's batch-8 clients (unless the
    batch8 section measured them already), then ``batching.run``. ``batches``: a batch of 1 and of 8."""
    xml = next((model_dir / "1").glob("*.xml"))
    reqs = {b: request(model, input_name, a) for b, a in batches.items()}
    seconds = args.batching_seconds

    def server(path: Path, extra: list[str]) -> ServerProcess:
        return ServerProcess(path, extra, model=model)

    raw8 = raw8 or batch8.raw_throughput(xml, batches[8], seconds, nireq)
    if srv8 is None:
        srv = server(model_dir, ["--batch_size", "8", "--nireq", str(nireq)])
        try:
            srv8 = asyncio.run(_throughput(srv.port, reqs[8], seconds, nireq + 1))
        finally:
            srv.stop()
    raw = {1: batch8.raw_throughput(xml, batches[1], seconds, nireq), 8: raw8 * 8}
    chart = "batching.png" if model == "resnet" else f"batching_{model}.png"
    return batching.run(
        model_dir,
        reqs[1],
        raw,
        OUT,
        label=label,
        chart=chart,
        clients=clients,
        rounds=args.batching_rounds,
        seconds=seconds,
        server=server,
        free_port=free_port,
        opts=OPTS,
        server_b8_ips=srv8 * 8,
    )


def main() -> int:
    """Run the sections asked for, print their tables, write results.json and the charts."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", default=str(ROOT / "demo"))
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of each section (medians reported)")
    ap.add_argument("--small-requests", type=int, default=1500, help="requests per front end per round")
    ap.add_argument("--rounds", type=int, default=60, help="requests per alternating-latency run")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run")
    ap.add_argument("--batching-rounds", type=int, default=2, help="rounds of the batching section")
    ap.add_argument("--batching-seconds", type=float, default=3.0, help="window of each batching measurement")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    started = time.perf_counter()
    OUT.mkdir(exist_ok=True)
    demo = Path(args.demo_dir)
    model_dir = demo / "models" / "resnet"
    if not (model_dir / "1").is_dir():
        progress("bench: preparing the demo model")
        subprocess.run([sys.executable, str(ROOT / "examples" / "prepare_demo.py"), "--out", str(demo)], check=True)
    xml = next((model_dir / "1").glob("*.xml"))
    imgs = np.load(demo / "imgs.npy").astype(np.float32)
    batches = {1: imgs[:1], 8: imgs[:8]}
    reqs = {b: request("resnet", "image", a) for b, a in batches.items()}
    nireq = batch8.optimal_nireq(xml, batches[8].shape)
    res: dict[str, Any] = {"repeat": args.repeat, "nireq": nireq, "plugin_config": PLUGIN}
    if "small" in only:
        progress("bench: small requests")
        res["small_requests"] = small_requests.run(args.repeat, args.small_requests)
    if "batch8" in only:
        progress("bench: batch-8 throughput per front end")
        b8 = res["batch8"] = batch8.run(model_dir, xml, batches[8], nireq, args.repeat, args.seconds)
        # the figures earlier runs reported under these names (TFS gRPC)
        res.update(
            server_rps_batch8=b8["front_ends"][TFS_GRPC]["rps"],
            raw_rps_batch8=b8["raw_rps"],
            server_over_raw=b8["front_ends"][TFS_GRPC]["over_raw"],
        )
        shm = b8["front_ends"][SHARED_MEMORY]
        res["shared_memory"] = {"shm_rps": shm["rps"], "raw_rps": b8["raw_rps"], "shm_over_raw": shm["over_raw"]}
    if "shapes" in only:
        progress("bench: alternating batch 1 / 8")
        res.update(shapes.run(model_dir, reqs, args.repeat, args.rounds))
    if "ray" in only:
        res["ray_serve"] = ray = ray_overhead(model_dir, nireq, args.rounds, args.seconds, args.repeat)
        if ray:
            print(
                f"\nRay Serve (gRPC proxy, 1 replica) vs vinoserve alone, TFS gRPC, --batch_size auto: "
                f"p50 batch 1 {ray['ray_p50_batch1_ms']:.2f} vs {ray['vinoserve_p50_batch1_ms']:.2f} ms "
                f"(+{ray['ray_p50_batch1_ms'] - ray['vinoserve_p50_batch1_ms']:.2f} ms); batch 8 throughput "
                f"{ray['ray_rps_batch8']:.1f} vs {ray['vinoserve_rps_batch8']:.1f} req/s"
            )
    if "batching" in only:
        progress("bench: request batching, demo CNN")
        print("\nRequest batching:", flush=True)
        res["batching"] = _batching(
            "demo CNN",
            model_dir,
            "resnet",
            "image",
            batches,
            args,
            nireq,
            res.get("raw_rps_batch8"),
            res.get("server_rps_batch8"),
        )
        progress("bench: request batching, weight-bound MLP")
        mlp_dir = batching.write_mlp(OUT / "models" / "mlp")
        rng = np.random.default_rng(0)
        rows = {b: rng.random((b, batching.MLP_WIDTH), dtype=np.float32) for b in (1, 8)}
        mlp_nireq = batch8.optimal_nireq(mlp_dir / "1" / "model.xml", rows[8].shape)
        res["batching_mlp"] = _batching(
            "weight-bound MLP", mlp_dir, "mlp", "x", rows, args, mlp_nireq, None, None, clients=(1, 16, 64)
        )
    res["seconds_taken"] = time.perf_counter() - started
    (OUT / "results.json").write_text(json.dumps(res, indent=2))
    charts = sorted(str(p.relative_to(ROOT)) for p in OUT.glob("*.png"))
    print(f"\nResults: {OUT / 'results.json'}; charts: {', '.join(charts)}; {res['seconds_taken']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
