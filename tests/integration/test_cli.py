"""``vinoserve`` as a process: start-up errors, serving, graceful shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import ovmsclient
import pytest

from ..helpers.models import write_affine
from ..helpers.server import free_port

CMD = [sys.executable, "-m", "vinoserve"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, text", [
    ([], "At least one of --port and --rest_port must be set"),
    (["--port", "9000", "--rest_port", "9000", "--model_name", "m", "--model_path", "x"], "must differ"),
    (["--port", "99999", "--model_name", "m", "--model_path", "x"], "between 0 and 65535"),
    (["--port", "9000", "--model_name", "m"], "--model_path is required"),
    (["--port", "9000", "--config_path", "c.json", "--model_name", "m"], "exclusive with the config file"),
    (["--port", "9000", "--config_path", "/nonexistent/c.json"], "Cannot read config file"),
    (["--port", "9000", "--model_name", "m", "--model_path", "x", "--batch_size", "many"], "Invalid batch size"),
    (["--port", "9000", "--model_name", "m", "--model_path", "x", "--layout", "NC:HW"], "Invalid layout"),
])
def test_startup_mistakes_are_one_line(args: list[str], text: str) -> None:
    res = run_cli(*args)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_serves_then_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    base = write_affine(tmp_path / "m")
    port = free_port()
    proc = subprocess.Popen([*CMD, "--model_name", "m", "--model_path", str(base), "--port", str(port),
                             "--batch_size", "auto"], start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        client = ovmsclient.make_grpc_client(f"localhost:{port}")
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get_model_status("m")[1]["state"] == "AVAILABLE":
                    break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
            time.sleep(0.1)
        assert client.predict({"b": np.ones((4, 10), np.float32)}, "m").shape == (4, 10)
        os.killpg(proc.pid, signal.SIGTERM)
        _, log = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "Reshaped model m version 1" in log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()  # reaps the process and closes its stderr pipe
