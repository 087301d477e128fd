"""Requests built by hand (not by the server's code), the project's own stubs, and error catchers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import grpc
import numpy as np
import pytest

from vinoserve.protocol.generated.tensorflow.core.framework import tensor_pb2, types_pb2
from vinoserve.protocol.generated.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from .server import RunningServer

# TF Serving DataType numbers of the dtypes the hand-built requests carry.
_DT = {np.float32: types_pb2.DT_FLOAT, np.int32: types_pb2.DT_INT32}


def dtype_number(number: int) -> types_pb2.DataType:
    """A ``TensorProto.dtype`` value from a bare number, known or not (hostile requests send both)."""
    return cast(types_pb2.DataType, number)


def tfs_request(
    inputs: Mapping[str, np.ndarray | tensor_pb2.TensorProto], model: str = "m", version: int | None = None
) -> predict_pb2.PredictRequest:
    """A TF Serving PredictRequest: arrays (FP32/I32) go into ``tensor_content``; TensorProtos as given."""
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    if version is not None:
        req.model_spec.version.value = version
    for name, value in inputs.items():
        t = req.inputs[name]
        if isinstance(value, tensor_pb2.TensorProto):
            t.CopyFrom(value)
            continue
        t.dtype = _DT[np.asarray(value).dtype.type]
        for d in value.shape:
            t.tensor_shape.dim.add().size = d
        t.tensor_content = value.tobytes()
    return req


def predict_raw(
    server: RunningServer,
    inputs: Mapping[str, np.ndarray],
    model: str = "m",
    version: int | None = None,
    timeout: float = 60,
) -> predict_pb2.PredictResponse:
    """TF Serving Predict with the project's own stubs on a fresh channel; raises grpc.RpcError."""
    req = tfs_request(inputs, model, version)
    with grpc.insecure_channel(server.grpc_address) as ch:
        resp: predict_pb2.PredictResponse = prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(
            req, timeout=timeout
        )
    return resp


def out_array(resp: predict_pb2.PredictResponse, name: str) -> np.ndarray:
    """An FP32 output of a Predict response (``tensor_content``) as an array."""
    t = resp.outputs[name]
    return np.frombuffer(t.tensor_content, np.float32).reshape([d.size for d in t.tensor_shape.dim])


def rpc_error(fn: Callable[..., Any], *args: Any, **kw: Any) -> grpc.RpcError:
    """The grpc.RpcError that ``fn(*args, **kw)`` must raise."""
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kw)
    return info.value
