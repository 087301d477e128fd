"""One model's settings from its raw values, built the same way from the flags and from ``config.json``.

The single-model flags (``--model_name``, ``--batch_size``, ...) and an entry of ``config.json`` use
the same OVMS keys. Both hand their values as given (strings, integers, or JSON objects from the
file) to :func:`build_model_config`, the one place that knows each key's default and rules.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import StartupError
from .flags import (
    parse_batch,
    parse_dynamic_batching,
    parse_layout,
    parse_layout_obj,
    parse_plugin_config,
    parse_policy,
    parse_shape,
    parse_shape_obj,
)
from .settings import ModelConfig, VersionPolicy

# The per-model keys shared by the flags and config.json entries (besides name and base path).
PER_MODEL_KEYS = (
    "batch_size",
    "shape",
    "layout",
    "model_version_policy",
    "nireq",
    "target_device",
    "plugin_config",
    "warmup_batch_sizes",
    "dynamic_batching",
)
DEFAULT_TARGET_DEVICE = "CPU"

JsonObject = dict[str, object]


def quoted_key(key: str) -> str:
    """How an error names a key of ``config.json``: ``'nireq'``."""
    return f"'{key}'"


def build_model_config(
    name: str,
    base_path: str,
    *,
    relative_to: Path,
    default_shape_variants: int,
    label: Callable[[str], str] = quoted_key,
    batch_size: str | int | None = None,
    shape: str | JsonObject | None = None,
    layout: str | JsonObject | None = None,
    model_version_policy: str | JsonObject | None = None,
    nireq: int | None = None,
    target_device: str | None = None,
    plugin_config: str | JsonObject | None = None,
    shape_variants: int | None = None,
    warmup_batch_sizes: str | list[object] | None = None,
    dynamic_batching: str | JsonObject | None = None,
) -> ModelConfig:
    """The validated settings of one model; a value left ``None`` takes its default.

    A relative ``base_path`` is taken from ``relative_to`` (the working directory for the flags, the
    file's directory for ``config.json``). ``label`` names a key in errors the way its source spells
    it (``--nireq`` or ``'nireq'``). A malformed value raises :class:`StartupError`.
    """
    path = Path(base_path)
    if ".." in path.parts:
        raise StartupError(f"{label('base_path')} must not contain '..'")
    if nireq is not None and nireq < 0:
        raise StartupError(f"{label('nireq')} must not be negative")
    if shape_variants is not None and shape_variants < 1:
        raise StartupError(f"{label('shape_variants')} must be at least 1")
    return ModelConfig(
        name=name,
        base_path=(relative_to / path).resolve(),
        batch=None if batch_size is None else parse_batch(str(batch_size)),
        shape=None if shape is None else parse_shape_obj(shape) if isinstance(shape, dict) else parse_shape(shape),
        layout=None
        if layout is None
        else parse_layout_obj(layout)
        if isinstance(layout, dict)
        else parse_layout(layout),
        version_policy=VersionPolicy() if model_version_policy is None else parse_policy(model_version_policy),
        nireq=0 if nireq is None else nireq,
        target_device=DEFAULT_TARGET_DEVICE if target_device is None else target_device,
        plugin_config={} if plugin_config is None else parse_plugin_config(plugin_config),
        shape_variants=default_shape_variants if shape_variants is None else shape_variants,
        warmup_batch_sizes=parse_warmup_batch_sizes(warmup_batch_sizes, label("warmup_batch_sizes")),
        dynamic_batching=None
        if dynamic_batching is None
        else parse_dynamic_batching(dynamic_batching, label("dynamic_batching")),
    )


def parse_warmup_batch_sizes(value: str | list[object] | None, key: str) -> tuple[int, ...]:
    """``1,8`` (a flag) or ``[1, 8]`` (``config.json``): positive integers, repeats dropped, order kept.

    The order matters under ``auto``, where only the first ``shape_variants`` sizes are warmed.
    """
    if value is None:
        return ()
    items: list[object] = list(value)
    if isinstance(value, str):  # a flag: numbers as text; the file's list must hold JSON numbers
        items = [int(p) if p.isascii() and p.isdigit() else p for p in (p.strip() for p in value.split(","))]
    sizes: list[int] = []
    for item in items:
        if not isinstance(item, int) or isinstance(item, bool) or item < 1:
            raise StartupError(f"{key} must hold positive integers only (got {item!r})")
        if item not in sizes:
            sizes.append(item)
    return tuple(sizes)
