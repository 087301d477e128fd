"""What a model version's inputs accept: rules planned once at load, and each request checked against them.

``plan_inputs`` turns a model's configured batch/shape/layout into per-input rules (applying layouts
and fixed shapes to the model); ``check_request`` validates a request's tensors against those rules
(SPEC §6 texts, in OVMS's order).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ..config import LayoutSetting, ModelConfig, ShapeSetting
from ..errors import StatusCode, VinoserveError
from ..runtime.openvino import SourceModel
from ..types import Dim, Precision, Shape, format_shape, precision_of
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
        return tuple(n if (i in self.auto_dims or self.accepted[i].is_static) else -1 for i, n in enumerate(shape))

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
            raise VinoserveError(
                StatusCode.INTERNAL,
                f"Anonymous shape is not allowed for a model with {len(names)} inputs: name each input in a JSON shape",
            )
        return {real: setting[None] for real in names}
    return {_resolve(names, str(k), what): v for k, v in setting.items()}


def plan_inputs(cfg: ModelConfig, source: SourceModel, mapping: Mapping) -> dict[str, InputRule]:
    """Apply layouts and fixed shapes to ``source``; return each input's rule."""
    aliases = {p.name: mapping.inputs.get(p.name, p.name) for p in source.inputs}
    layouts: dict[str, LayoutSetting] = _per_input(cfg.layout, aliases, "layout")
    ranks = {p.name: len(p.shape) for p in source.inputs}
    for real, lay in layouts.items():
        if len(lay.tensor) != ranks[real]:
            raise VinoserveError(
                StatusCode.INTERNAL, f"Layout {lay.tensor} does not fit input '{real}' of rank {ranks[real]}"
            )
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
                    raise VinoserveError(StatusCode.INTERNAL, "Batching set to AUTO but model contains scalar tensor")
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
            p.name,
            aliases[p.name],
            p.precision,
            layouts[p.name].tensor if p.name in layouts else "",
            batch_index[p.name],
            p.shape,
            auto.get(p.name, frozenset()),
            any_rank=bool(s is not None and s.auto),
        )
    return rules


def _precision_ok(rule: InputRule, arr: np.ndarray) -> bool:
    want = rule.precision
    if want.name == "STRING":
        return arr.dtype.kind in ("O", "S", "U")
    return arr.dtype == want.np_dtype


def _actual_precision(arr: np.ndarray) -> str:
    try:
        return precision_of(arr).name
    except KeyError:
        return str(arr.dtype)


def check_request(
    inputs: dict[str, np.ndarray],
    rules: dict[str, InputRule],
    current: Callable[[], dict[str, Shape]],
    any_batch: bool = False,
) -> dict[str, np.ndarray]:
    """Validate and return the arrays keyed by real input name; raise the first SPEC error found.

    ``current``: the shapes the model now shows (for error texts only, so asked for only on error).
    ``any_batch``: the batch size is not checked (the batcher pads or splits to a fixed batch).
    """
    if len(inputs) != len(rules):
        raise VinoserveError(StatusCode.INVALID_INPUT_COUNT, f"Expected: {len(rules)}; Actual: {len(inputs)}")
    real: dict[str, np.ndarray] = {}
    for rule in rules.values():
        arr = inputs.get(rule.alias)
        if arr is None:
            raise VinoserveError(StatusCode.MISSING_INPUT, f"Required input: {rule.alias}")
        real[rule.name] = arr
    for rule in rules.values():
        arr = real[rule.name]
        if not _precision_ok(rule, arr):
            raise VinoserveError(
                StatusCode.INVALID_PRECISION,
                f"Expected: {rule.precision.name}; Actual: {_actual_precision(arr)}; input name: {rule.alias}",
            )
        if rule.any_rank:
            continue
        if arr.ndim != len(rule.accepted):
            raise _shape_error(StatusCode.INVALID_RANK, rule, arr, current)
        bi = rule.batch_index
        if bi >= 0 and bi not in rule.auto_dims and not any_batch and not rule.accepted[bi].accepts(arr.shape[bi]):
            raise VinoserveError(
                StatusCode.INVALID_BATCH,
                f"Expected: {rule.accepted[bi]}; Actual: {arr.shape[bi]}; input name: {rule.alias}",
            )
        for i, n in enumerate(arr.shape):
            if i != bi and i not in rule.auto_dims and not rule.accepted[i].accepts(n):
                raise _shape_error(StatusCode.INVALID_SHAPE, rule, arr, current)
    return real


def _shape_error(
    code: StatusCode, rule: InputRule, arr: np.ndarray, current: Callable[[], dict[str, Shape]]
) -> VinoserveError:
    shown = current().get(rule.name, rule.accepted)
    return VinoserveError(
        code, f"Expected: {format_shape(shown)}; Actual: {format_shape(arr.shape)}; input name: {rule.alias}"
    )
