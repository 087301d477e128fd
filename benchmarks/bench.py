"""`make bench`: dynamic batch size and server overhead, measured side by side in one run.

1. p50 latency of one client alternating batch 1 and batch 8 under ``--batch_size auto`` with the
   default shape-variant cache, with ``--shape_variants 1`` (OVMS's one-compiled-model behaviour),
   and with ``--batch_size -1`` (one dynamic compile).
2. Throughput at batch 8: the server (TFS gRPC, several requests in flight) as a ratio of raw
   in-process OpenVINO (AsyncInferQueue) compiled with the same settings and the same nireq.
3. Ray Serve's proxy hop (``ray_bench.py``): p50 at batch 1 and batch-8 throughput over TFS gRPC
   through Ray Serve with one replica, against vinoserve alone with the same flags.
4. Request batching: 1 to 64 concurrent batch-1 clients with and without batching (``batching.py``).

The model is the demo's real CNN (PP-LCNet, 224×224), prepared by ``examples/prepare_demo.py``.
Results go to stdout and ``bench-out/results.json``. Medians and ratios, not single times: the
machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import batching
import grpc
import numpy as np
import shm_bench

from vinoserve.protocol.generated.tensorflow.core.framework import types_pb2
from vinoserve.protocol.generated.tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
)

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = {"PERFORMANCE_HINT": "THROUGHPUT"}
MAX_MSG = 64 * 1024 * 1024
OPTS = [("grpc.max_send_message_length", MAX_MSG), ("grpc.max_receive_message_length", MAX_MSG)]


def free_port() -> int:
    """A port the OS says is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(model: str, input_name: str, batch: np.ndarray) -> bytes:
    """A serialized PredictRequest (serialized once, sent many times: the client costs little)."""
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    t = req.inputs[input_name]
    t.dtype = types_pb2.DT_FLOAT
    for d in batch.shape:
        t.tensor_shape.dim.add().size = d
    t.tensor_content = np.ascontiguousarray(batch, dtype=np.float32).tobytes()
    return req.SerializeToString()


class ServerProcess:
    """``vinoserve`` in its own process group, on a free port, until stopped."""

    def __init__(self, model_path: Path, extra: list[str]) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "vinoserve", "--model_name", "resnet", "--model_path", str(model_path),
                "--port", str(self.port), "--plugin_config", json.dumps(PLUGIN), "--log_level", "WARNING",
                *extra]
        self.proc = subprocess.Popen(args, start_new_session=True)
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        deadline = time.monotonic() + 120
        while True:
            try:
                req = get_model_status_pb2.GetModelStatusRequest()
                req.model_spec.name = "resnet"
                st = stub.GetModelStatus(req, timeout=2)
                if any(v.state == 30 for v in st.model_version_status):
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)
        channel.close()

    def stop(self) -> None:
        """SIGTERM the group and wait."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def alternating_p50(srv: ServerProcess, reqs: dict[int, bytes], rounds: int) -> float:
    """p50 latency (ms) of one client sending batch 1, 8, 1, 8, ... one at a time."""
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.port}", options=OPTS)
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict")
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


async def _throughput(port: int, body: bytes, seconds: float, inflight: int) -> float:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=OPTS) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict")
        for _ in range(inflight):
            await call(body)
        done = 0
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                await call(body)
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        return done / (time.perf_counter() - start)


def raw_throughput(model_xml: Path, batch: np.ndarray, seconds: float, nireq: int) -> float:
    """Requests/s of in-process OpenVINO with the same compile settings and nireq."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(model_xml))
    model.reshape({model.inputs[0].get_any_name(): list(batch.shape)})
    compiled = core.compile_model(model, "CPU", PLUGIN)
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


def ray_overhead(model_dir: Path, nireq: int, rounds: int, seconds: float, repeat: int) -> dict[str, float]:
    """``ray_bench.py``'s medians, in a loopback-only namespace where permitted; {} without Ray."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return {}
    out = ROOT / "bench-out" / "ray.json"
    out.parent.mkdir(exist_ok=True)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "ray_bench.py"), str(out), str(model_dir),
           "--nireq", str(nireq), "--rounds", str(rounds), "--seconds", str(seconds), "--repeat", str(repeat)]
    ns = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]
    if subprocess.run([*ns, "true"], capture_output=True).returncode == 0:
        cmd = ns + cmd
    subprocess.run(cmd, check=True, timeout=1800)
    return dict(json.loads(out.read_text()))


def main() -> int:
    """Run every measurement and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", default=str(ROOT / "demo"))
    ap.add_argument("--rounds", type=int, default=60, help="requests per alternating-latency run")
    ap.add_argument("--seconds", type=float, default=8.0, help="duration of each throughput run")
    ap.add_argument("--repeat", type=int, default=3, help="side-by-side repetitions (medians reported)")
    ap.add_argument("--batching-rounds", type=int, default=2, help="rounds of the batching section")
    ap.add_argument("--batching-seconds", type=float, default=3.0, help="window of each batching measurement")
    ap.add_argument("--only", choices=("all", "batching"), default="all", help="run every section, or one")
    args = ap.parse_args()
    demo = Path(args.demo_dir)
    model_dir = demo / "models" / "resnet"
    if not (model_dir / "1").is_dir():
        print("bench: preparing the demo model", flush=True)
        subprocess.run([sys.executable, str(ROOT / "examples" / "prepare_demo.py"), "--out", str(demo)],
                       check=True)
    xml = next((model_dir / "1").glob("*.xml"))
    imgs = np.load(demo / "imgs.npy").astype(np.float32)
    batches = {1: imgs[:1], 8: imgs[:8]}
    reqs = {b: request("resnet", "image", a) for b, a in batches.items()}
    nireq = optimal_nireq(xml, batches[8].shape)
    out = ROOT / "bench-out"
    out.mkdir(exist_ok=True)
    if args.only == "batching":
        raw = {b: raw_throughput(xml, batches[b], args.batching_seconds, nireq) * b for b in (1, 8)}
        srv = ServerProcess(model_dir, ["--batch_size", "8", "--nireq", str(nireq)])
        try:
            b8 = asyncio.run(_throughput(srv.port, reqs[8], args.batching_seconds, nireq + 1)) * 8
        finally:
            srv.stop()
        res_b = batching.run(model_dir, reqs[1], raw, out, rounds=args.batching_rounds,
                             seconds=args.batching_seconds, server=ServerProcess, free_port=free_port, opts=OPTS,
                             server_b8_ips=b8)
        (out / "batching.json").write_text(json.dumps(res_b, indent=2))
        return 0
    configs = {"auto (cache of 4)": ["--batch_size", "auto"],
               "auto --shape_variants 1": ["--batch_size", "auto", "--shape_variants", "1"],
               "--batch_size -1": ["--batch_size", "-1"]}
    lat: dict[str, list[float]] = {k: [] for k in configs}
    srv_tp: list[float] = []
    raw_tp: list[float] = []
    for r in range(args.repeat):
        for name, extra in configs.items():
            srv = ServerProcess(model_dir, extra)
            try:
                lat[name].append(alternating_p50(srv, reqs, args.rounds))
            finally:
                srv.stop()
            print(f"  run {r + 1}: {name}: p50 {lat[name][-1]:.2f} ms", flush=True)
        srv = ServerProcess(model_dir, ["--batch_size", "8", "--nireq", str(nireq)])
        try:
            srv_tp.append(asyncio.run(_throughput(srv.port, reqs[8], args.seconds, nireq + 1)))
        finally:
            srv.stop()
        raw_tp.append(raw_throughput(xml, batches[8], args.seconds, nireq))
        print(f"  run {r + 1}: batch 8 throughput: server {srv_tp[-1]:.1f} req/s, raw {raw_tp[-1]:.1f} req/s",
              flush=True)
    ray = ray_overhead(model_dir, nireq, args.rounds, args.seconds, args.repeat)
    p50 = {k: statistics.median(v) for k, v in lat.items()}
    ratios = [s / r for s, r in zip(srv_tp, raw_tp, strict=True)]
    res = {
        "alternating_p50_ms": p50,
        "auto_over_dynamic": p50["auto (cache of 4)"] / p50["--batch_size -1"],
        "k1_over_dynamic": p50["auto --shape_variants 1"] / p50["--batch_size -1"],
        "server_rps_batch8": statistics.median(srv_tp), "raw_rps_batch8": statistics.median(raw_tp),
        "server_over_raw": statistics.median(ratios), "nireq": nireq, "repeat": args.repeat,
        "plugin_config": PLUGIN, "ray_serve": ray,
    }
    print("\nAlternating batch 1 / 8, one client, p50 latency (median of runs):")
    for k, v in p50.items():
        print(f"  {k:<26} {v:8.2f} ms")
    print(f"  auto ÷ -1: {res['auto_over_dynamic']:.2f}×   (target ≤ 1.10)")
    print(f"  shape_variants 1 ÷ -1: {res['k1_over_dynamic']:.2f}×")
    print(f"\nBatch 8 throughput, nireq {nireq}, {PLUGIN}:")
    print(f"  server (TFS gRPC) {res['server_rps_batch8']:.1f} req/s; "
          f"raw OpenVINO {res['raw_rps_batch8']:.1f} req/s")
    print(f"  server ÷ raw: {res['server_over_raw']:.2f}   (target ≥ 0.90)")
    if ray:
        print(f"\nRay Serve (gRPC proxy, 1 replica) vs vinoserve alone, TFS gRPC, --batch_size auto: "
              f"p50 batch 1 {ray['ray_p50_batch1_ms']:.2f} vs {ray['vinoserve_p50_batch1_ms']:.2f} ms "
              f"(+{ray['ray_p50_batch1_ms'] - ray['vinoserve_p50_batch1_ms']:.2f} ms); batch 8 throughput "
              f"{ray['ray_rps_batch8']:.1f} vs {ray['vinoserve_rps_batch8']:.1f} req/s")
    print("\nRequest batching:", flush=True)
    raw = {1: raw_throughput(xml, batches[1], args.batching_seconds, nireq), 8: statistics.median(raw_tp) * 8}
    res["batching"] = batching.run(model_dir, reqs[1], raw, out,
                                   rounds=args.batching_rounds, seconds=args.batching_seconds,
                                   server=ServerProcess, free_port=free_port, opts=OPTS,
                                   server_b8_ips=res["server_rps_batch8"] * 8)
    res["shared_memory"] = shm_bench.run(lambda extra: ServerProcess(model_dir, extra), lambda: raw_throughput(
        xml, batches[8], args.seconds, nireq), batches[8], args.seconds, nireq, args.repeat)
    (out / "results.json").write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
