"""Bare Python gRPC servers: the floors a Python gRPC model server is measured against.

``python benchmarks/echo_server.py PORT`` parses each TF Serving ``Predict`` or KServe
``ModelInfer`` request and answers with its input tensors as the outputs: the protobuf work every
such server does, and nothing else (no numpy, no model, no inference).

``python benchmarks/echo_server.py PORT MODEL_XML`` is the minimal OpenVINO server instead: it reads
the one FP32 input from ``tensor_content`` / ``raw_input_contents`` with ``np.frombuffer``, copies
it into one infer request, runs it on the event loop's thread (as vinoserve does for small models,
with the same CPU defaults) and answers the one output. No validation, no metrics, no error
handling: what a server costs that does nothing but run the model.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import grpc
import numpy as np

from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2 as kpb
from vinoserve.protocol.generated.tensorflow.core.framework import types_pb2
from vinoserve.protocol.generated.tensorflow_serving.apis import predict_pb2


async def predict(request: predict_pb2.PredictRequest, context: Any) -> predict_pb2.PredictResponse:
    """The request's inputs as outputs."""
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for name, tensor in request.inputs.items():
        response.outputs[name].CopyFrom(tensor)
    return response


async def model_infer(request: kpb.ModelInferRequest, context: Any) -> kpb.ModelInferResponse:
    """The request's inputs (and raw contents) as outputs."""
    response = kpb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
    for tensor in request.inputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
    response.raw_output_contents.extend(request.raw_input_contents)
    return response


class _Model:
    """One compiled model and one infer request, run inline."""

    def __init__(self, xml: str) -> None:
        import openvino as ov

        from vinoserve.runtime.openvino import CPU_DEFAULTS

        compiled = ov.Core().compile_model(xml, "CPU", {**CPU_DEFAULTS, "INFERENCE_PRECISION_HINT": "f32"})
        self.request = compiled.create_infer_request()
        self.input = self.request.get_input_tensor(0).data
        self.output_name = compiled.outputs[0].get_any_name()

    def run(self, data: bytes) -> np.ndarray:
        np.copyto(self.input, np.frombuffer(data, np.float32).reshape(self.input.shape))
        self.request.infer()
        return np.array(self.request.get_output_tensor(0).data, copy=True)

    async def predict(self, request: predict_pb2.PredictRequest, context: Any) -> predict_pb2.PredictResponse:
        y = self.run(next(iter(request.inputs.values())).tensor_content)
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        out = response.outputs[self.output_name]
        out.dtype = types_pb2.DT_FLOAT
        for d in y.shape:
            out.tensor_shape.dim.add().size = d
        out.tensor_content = y.tobytes()
        return response

    async def model_infer(self, request: kpb.ModelInferRequest, context: Any) -> kpb.ModelInferResponse:
        y = self.run(request.raw_input_contents[0])
        response = kpb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        response.outputs.add(name=self.output_name, datatype="FP32", shape=y.shape)
        response.raw_output_contents.append(y.tobytes())
        return response


class _Handlers(grpc.GenericRpcHandler):
    def __init__(self, model: _Model | None) -> None:
        self._predict = model.predict if model else predict
        self._infer = model.model_infer if model else model_infer

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        if method == "/tensorflow.serving.PredictionService/Predict":
            return grpc.unary_unary_rpc_method_handler(
                self._predict, predict_pb2.PredictRequest.FromString, predict_pb2.PredictResponse.SerializeToString
            )
        if method == "/inference.GRPCInferenceService/ModelInfer":
            return grpc.unary_unary_rpc_method_handler(
                self._infer, kpb.ModelInferRequest.FromString, kpb.ModelInferResponse.SerializeToString
            )
        return None


async def serve(port: int, model_xml: str | None = None) -> None:
    """Serve on 127.0.0.1:``port`` until killed; with ``model_xml``, run that model."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_Handlers(_Model(model_xml) if model_xml else None),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
