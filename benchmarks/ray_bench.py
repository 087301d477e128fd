"""Ray Serve's proxy hop: TF Serving gRPC through Ray Serve (one replica) vs vinoserve alone.

Run by ``bench.py`` (inside ``unshare --net --pid --fork --mount-proc`` where permitted, so Ray binds
loopback only and leaves no process behind): ``python benchmarks/ray_bench.py OUT.json MODEL_DIR ...``.
Both servers run the same flags and are measured in alternation; medians of the runs go to OUT.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from bench import OPTS, PLUGIN, ServerProcess, _throughput, free_port, request


def p50_ms(port: int, body: bytes, rounds: int) -> float:
    """Median latency of one client sending ``body`` one request at a time."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTS) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict"
        )
        for _ in range(5):
            call(body, timeout=120)
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            call(body, timeout=120)
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def start_ray(flags: list[str]) -> int:
    """A one-node Ray cluster with Serve and one vinoserve replica; the gRPC proxy's port."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    from vinoserve.ray import GRPC_SERVICER_FUNCTIONS, VinoserveDeployment

    port = free_port()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 2**20,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": "127.0.0.1", "port": free_port()},
        grpc_options=gRPCOptions(port=port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
    )
    # num_cpus 0: the replica gets the machine as the standalone server does
    app = VinoserveDeployment.options(num_replicas=1, ray_actor_options={"num_cpus": 0}).bind(flags)
    serve.run(app, name="vinoserve", route_prefix="/")
    return port


def main() -> int:
    """Measure both, alternating; write the medians."""
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("model_dir")
    ap.add_argument("--nireq", type=int, required=True)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if os.getpid() == 1:  # a fresh network namespace: loopback is down until brought up
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    imgs = np.load(Path(args.model_dir).parents[1] / "imgs.npy").astype(np.float32)
    b1, b8 = request("resnet", "image", imgs[:1]), request("resnet", "image", imgs[:8])
    flags = [
        "--batch_size",
        "auto",
        "--nireq",
        str(args.nireq),
        "--plugin_config",
        json.dumps(PLUGIN),
        "--log_level",
        "WARNING",
    ]
    standalone = ServerProcess(Path(args.model_dir), flags)
    try:
        ports = {
            "vinoserve": standalone.port,
            "ray": start_ray(["--model_name", "resnet", "--model_path", args.model_dir, *flags]),
        }
        p50: dict[str, list[float]] = {k: [] for k in ports}
        rps: dict[str, list[float]] = {k: [] for k in ports}
        for _ in range(args.repeat):
            for name, port in ports.items():
                p50[name].append(p50_ms(port, b1, args.rounds))
                rps[name].append(asyncio.run(_throughput(port, b8, args.seconds, args.nireq + 1)))
    finally:
        standalone.stop()
        if "ray" in sys.modules:
            from ray import serve

            serve.shutdown()  # type: ignore[no-untyped-call]
            sys.modules["ray"].shutdown()
    res = {f"{k}_p50_batch1_ms": statistics.median(v) for k, v in p50.items()}
    res.update({f"{k}_rps_batch8": statistics.median(v) for k, v in rps.items()})
    Path(args.out).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
