"""A Ray Serve replica's flags: the standalone server's, less those Ray's proxies own (no Ray needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vinoserve.errors import StartupError
from vinoserve.ray.settings import flags_from_args, replica_settings


def test_a_mapping_of_flags_becomes_the_command_line() -> None:
    argv = flags_from_args({"model_name": "m", "--batch_size": "auto", "metrics_enable": True, "nireq": 2})
    assert argv == ["--model_name=m", "--batch_size=auto", "--metrics_enable=true", "--nireq=2"]
    assert flags_from_args(["--model_name", "m"]) == ["--model_name", "m"]


def test_replica_settings_bind_no_port(tmp_path: Path) -> None:
    s = replica_settings(["--model_name=m", f"--model_path={tmp_path}", "--batch_size=auto", "--max_request_mb=3"])
    assert (s.port, s.rest_port) == (0, 0)
    assert s.max_request_bytes == 3 * 2**20 and s.models[0].name == "m"


@pytest.mark.parametrize("flag", ["--port=9000", "--rest_port=8000", "--tls_cert=c.pem", "--grpc_bind_address=::"])
def test_proxy_flags_are_refused(tmp_path: Path, flag: str) -> None:
    with pytest.raises(StartupError, match="not used under Ray Serve"):
        replica_settings(["--model_name=m", f"--model_path={tmp_path}", flag])


def test_flag_errors_are_the_standalone_servers() -> None:
    with pytest.raises(StartupError, match="--model_path is required"):
        replica_settings(["--model_name=m"])


def test_settings_do_not_import_ray() -> None:
    code = "import sys, vinoserve.ray.settings; print('ray' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert run.stdout.strip() == "False"
