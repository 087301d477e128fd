"""Warm-up of a model version (SPEC §7.5): which shapes to run on zeros before it reports AVAILABLE.

Two sources, in this order: the configured ``warmup_batch_sizes`` (applied to the batch dimension of
every input, the ``N`` of its layout, as the variant keys are), then the shapes the version being
replaced served most (its top variant keys). What is done with a shape depends on the version:

- shapes fixed at load: the one compiled variant is run once at its own shape, whatever the sizes;
- ``-1`` or ranges: one inference at each size (OpenVINO's dynamic kernels are prepared on first use);
- ``auto``: each size is compiled as a shape variant and run, at most ``shape_variants`` of them (more
  would only evict each other); configured sizes first, then the carried shapes fill what is left.

A shape needs every other dimension of every input static; one that is not (a ``-1`` spatial
dimension) cannot be made up and is skipped with a warning. A shape the model cannot take fails only
its own warm-up step (logged), never the load.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..scheduling.variants import VariantKey
from .inputs import InputRule

log = logging.getLogger(__name__)

# One concrete shape per input (real name), in the request's layout.
Shapes = dict[str, tuple[int, ...]]


def plan(
    rules: dict[str, InputRule],
    sizes: Sequence[int],
    carried: Sequence[VariantKey],
    *,
    auto: bool,
    capacity: int,
    who: str,
) -> list[Shapes]:
    """The shapes to warm, in order, without repeats; ``who`` names the version in logs."""
    if not sizes and not carried:
        return []
    if not auto and all(d.is_static for r in rules.values() for d in r.accepted):
        return [{n: tuple(d.lo for d in r.accepted) for n, r in rules.items()}]  # the one compiled shape
    configured = [s for s in (_with_batch(rules, n, who) for n in sizes) if s is not None]
    if auto and len(configured) > capacity:
        log.warning(
            "%s: %d warm-up batch sizes but %d shape variants: warming the first %d only",
            who,
            len(configured),
            capacity,
            capacity,
        )
    out: list[Shapes] = []
    for shapes in (*configured, *(s for s in (_from_key(rules, k) for k in carried) if s is not None)):
        if shapes not in out:
            out.append(shapes)
    return out[:capacity] if auto else out


def _with_batch(rules: dict[str, InputRule], size: int, who: str) -> Shapes | None:
    out: Shapes = {}
    for name, rule in rules.items():
        dims = []
        for i, d in enumerate(rule.accepted):
            if i == rule.batch_index:
                dims.append(size)
            elif d.is_static:
                dims.append(d.lo)
            else:
                log.warning(
                    "%s: no warm-up at batch size %d: input %s has the non-batch dimension %s", who, size, rule.alias, d
                )
                return None
        out[name] = tuple(dims)
    return out


def _from_key(rules: dict[str, InputRule], key: VariantKey) -> Shapes | None:
    """A carried variant key as request shapes, if it names this version's inputs and is concrete."""
    shapes = dict(key)
    if set(shapes) != set(rules) or any(n < 0 for s in shapes.values() for n in s):
        return None  # another model's inputs, or a key with dynamic dimensions
    return shapes


def zeros(rules: dict[str, InputRule], shapes: Shapes) -> dict[str, np.ndarray]:
    """Inputs of ``shapes`` by client-visible name: zeros of each input's type, strings empty."""
    out = {}
    for name, shape in shapes.items():
        rule = rules[name]
        if rule.precision.name == "STRING":
            out[rule.alias] = np.full(shape, b"", dtype=object)
        else:
            out[rule.alias] = np.zeros(shape, dtype=rule.precision.np_dtype)
    return out
