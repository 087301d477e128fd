"""Parsing of the OVMS value syntaxes (``config/flags.py``): batch size, shape, layout, version policy."""

from __future__ import annotations

import pytest

from vinoserve.config import (
    BatchSetting,
    LayoutSetting,
    ShapeSetting,
    VersionPolicy,
    parse_batch,
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
