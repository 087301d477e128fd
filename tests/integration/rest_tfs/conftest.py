"""The server of the TF Serving REST tests, shared by the package: models of every kind the tests need,
a 1 MB request limit, and reloads on demand only."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ...helpers.management import write_config
from ...helpers.models import write_affine, write_rigid, write_strings, write_two_inputs
from ...helpers.server import F32, RunningServer


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """aff (y = 2b + 1, [1,10]), two inputs, a string echo, a rigid model under auto, a broken model."""
    root = tmp_path_factory.mktemp("tfs")
    (root / "broken" / "1").mkdir(parents=True)
    paths = {
        "aff": write_affine(root / "aff"),
        "two": write_two_inputs(root / "two"),
        "str": write_strings(root / "str"),
        "rigid": write_rigid(root / "rigid"),
        "broken": root / "broken",
    }
    entries = [
        {
            "name": n,
            "base_path": str(p),
            "plugin_config": json.loads(F32),
            **({"batch_size": "auto"} if n == "rigid" else {}),
        }
        for n, p in paths.items()
    ]
    config = write_config(root / "config.json", entries)
    s = RunningServer(
        ["--config_path", str(config), "--max_request_mb", "1", "--file_system_poll_wait_seconds", "0"],
        rest=True,
        runtime=None,
    )
    yield s
    s.stop()
