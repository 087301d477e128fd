"""Parsing of the OVMS string syntaxes and of config.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from vinoserve.cli import build_settings
from vinoserve.config import (
    BatchSetting,
    LayoutSetting,
    ShapeSetting,
    VersionPolicy,
    parse_batch,
    parse_config,
    parse_layout,
    parse_policy,
    parse_shape,
)
from vinoserve.errors import StartupError
from vinoserve.types import Dim, format_shape


def test_batch_forms() -> None:
    assert parse_batch("auto") == BatchSetting(auto=True)
    assert parse_batch("8") == BatchSetting(dim=Dim.static(8))
    assert parse_batch("-1") == BatchSetting(dim=Dim.any())
    assert parse_batch("1:16") == BatchSetting(dim=Dim(1, 16))
    for bad in ("x", "0", "-2", "5:2", "1:2:3", ""):
        with pytest.raises(StartupError):
            parse_batch(bad)


def test_shape_forms() -> None:
    assert parse_shape("auto") == {None: ShapeSetting(auto=True)}
    s = parse_shape("(1,3,-1,100:200)")[None]
    assert s.dims == (Dim.static(1), Dim.static(3), Dim.any(), Dim(100, 200))
    assert format_shape(s.dims) == "(1,3,-1,[100~200])"
    j = parse_shape('{"a": "(1,10)", "b": "auto", "c": [2, 3]}')
    assert j["a"].dims == (Dim.static(1), Dim.static(10)) and j["b"].auto and j["c"].dims[1] == Dim.static(3)
    for bad in ("1,3", "(1,x)", "{bad json", '{"a": 5}', "(1,-3)"):
        with pytest.raises(StartupError):
            parse_shape(bad)


def test_layout_and_policy() -> None:
    assert parse_layout("NCHW") == {None: LayoutSetting("NCHW", "NCHW")}
    assert parse_layout("nhwc:nchw") == {None: LayoutSetting("NHWC", "NCHW")}
    assert parse_layout('{"x": "NHWC:NCHW"}')["x"].model == "NCHW"
    with pytest.raises(StartupError):
        parse_layout("NHWC:NCH")
    assert parse_policy('{"all": {}}').select([3, 1, 2]) == [1, 2, 3]
    assert parse_policy('{"latest": {"num_versions": 2}}').select([3, 1, 2]) == [2, 3]
    assert parse_policy({"specific": {"versions": [1, 3, 7]}}).select([1, 2, 3]) == [1, 3]
    assert VersionPolicy().select([1, 5, 2]) == [5]
    for bad in ('{"latest": {"num_versions": 0}}', '{"specific": {}}', '{"newest": {}}', "[]", "{"):
        with pytest.raises(StartupError):
            parse_policy(bad)


@pytest.mark.parametrize("argv, text", [
    (["--model_name", "m", "--model_path", "p"], "At least one of --port and --rest_port"),
    (["--model_name", "m", "--model_path", "p", "--port", "9", "--rest_port", "9"], "must differ"),
    (["--model_name", "m", "--model_path", "p", "--port", "70000"], "between 0 and 65535"),
    (["--model_name", "m", "--port", "9"], "--model_path is required"),
    (["--config_path", "c.json", "--model_name", "m", "--port", "9"], "exclusive with the config file"),
    (["--config_path", "c.json", "--batch_size", "auto", "--port", "9"], "exclusive with the config file"),
    (["--model_name", "m", "--model_path", "p", "--port", "9", "--shape", "(1,a)"], "Invalid"),
    (["--model_name", "m", "--model_path", "p", "--port", "9", "--model_version_policy", "{"], "policy"),
    (["--model_name", "m", "--model_path", "p", "--port", "9", "--bogus"], "unrecognized"),
])
def test_startup_errors(argv: list[str], text: str) -> None:
    with pytest.raises(StartupError, match=text):
        build_settings(argv)


def test_config_file(tmp_path: Path) -> None:
    obj = {"model_config_list": [
        {"config": {"name": "a", "base_path": "models/a", "batch_size": "auto", "nireq": 2,
                    "plugin_config": {"PERFORMANCE_HINT": "LATENCY"}, "layout": "NCHW",
                    "model_version_policy": {"all": {}}}},
        {"config": {"name": "a", "base_path": "/abs/b"}},
        {"config": {"name": "c", "base_path": "/abs/c", "shape": {"x": "(1,3)"}}}],
        "monitoring": {"metrics": {"enable": True}}}
    models, metrics = parse_config(obj, tmp_path, 4)
    assert metrics is True
    assert [m.name for m in models] == ["a", "c"]
    assert models[0].base_path == (tmp_path / "models/a").resolve()
    assert models[0].batch == BatchSetting(auto=True) and models[0].nireq == 2
    assert models[0].version_policy.kind == "all"
    assert models[1].shape is not None and models[1].shape["x"].dims == (Dim.static(1), Dim.static(3))


@pytest.mark.parametrize("obj, text", [
    ({"model_config_list": [{"config": {"name": "a", "base_path": "x", "colour": 1}}]}, "model 'a'.*colour"),
    ({"model_config_list": [{"config": {"name": "a", "base_path": "x", "nireq": "2"}}]}, "'nireq'"),
    ({"model_config_list": [{"config": {"base_path": "x"}}]}, "'name'"),
    ({"models": []}, "unknown key 'models'"),
    ({"model_config_list": [{"config": {"name": "a", "base_path": "x", "shape": "(1"}}]}, "model 'a'"),
])
def test_config_file_errors(obj: object, text: str, tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=text):
        parse_config(obj, tmp_path, 4)
