"""Fuzzing the REST decoders (TF Serving predict, KServe infer with JSON and binary data) of one real server.

Bodies are built as JSON with mutated types, shapes, sizes, names and nesting, KServe binary
payloads with mutated ``binary_data_size`` and ``Inference-Header-Content-Length``; then sent as
they are or mutated byte-wise. Every answer must be 200 or a client error with a JSON ``error``;
never 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from ..helpers.server import RunningServer
from .common import FUZZ, HTTP_ALLOWED, MODELS, NAMES, TALLY, dims, mutated, start_server

pytestmark = pytest.mark.fuzz

HEADER = "Inference-Header-Content-Length"
KSERVE_TYPES = ["FP32", "FP64", "FP16", "BF16", "INT8", "INT32", "INT64", "UINT8", "UINT64", "BOOL", "BYTES", "X"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.fixed_dictionaries({"b64": st.sampled_from(["AP8=", "!!", "", "YQ=="])})
)
# JSON values: nested lists (ragged or not) and objects of scalars
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.sampled_from(NAMES), inner, max_size=3),
    max_leaves=40,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    s = start_server(tmp_path_factory.mktemp("fuzz-rest"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def _send(
    session: requests.Session, server: RunningServer, path: str, body: bytes, headers: dict[str, str] | None = None
) -> None:
    r = session.post(server.rest_url + path, data=body, headers=headers, timeout=60)
    TALLY[f"rest {path.rsplit('/', 2)[-1].split(':')[-1]} {r.status_code}"] += 1
    assert r.status_code in HTTP_ALLOWED, (r.status_code, r.text[:300], body[:300])
    if r.status_code != 200:
        assert isinstance(r.json().get("error"), str), r.text[:300]


def _nested(depth: int, leaf: bytes) -> bytes:
    return b"[" * depth + leaf + b"]" * depth


@st.composite
def tensor_values(draw: st.DrawFn) -> Any:
    """A plausible tensor (numbers of a shape), a mutated one, or any JSON value."""
    kind = draw(st.sampled_from(["tensor", "typed", "any"]))
    if kind == "any":
        return draw(json_values)
    shape = draw(st.sampled_from([(1, 10), (1, 4), (2, 10), (3,), (1, 0), (0,)]))
    count = int(np.prod(shape))
    leaf = st.integers(-300, 300) | st.floats(-1e6, 1e6) if kind == "tensor" else scalars
    flat = draw(st.lists(leaf, min_size=count, max_size=count))
    return np.array(flat, dtype=object).reshape(shape).tolist() if count else [[]] * shape[0]


@st.composite
def tfs_bodies(draw: st.DrawFn) -> bytes:
    form = draw(st.sampled_from(["instances", "inputs", "named-rows", "named-columns", "both", "neither", "deep"]))
    value = draw(tensor_values())
    if form == "deep":
        return b'{"instances": %s}' % _nested(draw(st.sampled_from([62, 63, 64, 65, 200, 1000])), b"1")
    doc: Any = {
        "instances": {"instances": value},
        "inputs": {"inputs": value},
        "named-rows": {"instances": [{draw(st.sampled_from(NAMES)): value}]},
        "named-columns": {"inputs": {draw(st.sampled_from(NAMES)): value}},
        "both": {"instances": value, "inputs": value},
        "neither": {"signature_name": value},
    }[form]
    return draw(mutated(json.dumps(doc).encode()))


@st.composite
def kserve_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A KServe infer body (JSON data, or a JSON header and binary data) and its headers."""
    inputs, blobs = [], []
    for _ in range(draw(st.integers(0, 3))):
        tensor: dict[str, Any] = {
            "name": draw(st.sampled_from(NAMES)),
            "datatype": draw(st.sampled_from(KSERVE_TYPES) | scalars),
            "shape": draw(dims() | st.lists(scalars, max_size=3)),
        }
        if draw(st.booleans()):
            blob = draw(st.binary(max_size=80))
            size = st.sampled_from([len(blob), len(blob) + 1, 0, -1]) | scalars
            tensor["parameters"] = {"binary_data_size": draw(size)}
            blobs.append(blob)
        else:
            tensor["data"] = draw(tensor_values())
        inputs.append(tensor)
    doc: dict[str, Any] = {"inputs": inputs if draw(st.integers(0, 9)) else draw(json_values)}
    if draw(st.booleans()):
        doc["outputs"] = [
            {
                "name": draw(st.sampled_from(["y", "nope"]) | scalars),
                "parameters": {"binary_data": draw(st.booleans() | scalars)},
            }
        ]
    if draw(st.booleans()):
        doc["id"] = draw(st.text(max_size=4) | scalars)
    header = json.dumps(doc).encode()
    body = draw(mutated(header + b"".join(blobs)))
    headers = {}
    if bool(blobs) or draw(st.booleans()):
        length = draw(st.sampled_from([len(header), len(header) - 1, len(body) + 1, 0, -5]))
        odd = st.sampled_from(["x", "1e3", "7 ", "+7", "0x10"])
        headers[HEADER] = draw(odd) if draw(st.integers(0, 4)) == 0 else str(length)
    return body, headers


@st.composite
def tfs_near_valid(draw: st.DrawFn) -> bytes:
    """A valid row predict of aff ([1,10] numbers) with one value, the batch or the nesting changed."""
    row: list[Any] = draw(st.lists(st.integers(-100, 100) | st.floats(-1e3, 1e3), min_size=10, max_size=10))
    change = draw(st.sampled_from(["none", "value", "length", "batch", "nest"]))
    if change == "value":
        row[draw(st.integers(0, 9))] = draw(scalars)
    elif change == "length":
        row = row[: draw(st.integers(0, 9))]
    instances = [row] * (draw(st.integers(0, 3)) if change == "batch" else 1)
    body = json.dumps({"instances": instances}).encode()
    if change == "nest":
        body = b'{"instances": %s}' % _nested(draw(st.integers(1, 70)), json.dumps(row).encode())
    return draw(mutated(body))


@st.composite
def kserve_near_valid(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A valid infer of aff (FP32 [1,10], JSON or binary) with the shape, size, header length or a value changed."""
    x = np.arange(10, dtype=np.float32)
    change = draw(st.sampled_from(["none", "shape", "size", "length", "value"]))
    shape = draw(dims()) if change == "shape" else [1, 10]
    tensor: dict[str, Any] = {"name": "b", "datatype": "FP32", "shape": shape}
    if draw(st.booleans()):
        tensor["data"] = x.tolist()
        if change == "value":
            tensor["data"][draw(st.integers(0, 9))] = draw(scalars)
        return draw(mutated(json.dumps({"inputs": [tensor]}).encode())), {}
    blob = x.tobytes()[: draw(st.integers(0, 39))] if change == "size" else x.tobytes()
    tensor["parameters"] = {"binary_data_size": len(blob)}
    header = json.dumps({"inputs": [tensor], "outputs": [{"name": "y", "parameters": {"binary_data": True}}]})
    length = len(header) + (draw(st.integers(-20, 20)) if change == "length" else 0)
    return draw(mutated(header.encode() + blob)), {HEADER: str(length)}


@FUZZ
@given(model=st.sampled_from([*MODELS, "nope"]), body=tfs_bodies())
def test_tfs_predict(session: requests.Session, server: RunningServer, model: str, body: bytes) -> None:
    _send(session, server, f"/v1/models/{model}:predict", body)


@FUZZ
@given(body=tfs_near_valid())
def test_tfs_predict_near_valid(session: requests.Session, server: RunningServer, body: bytes) -> None:
    _send(session, server, "/v1/models/aff:predict", body)


@FUZZ
@given(model=st.sampled_from([*MODELS, "nope"]), request=kserve_bodies())
def test_kserve_infer(
    session: requests.Session, server: RunningServer, model: str, request: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = request
    _send(session, server, f"/v2/models/{model}/infer", body, headers)


@FUZZ
@given(request=kserve_near_valid())
def test_kserve_infer_near_valid(
    session: requests.Session, server: RunningServer, request: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = request
    _send(session, server, "/v2/models/aff/infer", body, headers)


@FUZZ
@given(
    path=st.sampled_from(["/v1/models/aff:predict", "/v2/models/aff/infer", "/v1/models/str:predict"]),
    body=st.binary(max_size=512),
)
def test_random_bytes(session: requests.Session, server: RunningServer, path: str, body: bytes) -> None:
    _send(session, server, path, body)


def test_server_still_answers_correctly(session: requests.Session, server: RunningServer) -> None:
    """After the fuzzing: a valid request of each API gets the right answer."""
    x = list(range(10))
    r = session.post(server.rest_url + "/v1/models/aff:predict", json={"instances": [x]}, timeout=60)
    assert r.status_code == 200 and r.json() == {"predictions": [[2.0 * v + 1 for v in x]]}, r.text
    body: dict[str, Any] = {"inputs": [{"name": "b", "datatype": "FP32", "shape": [1, 10], "data": x}]}
    r = session.post(server.rest_url + "/v2/models/aff/infer", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [2.0 * v + 1 for v in x], r.text
    sent = {k: v for k, v in TALLY.items() if k.startswith("rest")}
    print(f"\nREST fuzz: {sum(sent.values())} requests: {dict(sorted(sent.items()))}")
