"""What every section of ``make bench`` shares: servers in their own process, requests, statistics, progress.

The sections are modules of this directory, run by ``bench.py``; each measures its servers side by
side in alternation (the machine is shared and noisy) and reports medians and ratios.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np

from vinoserve.protocol.generated.tensorflow.core.framework import types_pb2
from vinoserve.protocol.generated.tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-out"
PLUGIN = {"PERFORMANCE_HINT": "THROUGHPUT"}
MAX_MSG = 64 * 1024 * 1024
OPTS = [("grpc.max_send_message_length", MAX_MSG), ("grpc.max_receive_message_length", MAX_MSG)]
_AVAILABLE = 30  # ModelVersionStatus.State.AVAILABLE


def progress(text: str) -> None:
    """One line of progress on stderr (results go to stdout and ``bench-out/``)."""
    print(text, file=sys.stderr, flush=True)


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


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: Sequence[float]) -> float:
    """The median (NaN of nothing: a section that could not measure says so instead of failing)."""
    return statistics.median(values) if values else float("nan")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``proc``'s process group and wait; SIGKILL after 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class ServerProcess:
    """``vinoserve`` in its own process group, on free ports, until stopped.

    ``port`` is gRPC; ``rest_port`` is set when ``rest`` is asked for. Ready once ``model`` has an
    AVAILABLE version.
    """

    def __init__(
        self,
        model_path: Path,
        extra: list[str],
        *,
        model: str = "resnet",
        rest: bool = False,
        plugin: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.rest_port = free_port() if rest else 0
        args = [
            sys.executable,
            "-m",
            "vinoserve",
            "--model_name",
            model,
            "--model_path",
            str(model_path),
            "--port",
            str(self.port),
            "--plugin_config",
            json.dumps(PLUGIN if plugin is None else plugin),
            "--log_level",
            "WARNING",
            *(["--rest_port", str(self.rest_port)] if rest else []),
            *extra,
        ]
        self.proc = subprocess.Popen(args, start_new_session=True)
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        deadline = time.monotonic() + 120
        while True:
            try:
                req = get_model_status_pb2.GetModelStatusRequest()
                req.model_spec.name = model
                st = stub.GetModelStatus(req, timeout=2)
                if any(v.state == _AVAILABLE for v in st.model_version_status):
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)
        channel.close()

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM the group and wait."""
        stop_group(self.proc)
