"""The model repository on disk: version directories, model files, ``mapping_config.json``."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
# What a directory looked like: (relative path, size, mtime ns, inode) of every entry below it.
Fingerprint = tuple[tuple[str, int, int, int], ...]
# Stray entries already warned about: the watcher rescans every second and must not repeat itself.
_warned: set[Path] = set()


@dataclass(frozen=True, slots=True)
class Mapping:
    """Real tensor name → alias, for inputs and outputs."""

    inputs: dict[str, str]
    outputs: dict[str, str]


def list_versions(base_path: Path) -> list[int]:
    """Version numbers under ``base_path``: directories named by an integer > 0; others warned about."""
    if not base_path.is_dir():
        return []
    versions = []
    for entry in sorted(base_path.iterdir()):
        name = entry.name
        if entry.is_dir() and name.isdigit() and int(name) > 0:
            versions.append(int(name))
        elif entry not in _warned:
            _warned.add(entry)
            log.warning("ignoring %s in model repository %s: not a version directory", name, base_path)
    return sorted(versions)


def fingerprint(version_dir: Path) -> Fingerprint:
    """Names, sizes, mtimes and inodes of everything under ``version_dir`` (empty when unreadable).

    A version that failed to load is tried again when this changes, so rewriting or replacing any
    file of it (model, weights, ``mapping_config.json``) is noticed.
    """
    entries: list[tuple[str, int, int, int]] = []
    for root, dirs, files in os.walk(version_dir):
        for name in dirs + files:
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:  # removed while we looked: the next scan sees the result
                continue
            entries.append((os.path.relpath(full, version_dir), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sorted(entries))


def find_model_file(version_dir: Path) -> Path | None:
    """The model in a version directory, looked for in OVMS's order; None when there is none."""
    files = sorted(p for p in version_dir.iterdir() if p.is_file()) if version_dir.is_dir() else []
    for xml in (p for p in files if p.suffix == ".xml"):
        if xml.with_suffix(".bin").is_file():
            return xml
    for suffix in (".onnx",):
        for p in files:
            if p.suffix == suffix:
                return p
    for p in files:
        if p.suffix == ".pdmodel" and p.with_suffix(".pdiparams").is_file():
            return p
    if (version_dir / "saved_model.pb").is_file():
        return version_dir
    for p in files:
        if p.suffix == ".tflite":
            return p
    return None


def read_mapping(version_dir: Path) -> Mapping:
    """Aliases from ``mapping_config.json`` (empty when absent); a malformed file is an error."""
    path = version_dir / "mapping_config.json"
    if not path.is_file():
        return Mapping({}, {})
    try:
        obj = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"Invalid mapping_config.json: {exc}") from None
    if not isinstance(obj, dict) or not set(obj) <= {"inputs", "outputs"}:
        raise ValueError('Invalid mapping_config.json: expected {"inputs":{...},"outputs":{...}}')
    ins, outs = obj.get("inputs", {}), obj.get("outputs", {})
    if not isinstance(ins, dict) or not isinstance(outs, dict):
        raise ValueError("Invalid mapping_config.json: inputs and outputs must be objects")
    return Mapping({str(k): str(v) for k, v in ins.items()}, {str(k): str(v) for k, v in outs.items()})
