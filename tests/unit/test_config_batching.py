"""``dynamic_batching`` in ``config.json`` and ``--dynamic_batching``: values, defaults, errors naming model and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vinoserve.cli import build_settings
from vinoserve.config import parse_config
from vinoserve.config.settings import DynamicBatching
from vinoserve.errors import StartupError


def entry(batching: object) -> dict[str, object]:
    return {"model_config_list": [{"config": {"name": "m", "base_path": "x", "dynamic_batching": batching}}]}


def test_config_file_entry(tmp_path: Path) -> None:
    models, _ = parse_config(
        entry(
            {"max_batch_size": 16, "max_queue_delay_ms": 2, "preferred_batch_sizes": [16, 8, 8], "max_queue_size": 64}
        ),
        tmp_path,
        4,
    )
    assert models[0].dynamic_batching == DynamicBatching(16, 2.0, (8, 16), 64)
    models, _ = parse_config(entry({}), tmp_path, 4)
    assert models[0].dynamic_batching == DynamicBatching(8, 0.0, (), 1024)
    models, _ = parse_config({"model_config_list": [{"config": {"name": "m", "base_path": "x"}}]}, tmp_path, 4)
    assert models[0].dynamic_batching is None  # off unless configured


@pytest.mark.parametrize(
    "batching, text",
    [
        ({"max_batch_size": 0}, "model 'm': 'dynamic_batching': 'max_batch_size'"),
        ({"max_batch_size": True}, "'max_batch_size'"),
        ({"max_queue_delay_ms": -1}, "model 'm': 'dynamic_batching': 'max_queue_delay_ms'"),
        ({"max_queue_delay_ms": "2"}, "'max_queue_delay_ms'"),
        ({"max_batch_size": 8, "preferred_batch_sizes": [16]}, "'preferred_batch_sizes'"),
        ({"preferred_batch_sizes": 4}, "'preferred_batch_sizes'"),
        ({"max_queue_size": 0}, "'max_queue_size'"),
        ({"timeout": 1}, "model 'm': 'dynamic_batching' has unknown key 'timeout'"),
        ("16", "model 'm': 'dynamic_batching' has the wrong type"),
    ],
)
def test_config_file_errors(batching: object, text: str, tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=text):
        parse_config(entry(batching), tmp_path, 4)


def test_flag() -> None:
    base = ["--model_name", "m", "--model_path", "p", "--port", "9"]
    settings = build_settings([*base, "--dynamic_batching", '{"max_batch_size":16,"max_queue_delay_ms":2}'])
    assert settings.models[0].dynamic_batching == DynamicBatching(16, 2.0)
    assert build_settings(base).models[0].dynamic_batching is None
    with pytest.raises(StartupError, match="--dynamic_batching: 'max_batch_size'"):
        build_settings([*base, "--dynamic_batching", '{"max_batch_size":-2}'])
    with pytest.raises(StartupError, match="Invalid --dynamic_batching JSON"):
        build_settings([*base, "--dynamic_batching", "{"])
    with pytest.raises(StartupError, match="exclusive with the config file"):
        build_settings(["--config_path", "c.json", "--port", "9", "--dynamic_batching", "{}"])
