"""Batch-8 throughput with system shared memory (tritonclient gRPC) against raw in-process OpenVINO.

The client registers one input region (the batch, written once) and one output region per request
in flight, then sends requests that carry no tensor data: the server reads the batch from the
region and writes the result into the client's region. Runs alternate with raw OpenVINO
(AsyncInferQueue, same compile settings and nireq) so both see the same machine load; the ratio
reported is the median of the per-round ratios.

Called from ``bench.py``; on its own: ``python benchmarks/shm_bench.py`` (demo model prepared).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.grpc.aio as tgrpc_aio
import tritonclient.utils.shared_memory as shm

MODEL = "resnet"


class Server(Protocol):
    """A started server process with a gRPC port."""

    port: int

    def stop(self) -> None:
        """End the process."""


async def _shm_throughput(port: int, batch: np.ndarray, seconds: float, inflight: int) -> float:
    """Requests/s of ``inflight`` concurrent shared-memory requests for ``seconds``."""
    address = f"127.0.0.1:{port}"
    meta = tgrpc.InferenceServerClient(address).get_model_metadata(MODEL)
    in_name, out_name = meta.inputs[0].name, meta.outputs[0].name
    out_bytes = math.prod(batch.shape[0] if d < 0 else d for d in meta.outputs[0].shape) * 4
    tag = uuid.uuid4().hex[:8]
    handles = [shm.create_shared_memory_region(f"in-{tag}", f"/vinoserve-bench-in-{tag}", batch.nbytes)]
    shm.set_shared_memory_region(handles[0], [batch])
    client = tgrpc_aio.InferenceServerClient(address)
    try:
        await client.register_system_shared_memory("in", f"/vinoserve-bench-in-{tag}", batch.nbytes)
        requests: list[tuple[list[Any], list[Any]]] = []
        for w in range(inflight):
            key = f"/vinoserve-bench-out-{tag}-{w}"
            handles.append(shm.create_shared_memory_region(f"out-{w}", key, out_bytes))
            await client.register_system_shared_memory(f"out-{w}", key, out_bytes)
            inp = tgrpc_aio.InferInput(in_name, list(batch.shape), "FP32")
            inp.set_shared_memory("in", batch.nbytes)
            out = tgrpc_aio.InferRequestedOutput(out_name)
            out.set_shared_memory(f"out-{w}", out_bytes)
            requests.append(([inp], [out]))
        for inputs, outputs in requests:  # warm-up
            await client.infer(MODEL, inputs, outputs=outputs)
        done = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds

        async def worker(inputs: list[Any], outputs: list[Any]) -> None:
            nonlocal done
            while loop.time() < end:
                await client.infer(MODEL, inputs, outputs=outputs, client_timeout=120)
                done += 1

        start = loop.time()
        await asyncio.gather(*(worker(i, o) for i, o in requests))
        rate = done / (loop.time() - start)
        await client.unregister_system_shared_memory()
        return rate
    finally:
        await client.close()
        for h in handles:
            shm.destroy_shared_memory_region(h)


def run(
    start_server: Callable[[list[str]], Server],
    raw: Callable[[], float],
    batch: np.ndarray,
    seconds: float,
    nireq: int,
    repeat: int,
) -> dict[str, Any]:
    """Alternate ``repeat`` rounds of the shared-memory server and raw OpenVINO; medians and ratio."""
    srv_tp: list[float] = []
    raw_tp: list[float] = []
    for r in range(repeat):
        srv = start_server(["--batch_size", str(batch.shape[0]), "--nireq", str(nireq)])
        try:
            srv_tp.append(asyncio.run(_shm_throughput(srv.port, batch, seconds, nireq + 1)))
        finally:
            srv.stop()
        raw_tp.append(raw())
        print(
            f"  run {r + 1}: batch {batch.shape[0]} shared memory {srv_tp[-1]:.1f} req/s, raw {raw_tp[-1]:.1f} req/s",
            file=sys.stderr,
            flush=True,
        )
    res = {
        "shm_rps": statistics.median(srv_tp),
        "raw_rps": statistics.median(raw_tp),
        "shm_over_raw": statistics.median(s / r for s, r in zip(srv_tp, raw_tp, strict=True)),
        "runs": {"shm": srv_tp, "raw": raw_tp},
    }
    print(f"\nBatch {batch.shape[0]} throughput with shared memory (tritonclient gRPC), nireq {nireq}:")
    print(f"  shared memory {res['shm_rps']:.1f} req/s; raw OpenVINO {res['raw_rps']:.1f} req/s")
    print(f"  shared memory ÷ raw: {res['shm_over_raw']:.2f}   (target ≥ 0.90)")
    return res


def main() -> int:
    """Only this section, on the prepared demo model."""
    import argparse
    from pathlib import Path

    from bench import ROOT, ServerProcess, optimal_nireq, raw_throughput

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", default=str(ROOT / "demo"))
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    model_dir = Path(args.demo_dir) / "models" / "resnet"
    xml = next((model_dir / "1").glob("*.xml"))
    batch = np.ascontiguousarray(np.load(Path(args.demo_dir) / "imgs.npy").astype(np.float32)[:8])
    nireq = optimal_nireq(xml, batch.shape)
    run(
        lambda extra: ServerProcess(model_dir, extra),
        lambda: raw_throughput(xml, batch, args.seconds, nireq),
        batch,
        args.seconds,
        nireq,
        args.repeat,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
