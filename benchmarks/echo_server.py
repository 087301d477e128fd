"""A bare Python gRPC echo server: the floor a Python gRPC model server is measured against.

``python benchmarks/echo_server.py PORT``. grpc.aio, as vinoserve; it parses each TF Serving
``Predict`` or KServe ``ModelInfer`` request and answers with its input tensors as the outputs: the
protobuf work every such server does, and nothing else (no numpy, no model, no inference).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import grpc

from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2 as kpb
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


class _Echo(grpc.GenericRpcHandler):
    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        if method == "/tensorflow.serving.PredictionService/Predict":
            return grpc.unary_unary_rpc_method_handler(
                predict, predict_pb2.PredictRequest.FromString, predict_pb2.PredictResponse.SerializeToString
            )
        if method == "/inference.GRPCInferenceService/ModelInfer":
            return grpc.unary_unary_rpc_method_handler(
                model_infer, kpb.ModelInferRequest.FromString, kpb.ModelInferResponse.SerializeToString
            )
        return None


async def serve(port: int) -> None:
    """Serve on 127.0.0.1:``port`` until killed."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_Echo(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
