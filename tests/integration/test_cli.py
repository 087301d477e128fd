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
from ..helpers.tls import make_certs

CMD = [sys.executable, "-m", "vinoserve"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args, text",
    [
        ([], "At least one of --port and --rest_port must be set"),
        (["--port", "9000", "--rest_port", "9000", "--model_name", "m", "--model_path", "x"], "must differ"),
        (["--port", "99999", "--model_name", "m", "--model_path", "x"], "between 0 and 65535"),
        (["--port", "9000", "--model_name", "m"], "--model_path is required"),
        (["--port", "9000", "--config_path", "c.json", "--model_name", "m"], "exclusive with the config file"),
        (["--port", "9000", "--config_path", "/nonexistent/c.json"], "Cannot read config file"),
        (["--port", "9000", "--model_name", "m", "--model_path", "x", "--batch_size", "many"], "Invalid batch size"),
        (["--port", "9000", "--model_name", "m", "--model_path", "x", "--layout", "NC:HW"], "Invalid layout"),
        (
            ["--port", "9000", "--model_name", "m", "--model_path", "x", "--warmup_batch_sizes", "1,x"],
            "--warmup_batch_sizes must hold positive integers only (got 'x')",
        ),
    ],
)
def test_startup_mistakes_are_one_line(args: list[str], text: str) -> None:
    res = run_cli(*args)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_serves_then_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    base = write_affine(tmp_path / "m")
    port = free_port()
    proc = subprocess.Popen(
        [*CMD, "--model_name", "m", "--model_path", str(base), "--port", str(port), "--batch_size", "auto"],
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
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


@pytest.mark.parametrize(
    "flags, text",
    [
        (["--tls_cert", "{server}"], "--tls_cert and --tls_key go together"),
        (["--tls_key", "{server_key}"], "--tls_cert and --tls_key go together"),
        (["--tls_client_ca", "{ca}"], "--tls_client_ca needs --tls_cert and --tls_key"),
        (["--tls_cert", "{dir}/missing.pem", "--tls_key", "{server_key}"], "Cannot read --tls_cert file"),
        (["--tls_cert", "{server}", "--tls_key", "{dir}"], "Cannot read --tls_key file"),
        (["--tls_cert", "{garbage}", "--tls_key", "{server_key}"], "Invalid --tls_cert file"),
        (["--tls_cert", "{server}", "--tls_key", "{server}"], "Invalid --tls_key file"),
        (["--tls_cert", "{broken}", "--tls_key", "{server_key}"], "not a valid PEM file"),
        (["--tls_cert", "{server}", "--tls_key", "{rogue_key}"], "the key does not match the certificate"),
        (
            ["--tls_cert", "{server}", "--tls_key", "{server_key}", "--tls_client_ca", "{garbage}"],
            "Invalid --tls_client_ca file",
        ),
        (["--tls_cert", "{server}", "--tls_key", "{encrypted}"], "encrypted private keys are not supported"),
        (["--shutdown_timeout_s", "-1"], "--shutdown_timeout_s must not be negative"),
    ],
)
def test_tls_and_shutdown_mistakes_are_one_line(tmp_path: Path, flags: list[str], text: str) -> None:
    from cryptography.hazmat.primitives import serialization as ser

    certs = make_certs(tmp_path)
    key = ser.load_pem_private_key(certs.server_key.read_bytes(), None)
    (tmp_path / "encrypted.key").write_bytes(
        key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"secret"))
    )
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    pem = certs.server.read_text().splitlines()
    (tmp_path / "broken.pem").write_text("\n".join([*pem[:3], *pem[-1:]]) + "\n")  # cut short inside
    names = {
        "dir": tmp_path,
        "garbage": tmp_path / "garbage.pem",
        "broken": tmp_path / "broken.pem",
        "encrypted": tmp_path / "encrypted.key",
        **vars(certs),
    }
    res = run_cli("--port", "9000", "--model_name", "m", "--model_path", "x", *[f.format(**names) for f in flags])
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], res.stderr
    assert "Traceback" not in res.stderr
