"""KServe v2 through a real server with requests built by hand: malformed binary and JSON REST bodies
get 400 and the SPEC §6 text; over gRPC, typed contents are read, a wrong raw count is refused and an unknown
model is not ready (NOT_FOUND)."""

from __future__ import annotations

import json
import struct
from typing import Any

import grpc
import numpy as np
import requests

from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2 as pb
from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2_grpc as pb_grpc

from ...helpers.clients import rpc_error
from ...helpers.server import RunningServer


def _post(server: RunningServer, body: bytes, header_len: int | None = None, model: str = "aff") -> requests.Response:
    headers = {} if header_len is None else {"Inference-Header-Content-Length": str(header_len)}
    return requests.post(f"{server.rest_url}/v2/models/{model}/infer", data=body, headers=headers, timeout=30)


def test_binary_payload_errors_are_400(server: RunningServer) -> None:
    def header(size: int, shape: list[int] | None = None, dt: str = "FP32") -> bytes:
        return json.dumps(
            {
                "inputs": [
                    {"name": "b", "shape": shape or [1, 10], "datatype": dt, "parameters": {"binary_data_size": size}}
                ]
            }
        ).encode()

    h = header(40)
    cases = {
        "truncated": (
            h + b"\0" * 36,
            len(h),
            "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 36 bytes; input name: b",
        ),
        "size vs shape": (
            header(36) + b"\0" * 36,
            len(header(36)),
            "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 36 bytes; input name: b",
        ),
        "leftover": (h + b"\0" * 44, len(h), "Invalid content size of tensor proto - 4 bytes"),
        "header too long": (h, len(h) + 5, "Invalid argument - Inference-Header-Content-Length"),
        "no header length": (h, None, "Invalid content size of tensor proto - Expected: 40 bytes; Actual: 0 bytes"),
        "negative dim": (
            header(40, [-1, 10]) + b"\0" * 40,
            len(header(40, [-1, 10])),
            "Invalid input shape - Negative or zero dimension size is not acceptable: (-1,10)",
        ),
        "bytes truncated": (
            header(9, [2], "BYTES") + struct.pack("<I", 5) + b"abcde",
            len(header(9, [2], "BYTES")),
            "Invalid number of values in tensor proto container - Expected: 2; Actual: 1",
        ),
        "bytes overrun": (
            header(7, [1], "BYTES") + struct.pack("<I", 50) + b"abc",
            len(header(7, [1], "BYTES")),
            "Invalid content size of tensor proto - BYTES element 0 declares 50 bytes",
        ),
        "bad datatype": (
            header(40, dt="FP33") + b"\0" * 40,
            len(header(40, dt="FP33")),
            "Invalid input precision - Unsupported precision: FP33",
        ),
    }
    for what, (body, hl, text) in cases.items():
        r = _post(server, body, hl, model="str" if "bytes" in what else "aff")
        assert r.status_code == 400, (what, r.text)
        assert r.json()["error"].startswith(text), (what, r.text)
    r = _post(server, h, "x")  # type: ignore[arg-type]
    assert r.status_code == 400 and "must be an integer" in r.json()["error"]


def test_json_request_errors_are_400(server: RunningServer) -> None:
    def body(data: Any, shape: list[int] | None = None) -> bytes:
        return json.dumps(
            {"inputs": [{"name": "b", "shape": shape or [1, 10], "datatype": "FP32", "data": data}]}
        ).encode()

    cases = [
        (b"{not json", "Could not parse instance content. Not valid ndarray detected"),
        (b'{"inputs": 3}', "Invalid argument - the request needs an inputs list"),
        (body(list(range(9))), "Invalid number of values in tensor proto container - Expected: 10; Actual: 9"),
        (body([[1, 2], [3]], [1, 3]), "Could not parse instance content"),
        (body(["x"] * 10), "Could not parse instance content"),
        (body(list(range(10)), [10**6, 10**6]), "Invalid number of values in tensor proto container"),
        (body(list(range(10)), [10**12, 10**12]), "Invalid input shape - the element count of"),
    ]
    for raw, text in cases:
        r = _post(server, raw)
        assert r.status_code == 400, r.text
        assert r.json()["error"].startswith(text), r.text
    ok = _post(server, body([list(range(5)), list(range(5, 10))]))  # nested data is flattened
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [2 * i + 1 for i in range(10)]


def test_grpc_typed_contents_and_raw_count(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        req = pb.ModelInferRequest(model_name="aff", id="t")
        t = req.inputs.add(name="b", datatype="FP32", shape=[1, 10])
        t.contents.fp32_contents.extend(range(10))
        res = infer(req, timeout=30)
        assert res.id == "t" and res.model_version == "1"
        y = np.frombuffer(res.raw_output_contents[0], np.float32)
        np.testing.assert_array_equal(y, np.arange(10) * 2 + 1)
        del t.contents.fp32_contents[:]
        t.contents.fp32_contents.extend(range(9))
        err = rpc_error(infer, req, timeout=30)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == (
            "Invalid number of values in tensor proto container - Expected: 10; Actual: 9; input name: b"
        )
        req.raw_input_contents.extend([b"\0" * 40, b"\0" * 40])
        err = rpc_error(infer, req, timeout=30)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "one per input" in (err.details() or "")
        ready = pb_grpc.GRPCInferenceServiceStub(channel).ModelReady
        err = rpc_error(ready, pb.ModelReadyRequest(name="zz"), timeout=30)
        assert err.code() == grpc.StatusCode.NOT_FOUND
