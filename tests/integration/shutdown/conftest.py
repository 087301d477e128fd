"""The ``start`` fixture of the graceful-shutdown tests: ``vinoserve`` as a process, killed after the test."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from ...helpers.models import write_slow
from ...helpers.server import F32
from ...helpers.shutdown import CMD, Proc, free_port


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``start(*flags, **model)`` runs vinoserve (``write_slow(**model)``) until ready; killed after the test
    if still running."""
    procs: list[subprocess.Popen[str]] = []

    def run(*flags: str, **model: int) -> Proc:
        base = write_slow(tmp_path / "slow", **model)
        grpc_port, rest_port = free_port(), free_port()
        popen = subprocess.Popen(
            [
                *CMD,
                "--model_name",
                "slow",
                "--model_path",
                str(base),
                "--port",
                str(grpc_port),
                "--rest_port",
                str(rest_port),
                "--plugin_config",
                F32,
                *flags,
            ],
            start_new_session=True,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(popen)
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://localhost:{rest_port}/v2/health/ready", timeout=5).status_code == 200:
                    return Proc(popen, grpc_port, rest_port)
            except requests.ConnectionError:
                pass
            assert popen.poll() is None and time.monotonic() < deadline, "vinoserve did not start"
            time.sleep(0.1)

    yield run
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        if p.stderr:
            p.stderr.close()
