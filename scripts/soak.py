"""`make soak`: does the server's memory stay flat under churn? Goal: RSS growth under 5% per phase.

A real server (subprocess, config-file mode, metrics on) serves a small affine model with
``batch_size auto`` and ``shape_variants 1``. After a warm-up of every kind of work, three phases:

1. reshapes: requests alternating batch 1 and 2, so every request compiles a new variant;
2. config edits: config.json alternately adds and removes a second model, applied with
   ``POST /v1/config/reload``;
3. unknown names: requests for models that do not exist (1 KB names) over TFS gRPC and REST.

The server's RSS (``VmRSS`` of /proc/<pid>/status) is printed after the warm-up and at the end of
each phase, with each phase's growth; the RSS over time goes to ``bench-out/soak-rss.png``.
Exit status 1 when a phase misses the goal.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import requests

from vinoserve.protocol.generated.tensorflow.core.framework import types_pb2
from vinoserve.protocol.generated.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
GOAL = 5.0  # percent per phase
PLUGIN = {"INFERENCE_PRECISION_HINT": "f32"}


def write_model(base: Path) -> Path:
    """y = 2x + 1, input ``b`` [1,10], as IR in ``base/1``."""
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([1, 10], ov.Type.f32, name="b")
    x.output(0).get_tensor().set_names({"b"})
    y = ops.add(ops.multiply(x, ops.constant(np.float32(2))), ops.constant(np.float32(1)))
    y.output(0).get_tensor().set_names({"y"})
    (base / "1").mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([y.output(0)], [x], "affine"), str(base / "1" / "model.xml"), compress_to_fp16=False)
    return base


def free_port() -> int:
    """A port the OS says is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Soak:
    """The server process, its clients, and RSS samples taken every 0.2 s."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.main = {
            "name": "m",
            "base_path": str(write_model(work / "m")),
            "batch_size": "auto",
            "shape_variants": 1,
            "plugin_config": PLUGIN,
        }
        self.extra = {**self.main, "name": "extra", "base_path": str(write_model(work / "extra"))}
        self.config = work / "config.json"
        self.write_config(False)
        self.port, self.rest_port = free_port(), free_port()
        args = [
            sys.executable,
            "-m",
            "vinoserve",
            "--config_path",
            str(self.config),
            "--port",
            str(self.port),
            "--rest_port",
            str(self.rest_port),
            "--metrics_enable",
            "--log_level",
            "WARNING",
            "--file_system_poll_wait_seconds",
            "0",
        ]
        self.proc = subprocess.Popen(args, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel).Predict
        self.samples: list[tuple[float, float]] = []
        self.marks: list[tuple[float, str, float]] = []
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._wait_ready()
        threading.Thread(target=self._sample, daemon=True).start()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if requests.get(self.url + "/v2/health/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not become ready")

    def _sample(self) -> None:
        while not self._stop.wait(0.2) and self.proc.poll() is None:
            self.samples.append((time.monotonic() - self.start, rss_mb(self.proc.pid)))

    def mark(self, label: str) -> float:
        """RSS now, remembered as the end of ``label``."""
        time.sleep(1.0)  # let in-flight work (compiles, retirements) settle first
        rss = rss_mb(self.proc.pid)
        self.marks.append((time.monotonic() - self.start, label, rss))
        return rss

    def write_config(self, with_extra: bool) -> None:
        """config.json with the main model, and the extra one when asked."""
        models = [self.main, self.extra] if with_extra else [self.main]
        self.config.write_text(json.dumps({"model_config_list": [{"config": m} for m in models]}))

    def infer(self, model: str, batch: int) -> None:
        """One TFS gRPC Predict; the server's answer is checked when the model exists."""
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model
        x = np.arange(batch * 10, dtype=np.float32).reshape(batch, 10)
        t = req.inputs["b"]
        t.dtype = types_pb2.DT_FLOAT
        for d in x.shape:
            t.tensor_shape.dim.add().size = d
        t.tensor_content = x.tobytes()
        try:
            resp = self.predict(req, timeout=60)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or model in ("m", "extra"):
                raise
            return
        y = np.frombuffer(resp.outputs["y"].tensor_content, np.float32)
        assert np.allclose(y, x.ravel() * 2 + 1), "wrong answer"

    def reshapes(self, n: int) -> None:
        """``n`` requests alternating batch 1 and 2: with one variant kept, each one compiles."""
        for i in range(n):
            self.infer("m", 1 + i % 2)

    def config_edits(self, n: int) -> None:
        """``n`` config.json edits, alternately adding and removing the extra model."""
        for i in range(n):
            self.write_config(i % 2 == 0)
            r = requests.post(self.url + "/v1/config/reload", timeout=120)
            assert r.status_code == 201, r.text
            if i % 2 == 0:
                self.infer("extra", 1)

    def unknown_names(self, n: int) -> None:
        """``n`` requests for models that do not exist, half over gRPC, half over REST."""
        for i in range(n):
            name = f"nope-{i}-" + "x" * 1024
            if i % 2:
                self.infer(name, 1)
            else:
                r = requests.post(f"{self.url}/v1/models/{name}:predict", data='{"instances": [[0]]}', timeout=30)
                assert r.status_code == 404, r.text

    def metrics_lines(self) -> int:
        """Lines of ``GET /metrics``."""
        return len(requests.get(self.url + "/metrics", timeout=30).text.splitlines())

    def stop(self) -> None:
        """SIGTERM the server's group and wait."""
        self._stop.set()
        self.channel.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def plot(self, out: Path) -> None:
        """RSS over time with the phase ends marked, as a small PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
        ax.plot([t for t, _ in self.samples], [r for _, r in self.samples], lw=1)
        for t, label, _ in self.marks:
            ax.axvline(t, color="grey", ls="--", lw=0.8)
            ax.annotate(label, (t, ax.get_ylim()[1]), rotation=90, va="top", ha="right", fontsize=7)
        ax.set_xlabel("seconds")
        ax.set_ylabel("server RSS (MB)")
        ax.set_title("vinoserve soak: RSS over time")
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
        plt.close(fig)


def main() -> int:
    """Warm up, run the three phases, print RSS and growth per phase, plot."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reshapes", type=int, default=1000)
    ap.add_argument("--edits", type=int, default=200)
    ap.add_argument("--unknown", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "soak-rss.png")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vinoserve-soak-") as tmp:
        soak = Soak(Path(tmp))
        missed: list[str] = []
        try:
            soak.reshapes(100)
            soak.config_edits(20)
            soak.unknown_names(1000)
            before = soak.mark("warm-up")
            print(f"after warm-up: RSS {before:.1f} MB, /metrics {soak.metrics_lines()} lines", flush=True)
            phases: list[tuple[str, Callable[[int], None], int]] = [
                ("reshapes", soak.reshapes, args.reshapes),
                ("config edits", soak.config_edits, args.edits),
                ("unknown names", soak.unknown_names, args.unknown),
            ]
            for label, run, n in phases:
                t0 = time.monotonic()
                run(n)
                after = soak.mark(label)
                growth = (after - before) / before * 100
                verdict = "ok" if growth < GOAL else "MISSED"
                print(
                    f"{n} {label} in {time.monotonic() - t0:.0f} s: RSS {before:.1f} -> {after:.1f} MB "
                    f"({growth:+.1f}%, goal < {GOAL:.0f}%: {verdict}), /metrics {soak.metrics_lines()} lines",
                    flush=True,
                )
                if growth >= GOAL:
                    missed.append(label)
                before = after
        finally:
            soak.stop()
        soak.plot(args.out)
    print(f"RSS plot: {args.out}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
