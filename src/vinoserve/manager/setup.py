"""Turn a model's configured batch/shape/layout into per-input rules, applied once at load."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeVar

from ..config import LayoutSetting, ModelConfig, ShapeSetting
from ..errors import StatusCode, VinoserveError
from ..runtime.openvino import SourceModel
from ..types import Dim, Precision, Shape
from .repository import Mapping

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class InputRule:
    """What one input (by real name) accepts, and which of its dims reshape on demand (``auto``)."""

    name: str
    alias: str
    precision: Precision
    layout: str
    batch_index: int  # -1: the input has no batch dimension
    accepted: Shape
    auto_dims: frozenset[int]
    any_rank: bool = False  # shape auto: the request's rank is taken as it comes

    def key_dims(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A request shape reduced to what selects a compiled variant (-1 where the variant is dynamic)."""
        if self.any_rank:
            return shape
        return tuple(n if (i in self.auto_dims or self.accepted[i].is_static) else -1
                     for i, n in enumerate(shape))

    def compile_dims(self, key: tuple[int, ...]) -> Shape:
        """The shape to compile for a variant key."""
        if self.any_rank:
            return tuple(Dim.static(n) for n in key)
        return tuple(Dim.static(n) if n >= 0 else self.accepted[i] for i, n in enumerate(key))


def _resolve(names: dict[str, str], key: str, what: str) -> str:
    """A name given in config may be the real name or its alias."""
    if key in names.values():
        return key
    for real, alias in names.items():
        if alias == key:
            return real
    raise VinoserveError(StatusCode.INTERNAL, f"{what} names input '{key}' that the model does not have")


def _per_input(setting: dict[str | None, T] | None, names: dict[str, str], what: str) -> dict[str, T]:
    if not setting:
        return {}
    if None in setting:
        if what == "shape" and len(names) > 1:
            raise VinoserveError(StatusCode.INTERNAL, "Anonymous shape is not allowed for a model with "
                                 f"{len(names)} inputs: name each input in a JSON shape")
        return {real: setting[None] for real in names}
    return {_resolve(names, str(k), what): v for k, v in setting.items()}


def plan_inputs(cfg: ModelConfig, source: SourceModel, mapping: Mapping) -> dict[str, InputRule]:
    """Apply layouts and fixed shapes to ``source``; return each input's rule."""
    aliases = {p.name: mapping.inputs.get(p.name, p.name) for p in source.inputs}
    layouts: dict[str, LayoutSetting] = _per_input(cfg.layout, aliases, "layout")
    ranks = {p.name: len(p.shape) for p in source.inputs}
    for real, lay in layouts.items():
        if len(lay.tensor) != ranks[real]:
            raise VinoserveError(StatusCode.INTERNAL,
                                 f"Layout {lay.tensor} does not fit input '{real}' of rank {ranks[real]}")
    if layouts:
        source.set_layouts({r: (v.tensor, v.model) for r, v in layouts.items()})
    shapes: dict[str, ShapeSetting] = _per_input(cfg.shape, aliases, "shape")
    if shapes and cfg.batch is not None:
        log.warning("Model %s: both shape and batch_size are set; batch_size is ignored", cfg.name)
    batch = None if shapes else cfg.batch
    fixed: dict[str, Shape] = {}
    auto: dict[str, frozenset[int]] = {}
    batch_index: dict[str, int] = {}
    for p in source.inputs:
        given = layouts.get(p.name)
        tensor_layout = given.tensor if given is not None else ""
        bi = tensor_layout.find("N") if tensor_layout else (0 if p.shape else -1)
        batch_index[p.name] = bi
        s = shapes.get(p.name)
        if s is not None:
            if s.auto:
                auto[p.name] = frozenset(range(len(p.shape)))
            else:
                fixed[p.name] = s.dims
        elif batch is not None:
            if bi < 0:
                if batch.auto:
                    raise VinoserveError(StatusCode.INTERNAL,
                                         "Batching set to AUTO but model contains scalar tensor")
                continue
            if batch.auto:
                auto[p.name] = frozenset({bi})
            elif batch.dim is not None:
                fixed[p.name] = tuple(batch.dim if i == bi else d for i, d in enumerate(p.shape))
    if fixed:
        source.reshape(fixed)
    rules = {}
    for p in source.inputs:
        s = shapes.get(p.name)
        rules[p.name] = InputRule(
            p.name, aliases[p.name], p.precision,
            layouts[p.name].tensor if p.name in layouts else "",
            batch_index[p.name], p.shape, auto.get(p.name, frozenset()),
            any_rank=bool(s is not None and s.auto),
        )
    return rules
