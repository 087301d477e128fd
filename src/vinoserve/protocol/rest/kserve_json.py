"""KServe v2 REST infer bodies: JSON tensors and the binary tensor extension.

A binary request is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the
raw data of each input that declares ``parameters.binary_data_size``, in input order. Every
length is checked against the bytes present, so truncated payloads, over-long headers and
leftover bytes are 400 errors, never 500.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.kserve_tensors import (
    checked_shape,
    datatype_of,
    from_raw,
    from_shm,
    precision_for,
    shm_ref,
    to_raw,
    to_shm,
    to_values,
)
from vinoserve.protocol.rest.jsonarray import json_array
from vinoserve.protocol.rest.jsoncodec import dumps, loads
from vinoserve.protocol.shapes import content_size_error, value_count_error
from vinoserve.shm import Lease, ShmRef
from vinoserve.types import InferResponse, Precision

HEADER_LENGTH = "Inference-Header-Content-Length"


def _invalid(text: str) -> VinoserveError:
    return VinoserveError(StatusCode.INVALID_ARGUMENT, text)


@dataclass(slots=True)
class ParsedInfer:
    """The decoded request: inputs, requested outputs, which outputs go back as binary, the id."""

    inputs: dict[str, np.ndarray]
    outputs: list[str] | None
    id: str = ""
    binary_default: bool = False
    binary: dict[str, bool] = field(default_factory=dict)
    # inputs and outputs in shared memory; inputs are read once a lease holds their regions
    shm_inputs: dict[str, tuple[ShmRef, Precision, tuple[int, ...]]] = field(default_factory=dict)
    shm_outputs: dict[str, ShmRef] = field(default_factory=dict)

    def wants_binary(self, name: str) -> bool:
        """Per-output ``binary_data`` wins over the request's ``binary_data_output``."""
        return self.binary.get(name, self.binary_default)


def _split(body: bytes, header_length: str | None) -> tuple[bytes | memoryview, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    try:
        n = int(header_length)
    except ValueError:
        raise _invalid(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if n < 0 or n > len(body):
        raise _invalid(f"{HEADER_LENGTH} {n} does not fit a body of {len(body)} bytes")
    view = memoryview(body)
    return view[:n], view[n:]


def _params(obj: dict[str, Any]) -> dict[str, Any]:
    params = obj.get("parameters") or {}
    if not isinstance(params, dict):
        raise _invalid("parameters must be an object")
    return params


def _typed(obj: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    """``obj[key]`` when it has the JSON type the protocol gives it (``true`` is no string), else 400."""
    value = obj.get(key)
    if value is None:
        return default
    if type(value) is not kind:
        raise _invalid(f"{key} must be a {'boolean' if kind is bool else 'string'}")
    return value


def _shm_input(tensor: Any) -> tuple[str, ShmRef, Precision, tuple[int, ...]] | None:
    """An input whose parameters name shared memory: its name, span, precision and shape; else None."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("parameters"), dict):
        return None
    name = tensor.get("name")
    params = tensor["parameters"]
    ref = shm_ref(params, f"input {name}")
    if ref is None:
        return None
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str) or not isinstance(shape, list):
        raise _invalid("every input needs a name, a datatype and a shape")
    if "data" in tensor or "binary_data_size" in params:
        raise _invalid(f"input {name} is in shared memory and must not carry data too")
    precision = precision_for(datatype, name)
    return name, ref, precision, checked_shape(shape, precision, name)


def _input(tensor: Any, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise _invalid("every input needs a name, a datatype and a shape")
    name = tensor["name"]
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    if not isinstance(datatype, str) or not isinstance(shape, list):
        raise _invalid(f"input {name} needs a datatype and a shape")
    precision = precision_for(datatype, name)
    dims = checked_shape(shape, precision, name)
    size = _params(tensor).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _invalid(f"binary_data_size of input {name} must be a non-negative integer")
        if offset + size > len(binary):
            raise content_size_error(size, len(binary) - offset, name)
        return name, from_raw(binary[offset : offset + size], precision, dims, name), offset + size
    data = tensor.get("data")
    if data is None:
        raise _invalid(f"input {name} has neither data nor parameters.binary_data_size")
    array = json_array(data if isinstance(data, list) else [data], precision, name)  # flat or nested
    count = math.prod(dims)
    if array.size != count:
        raise value_count_error(count, array.size, name)
    return name, array.reshape(dims), offset


def parse_infer(body: bytes, header_length: str | None) -> ParsedInfer:
    """Decode an infer request body (JSON, or JSON header plus binary data)."""
    header, binary = _split(body, header_length)
    try:
        doc = loads(header)
    except ValueError as exc:  # includes bad UTF-8 and nesting deeper than 64 levels
        raise VinoserveError(StatusCode.JSON_INVALID, str(exc)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise _invalid("the request needs an inputs list")
    inputs: dict[str, np.ndarray] = {}
    shm_inputs: dict[str, tuple[ShmRef, Precision, tuple[int, ...]]] = {}
    offset = 0
    for tensor in doc["inputs"]:
        shm = _shm_input(tensor)
        if shm is not None:
            name = shm[0]
            if name in inputs or name in shm_inputs:
                raise _invalid(f"input {name} is given twice")
            shm_inputs[name] = shm[1:]
            continue
        name, array, offset = _input(tensor, binary, offset)
        if name in inputs or name in shm_inputs:
            raise _invalid(f"input {name} is given twice")
        inputs[name] = array
    if offset != len(binary):
        raise VinoserveError(
            StatusCode.INVALID_CONTENT_SIZE,
            f"{len(binary) - offset} bytes of binary data follow the inputs' binary_data_size total",
        )
    parsed = ParsedInfer(
        inputs,
        None,
        _typed(doc, "id", str, ""),
        _typed(_params(doc), "binary_data_output", bool, False),
        shm_inputs=shm_inputs,
    )
    requested = doc.get("outputs")
    if requested is not None:
        if not isinstance(requested, list) or not all(
            isinstance(o, dict) and type(o.get("name")) is str for o in requested
        ):
            raise _invalid("outputs must be a list of objects with a name")
        parsed.outputs = [o["name"] for o in requested] or None
        for o in requested:
            flag = _typed(_params(o), "binary_data", bool, None)
            if flag is not None:
                parsed.binary[o["name"]] = flag
            ref = shm_ref(_params(o), f"output {o['name']}")
            if ref is not None:
                parsed.shm_outputs[o["name"]] = ref
    return parsed


def use_shm(parsed: ParsedInfer, lease: Lease) -> None:
    """Read the shared memory inputs and hold the outputs' regions, under ``lease`` (on the event loop)."""
    for name, (ref, precision, dims) in parsed.shm_inputs.items():
        parsed.inputs[name] = from_shm(lease, ref, precision, dims, name)
    for name, ref in parsed.shm_outputs.items():
        lease.add_output(name, ref)


def encode_infer(result: InferResponse, parsed: ParsedInfer, lease: Lease | None = None) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when binary outputs follow it.

    Outputs that ``lease`` sends to shared memory are written there and answered with their
    metadata only, as Triton does.
    """
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array in result.outputs.items():
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array), "shape": list(array.shape)}
        if lease is not None and name in lease.outputs:
            to_shm(lease, name, array)
        elif parsed.wants_binary(name):
            raw = to_raw(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = to_values(array)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": result.model_name, "model_version": str(result.model_version)}
    if parsed.id:
        doc["id"] = parsed.id
    doc["outputs"] = outputs
    header = dumps(doc)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
