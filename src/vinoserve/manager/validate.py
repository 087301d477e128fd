"""Check a request's tensors against the rules of a model version (SPEC §6 texts, OVMS order)."""

from __future__ import annotations

import numpy as np

from ..errors import StatusCode, VinoserveError
from ..types import Shape, format_shape, precision_of
from .setup import InputRule


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


def check_request(inputs: dict[str, np.ndarray], rules: dict[str, InputRule], alias_in: dict[str, str],
                  current: dict[str, Shape]) -> dict[str, np.ndarray]:
    """Validate and return the arrays keyed by real input name; raise the first SPEC error found."""
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
        where = f"input name: {rule.alias}"
        if not _precision_ok(rule, arr):
            raise VinoserveError(StatusCode.INVALID_PRECISION, f"Expected: {rule.precision.name}; "
                                 f"Actual: {_actual_precision(arr)}; {where}")
        if rule.any_rank:
            continue
        shown = current.get(rule.name, rule.accepted)
        if arr.ndim != len(rule.accepted):
            raise VinoserveError(StatusCode.INVALID_RANK, f"Expected: {format_shape(shown)}; "
                                 f"Actual: {format_shape(arr.shape)}; {where}")
        bi = rule.batch_index
        if bi >= 0 and bi not in rule.auto_dims and not rule.accepted[bi].accepts(arr.shape[bi]):
            raise VinoserveError(StatusCode.INVALID_BATCH, f"Expected: {rule.accepted[bi]}; "
                                 f"Actual: {arr.shape[bi]}; {where}")
        for i, n in enumerate(arr.shape):
            if i != bi and i not in rule.auto_dims and not rule.accepted[i].accepts(n):
                raise VinoserveError(StatusCode.INVALID_SHAPE, f"Expected: {format_shape(shown)}; "
                                     f"Actual: {format_shape(arr.shape)}; {where}")
    return real
