"""TF Serving REST predict bodies <-> numpy: row (``instances``) and column (``inputs``) formats.

JSON numbers become the model input's own dtype (read from the model metadata), so ``[1, 2]``
feeds an FP32 input as float32 without a precision error. Types are strict, as in OVMS: ``null``,
``true`` and ``false`` feed no numeric input, and integers must fit the input's dtype
(:mod:`~vinoserve.protocol.rest.jsonarray`).

``{"b64": "..."}`` values are decoded to bytes and make a STRING (BYTES) tensor. vinoserve does
not decode images: a b64 value sent to a numeric input is refused by the data plane's precision
check ("Invalid input precision - Expected: FP32; Actual: STRING; input name: b"), which tells the
client plainly what to change, instead of guessing an image layout and colour order as OVMS does.
Plain JSON strings feed STRING inputs as UTF-8 bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.rest.jsonarray import json_array
from vinoserve.protocol.rest.jsoncodec import dumps, loads
from vinoserve.types import Precision

_BAD = StatusCode.JSON_INVALID


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def parse_predict(body: bytes, precisions: dict[str, Precision]) -> tuple[dict[str, np.ndarray], bool]:
    """Decode a predict body; returns (arrays by input name, True for the row format).

    ``precisions`` are the model's inputs in order; an unnamed value goes to the only input.
    """
    try:
        doc = loads(body)
    except ValueError as exc:  # includes bad UTF-8 and nesting deeper than 64 levels
        raise VinoserveError(_BAD, str(exc)) from None
    if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
        raise VinoserveError(StatusCode.JSON_FORMAT)
    if "instances" in doc:
        return _rows(doc["instances"], precisions), True
    return _columns(doc["inputs"], precisions), False


def _only_input(precisions: dict[str, Precision]) -> str:
    if len(precisions) != 1:
        # unnamed data can only feed a single-input model
        raise VinoserveError(StatusCode.INVALID_INPUT_COUNT, f"Expected: {len(precisions)}; Actual: 1")
    return next(iter(precisions))


def _named(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _rows(instances: Any, precisions: dict[str, Precision]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise VinoserveError(_BAD)
    named = [_named(i) for i in instances] if dict in set(map(type, instances)) else [False]
    if not any(named):
        name = _only_input(precisions)
        return {name: json_array(instances, precisions[name], name, b64=True)}
    if not all(named):
        raise VinoserveError(_BAD)
    keys = set(instances[0])
    if any(set(i) != keys for i in instances[1:]):
        raise VinoserveError(_BAD)
    return {k: json_array([i[k] for i in instances], precisions.get(k), k, b64=True) for k in instances[0]}


def _columns(inputs: Any, precisions: dict[str, Precision]) -> dict[str, np.ndarray]:
    if _named(inputs):
        return {k: json_array(v, precisions.get(k), k, b64=True) for k, v in inputs.items()}
    name = _only_input(precisions)
    return {name: json_array(inputs, precisions[name], name, b64=True)}


def encode_predict(outputs: dict[str, np.ndarray], row: bool) -> bytes:
    """``{"predictions": ...}`` (row) or ``{"outputs": ...}`` (column) for the outputs.

    Arrays go to the JSON writer as they are (a batch-first array is already the list of
    instances); STRING elements are written as text, or ``{"b64": ...}`` when not UTF-8.
    """
    if not row:
        body: Any = {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
    elif len(outputs) == 1:
        body = {"predictions": next(iter(outputs.values()))}
    else:
        batches = {v.shape[0] if v.ndim else -1 for v in outputs.values()}
        if len(batches) != 1 or -1 in batches:
            raise VinoserveError(
                StatusCode.INVALID_ARGUMENT, "outputs do not share a batch dimension; use the column format (inputs)"
            )
        body = {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(batches.pop())]}
    return dumps(body)
