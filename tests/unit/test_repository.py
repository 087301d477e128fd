"""The model repository on disk: version directories, model files, fingerprints, mapping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vinoserve.manager.repository import find_model_file, fingerprint, list_versions, read_mapping


def test_versions_are_positive_integer_directories(tmp_path: Path) -> None:
    for name in ("1", "3", "10", "0", "x", "2a"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file, not a directory")
    assert list_versions(tmp_path) == [1, 3, 10]
    assert list_versions(tmp_path / "missing") == []


def test_model_file_order(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    (tmp_path / "m.xml").write_text("")
    assert find_model_file(tmp_path) == tmp_path / "m.onnx"  # an .xml without its .bin does not count
    (tmp_path / "m.bin").write_bytes(b"")
    assert find_model_file(tmp_path) == tmp_path / "m.xml"
    assert find_model_file(tmp_path / "missing") is None


def test_fingerprint_follows_any_change_below_the_directory(tmp_path: Path) -> None:
    (tmp_path / "model.xml").write_text("<net/>")
    first = fingerprint(tmp_path)
    assert fingerprint(tmp_path) == first
    (tmp_path / "model.bin").write_bytes(b"12")
    second = fingerprint(tmp_path)
    assert second != first
    os.utime(tmp_path / "model.xml", ns=(1, 1))  # same size, other mtime
    assert fingerprint(tmp_path) != second
    (tmp_path / "variables").mkdir()
    (tmp_path / "variables" / "data").write_bytes(b"x")
    assert ("variables/data", 1) in {e[:2] for e in fingerprint(tmp_path)}
    assert fingerprint(tmp_path / "missing") == ()


def test_mapping(tmp_path: Path) -> None:
    assert read_mapping(tmp_path).inputs == {}
    (tmp_path / "mapping_config.json").write_text('{"inputs": {"b": "data"}, "outputs": {"y": "out"}}')
    m = read_mapping(tmp_path)
    assert (m.inputs, m.outputs) == ({"b": "data"}, {"y": "out"})
    (tmp_path / "mapping_config.json").write_text('{"inputs": []}')
    with pytest.raises(ValueError, match="must be objects"):
        read_mapping(tmp_path)
