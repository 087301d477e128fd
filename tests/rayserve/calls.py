"""Requests made with stock clients, the same against Ray Serve's proxies and the standalone server.

Each returns plain JSON-able values, so results from inside the cluster's namespace compare with
results from a standalone server in the test process.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import requests

from vinoserve.protocol.generated.tensorflow_serving.apis import prediction_service_pb2_grpc

from ..helpers.clients import tfs_request

MODEL, INPUT, OUTPUT = "m", "b", "y"
# Batch 3 against the [1,10] model needs --batch_size auto; integers are exact in f32: y = 2x + 1.
X = np.arange(30, dtype=np.float32).reshape(3, 10)
EXPECTED = (X * 2 + 1).tolist()
NODE_HEADER = "X-Vinoserve-Node"
NODE_METADATA = "vinoserve-node"


def infer_all(http_port: int, grpc_port: int) -> dict[str, Any]:
    """One inference with each stock client: tritonclient (HTTP, gRPC), ovmsclient (gRPC, HTTP)."""
    import ovmsclient
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    out: dict[str, Any] = {}
    hc = thttp.InferenceServerClient(f"127.0.0.1:{http_port}", network_timeout=60)
    hin = thttp.InferInput(INPUT, list(X.shape), "FP32")
    hin.set_data_from_numpy(X, binary_data=True)
    out["triton_http"] = hc.infer(MODEL, [hin]).as_numpy(OUTPUT).tolist()
    out["triton_http_ready"] = hc.is_model_ready(MODEL)
    hc.close()
    gc = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    gin = tgrpc.InferInput(INPUT, list(X.shape), "FP32")
    gin.set_data_from_numpy(X)
    out["triton_grpc"] = gc.infer(MODEL, [gin], client_timeout=60).as_numpy(OUTPUT).tolist()
    out["triton_grpc_ready"] = gc.is_model_ready(MODEL)
    out["triton_grpc_inputs"] = [i.name for i in gc.get_model_metadata(MODEL).inputs]
    gc.close()
    out["ovms_grpc"] = ovmsclient.make_grpc_client(f"127.0.0.1:{grpc_port}").predict({INPUT: X}, MODEL).tolist()
    out["ovms_http"] = ovmsclient.make_http_client(f"127.0.0.1:{http_port}").predict({INPUT: X}, MODEL).tolist()
    status = ovmsclient.make_grpc_client(f"127.0.0.1:{grpc_port}").get_model_status(MODEL)
    out["ovms_grpc_status"] = {str(k): v["state"] for k, v in status.items()}
    return out


def serving_nodes(http_port: int, grpc_port: int, count: int) -> list[str]:
    """The node named by each of ``count`` REST infers and ``count`` TF Serving Predicts."""
    nodes = []
    tensor = {"name": INPUT, "shape": list(X.shape), "datatype": "FP32", "data": X.ravel().tolist()}
    body: dict[str, Any] = {"inputs": [tensor]}
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(count):
            r = requests.post(f"http://127.0.0.1:{http_port}/v2/models/{MODEL}/infer", json=body, timeout=60)
            assert r.json()["outputs"][0]["data"] == (X.ravel() * 2 + 1).tolist(), r.text
            nodes.append(r.headers[NODE_HEADER])
            _, call = stub.Predict.with_call(tfs_request({INPUT: X}, MODEL), timeout=60)
            nodes.extend(v for k, v in call.trailing_metadata() if k == NODE_METADATA)
    return nodes


def _grpc_error(fn: Any) -> list[str]:
    try:
        fn()
    except grpc.RpcError as err:
        return [err.code().name, err.details() or ""]
    return ["OK", ""]


def errors(http_port: int, grpc_port: int, limit_bytes: int) -> dict[str, Any]:
    """A client's mistakes over each API: the code and text each gets."""
    import tritonclient.grpc as tgrpc
    from tritonclient.utils import InferenceServerException

    out: dict[str, Any] = {}
    gc = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    gin = tgrpc.InferInput(INPUT, list(X.shape), "FP32")
    gin.set_data_from_numpy(X)
    try:
        gc.infer("nope", [gin], client_timeout=60)
        out["triton_grpc_unknown_model"] = ["OK", ""]
    except InferenceServerException as exc:
        out["triton_grpc_unknown_model"] = [exc.status(), exc.message()]
    gc.close()
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        out["tfs_missing_input"] = _grpc_error(lambda: stub.Predict(tfs_request({"zz": X}, MODEL), timeout=60))
        big = np.zeros((1, limit_bytes // 4 + 16), dtype=np.float32)
        out["tfs_too_large"] = _grpc_error(lambda: stub.Predict(tfs_request({INPUT: big}, MODEL), timeout=60))
    base = f"http://127.0.0.1:{http_port}"
    for key, method, path, body in [
        ("v2_unknown_model", "POST", "/v2/models/nope/infer", b'{"inputs": []}'),
        ("v2_bad_json", "POST", f"/v2/models/{MODEL}/infer", b"{not json"),
        ("v2_too_large", "POST", f"/v2/models/{MODEL}/infer", b" " * (limit_bytes + 1)),
        ("v1_unknown_model", "POST", "/v1/models/nope:predict", b'{"instances": [[1]]}'),
        ("unknown_path", "GET", "/v3/nothing", b""),
        ("wrong_method", "GET", f"/v2/models/{MODEL}/infer", b""),
    ]:
        r = requests.request(method, base + path, data=body, timeout=60)
        out[key] = [r.status_code, r.json()]
    return out
