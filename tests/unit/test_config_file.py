"""``config.json`` (``config/file.py``): models, metrics, and errors that name the model and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vinoserve.config import BatchSetting, parse_config
from vinoserve.errors import StartupError
from vinoserve.types import Dim


def test_config_file(tmp_path: Path) -> None:
    obj = {
        "model_config_list": [
            {
                "config": {
                    "name": "a",
                    "base_path": "models/a",
                    "batch_size": "auto",
                    "nireq": 2,
                    "plugin_config": {"PERFORMANCE_HINT": "LATENCY"},
                    "layout": "NCHW",
                    "model_version_policy": {"all": {}},
                }
            },
            {"config": {"name": "a", "base_path": "/abs/b"}},
            {"config": {"name": "c", "base_path": "/abs/c", "shape": {"x": "(1,3)"}}},
        ],
        "monitoring": {"metrics": {"enable": True}},
    }
    models, metrics = parse_config(obj, tmp_path, 4)
    assert metrics is True
    assert [m.name for m in models] == ["a", "c"]
    assert models[0].base_path == (tmp_path / "models/a").resolve()
    assert models[0].batch == BatchSetting(auto=True) and models[0].nireq == 2
    assert models[0].version_policy.kind == "all"
    assert models[1].shape is not None and models[1].shape["x"].dims == (Dim.static(1), Dim.static(3))


@pytest.mark.parametrize(
    "obj, text",
    [
        ({"model_config_list": [{"config": {"name": "a", "base_path": "x", "colour": 1}}]}, "model 'a'.*colour"),
        ({"model_config_list": [{"config": {"name": "a", "base_path": "x", "nireq": "2"}}]}, "'nireq'"),
        ({"model_config_list": [{"config": {"base_path": "x"}}]}, "'name'"),
        ({"models": []}, "unknown key 'models'"),
        ({"model_config_list": [{"config": {"name": "a", "base_path": "x", "shape": "(1"}}]}, "model 'a'"),
    ],
)
def test_config_file_errors(obj: object, text: str, tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=text):
        parse_config(obj, tmp_path, 4)
