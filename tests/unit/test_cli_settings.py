"""Flags into settings (``cli.build_settings``): each start-up mistake is one StartupError."""

from __future__ import annotations

import pytest

from vinoserve.cli import build_settings
from vinoserve.errors import StartupError


@pytest.mark.parametrize(
    "argv, text",
    [
        (["--model_name", "m", "--model_path", "p"], "At least one of --port and --rest_port"),
        (["--model_name", "m", "--model_path", "p", "--port", "9", "--rest_port", "9"], "must differ"),
        (["--model_name", "m", "--model_path", "p", "--port", "70000"], "between 0 and 65535"),
        (["--model_name", "m", "--port", "9"], "--model_path is required"),
        (["--config_path", "c.json", "--model_name", "m", "--port", "9"], "exclusive with the config file"),
        (["--config_path", "c.json", "--batch_size", "auto", "--port", "9"], "exclusive with the config file"),
        (["--model_name", "m", "--model_path", "p", "--port", "9", "--shape", "(1,a)"], "Invalid"),
        (["--model_name", "m", "--model_path", "p", "--port", "9", "--model_version_policy", "{"], "policy"),
        (["--model_name", "m", "--model_path", "p", "--port", "9", "--bogus"], "unrecognized"),
    ],
)
def test_startup_errors(argv: list[str], text: str) -> None:
    with pytest.raises(StartupError, match=text):
        build_settings(argv)
