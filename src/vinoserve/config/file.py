"""``config.json`` (SPEC §3): validated once, with errors that name the model and the key."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, TypeVar, overload

from ..errors import StartupError
from .model import PER_MODEL_KEYS, build_model_config
from .settings import ModelConfig

log = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")
_MODEL_KEYS = {"name", "base_path", "shape_variants", *PER_MODEL_KEYS}
_TOP_KEYS = {"model_config_list", "monitoring"}


def load_config_file(path: Path, shape_variants: int) -> tuple[tuple[ModelConfig, ...], bool]:
    """Models of the file and whether it enables metrics."""
    return parse_config_bytes(read_config_bytes(path), path, shape_variants)


def read_config_bytes(path: Path) -> bytes:
    """The file's content; StartupError when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StartupError(f"Cannot read config file {path}: {exc.strerror}") from None


def parse_config_bytes(data: bytes, path: Path, shape_variants: int) -> tuple[tuple[ModelConfig, ...], bool]:
    """Validate the content of the config file at ``path`` (relative base paths are taken from there)."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise StartupError(f"Config file {path} is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise StartupError(f"Config file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    return parse_config(obj, path.resolve().parent, shape_variants)


def parse_config(obj: object, base: Path, shape_variants: int) -> tuple[tuple[ModelConfig, ...], bool]:
    """Validate a parsed config document; relative base paths are taken from ``base``."""
    if not isinstance(obj, dict):
        raise StartupError("Config file must hold a JSON object")
    unknown = set(obj) - _TOP_KEYS
    if unknown:
        raise StartupError(f"Config file has unknown key '{sorted(unknown)[0]}'")
    entries = obj.get("model_config_list", [])
    if not isinstance(entries, list):
        raise StartupError("model_config_list must be a list")
    models: list[ModelConfig] = []
    names: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"config"} or not isinstance(entry["config"], dict):
            raise StartupError(f'model_config_list[{i}] must be {{"config": {{...}}}}')
        cfg = _model(entry["config"], i, base, shape_variants)
        if cfg.name in names:
            log.error("Duplicate model name %s in config: the first entry is kept", cfg.name)
            continue
        names.add(cfg.name)
        models.append(cfg)
    return tuple(models), _metrics(obj.get("monitoring"))


def _metrics(mon: object) -> bool:
    if mon is None:
        return False
    if not isinstance(mon, dict) or set(mon) - {"metrics"}:
        raise StartupError('monitoring must be {"metrics": {"enable": true}}')
    m = mon.get("metrics", {})
    if not isinstance(m, dict) or set(m) - {"enable", "metrics_list"}:
        raise StartupError('monitoring.metrics must be {"enable": true}')
    enable = m.get("enable", False)
    if not isinstance(enable, bool):
        raise StartupError("monitoring.metrics.enable must be true or false")
    return enable


def _model(c: dict[str, object], i: int, base: Path, shape_variants: int) -> ModelConfig:
    name = c.get("name")
    who = f"model '{name}'" if isinstance(name, str) else f"model_config_list[{i}]"
    unknown = set(c) - _MODEL_KEYS
    if unknown:
        raise StartupError(f"Config of {who} has unknown key '{sorted(unknown)[0]}'")
    if not isinstance(name, str) or not name:
        raise StartupError(f"Config of {who}: 'name' must be a non-empty string")
    bp = c.get("base_path")
    if not isinstance(bp, str) or not bp:
        raise StartupError(f"Config of {who}: 'base_path' must be a non-empty string")
    try:
        return build_model_config(
            name,
            bp,
            relative_to=base,
            default_shape_variants=shape_variants,
            batch_size=_typed(c, who, "batch_size", str, int),
            shape=_typed(c, who, "shape", str, dict),
            layout=_typed(c, who, "layout", str, dict),
            nireq=_typed(c, who, "nireq", int),
            shape_variants=_typed(c, who, "shape_variants", int),
            target_device=_typed(c, who, "target_device", str),
            model_version_policy=_typed(c, who, "model_version_policy", dict),
            plugin_config=_typed(c, who, "plugin_config", dict, str),
            warmup_batch_sizes=_typed(c, who, "warmup_batch_sizes", list),
            dynamic_batching=_typed(c, who, "dynamic_batching", dict),
        )
    except StartupError as exc:
        if str(exc).startswith("Config of"):
            raise
        raise StartupError(f"Config of {who}: {exc}") from None


@overload
def _typed(c: dict[str, object], who: str, key: str, kind: type[T], /) -> T | None: ...
@overload
def _typed(c: dict[str, object], who: str, key: str, kind: type[T], other: type[U], /) -> T | U | None: ...
def _typed(c: dict[str, object], who: str, key: str, *kinds: type[Any]) -> object:
    """The value of ``key`` if it is one of ``kinds`` (JSON true/false is not an integer), or None."""
    v = c.get(key)
    if v is not None and (not isinstance(v, kinds) or isinstance(v, bool) and kinds == (int,)):
        raise StartupError(f"Config of {who}: '{key}' has the wrong type")
    return v
