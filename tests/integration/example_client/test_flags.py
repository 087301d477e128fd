"""The example client's flags and failures: one line on stderr and exit code 1, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ...helpers.example_client import run_client
from ...helpers.server import RunningServer, free_port


def test_wrong_output_name_lists_outputs_and_exits_1(quad: RunningServer, data: Path) -> None:
    res = run_client(quad.grpc_port, data, "--output_name", "logits")
    assert res.returncode == 1
    assert "'logits'" in res.stderr and "available outputs" in res.stderr
    assert res.stderr.splitlines()[-1] == "\tprobabilities"
    assert "Iteration 1" not in res.stdout and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    "extra, text",
    [
        (["--model_name", "nope"], "NOT_FOUND: Model with requested name is not found"),
        (["--model_version", "2"], "NOT_FOUND: Model with requested version is not found"),
        (["--input_name", "x"], "INVALID_ARGUMENT"),
        (["--labels_numpy_path", "/nonexistent.npy"], "cannot load the labels /nonexistent.npy"),
        (["--tls", "--client_cert", "c.pem"], "a client certificate and a client key go together"),
    ],
)
def test_failures_are_one_line(quad: RunningServer, data: Path, extra: list[str], text: str) -> None:
    res = run_client(quad.grpc_port, data, *extra)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0] and lines[0].startswith("vinoserve-grpc-client: error:"), res.stderr


def test_unreachable_server_is_one_line(data: Path) -> None:
    res = run_client(free_port(), data)
    assert res.returncode == 1 and "UNAVAILABLE" in res.stderr and "Traceback" not in res.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "vinoserve-grpc-client"
    if not script.exists():
        pytest.skip("package not installed into this environment's bin directory")
    res = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0
    for flag in [
        "--grpc_address",
        "--grpc_port",
        "--images_numpy_path",
        "--labels_numpy_path",
        "--input_name",
        "--output_name",
        "--model_name",
        "--model_version",
        "--transpose_input",
        "--transpose_method",
        "--iterations",
        "--batchsize",
        "--tls",
        "--server_cert",
        "--client_cert",
        "--client_key",
    ]:
        assert flag in res.stdout
