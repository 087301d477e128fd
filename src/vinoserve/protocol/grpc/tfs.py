"""TF Serving gRPC servicers (``tensorflow.serving.PredictionService`` and ``ModelService``).

Each method parses the request, calls the data plane and encodes the answer; errors go
through the one gRPC error table.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from vinoserve.dataplane import DataPlane
from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from vinoserve.protocol.grpc.errors import abort, abort_unexpected
from vinoserve.protocol.grpc.guard import GuardedRegistry
from vinoserve.protocol.tfs_tensors import encode_array, tensor_to_array
from vinoserve.types import InferRequest, ModelMetadata, TensorSpec

SIGNATURE = "serving_default"
SIGNATURE_FIELD = "signature_def"
PREDICT_METHOD = "tensorflow/serving/predict"
# tensorflow.error.Code numbers used in StatusProto
_OK = 0
_UNKNOWN = 2

Context: TypeAlias = grpc.aio.ServicerContext


def requested_version(model_spec: Any) -> int | None:
    """The version a ``ModelSpec`` asks for; None (default version) when absent or 0."""
    if model_spec.HasField("version_label"):
        raise VinoserveError(StatusCode.INVALID_ARGUMENT, "version_label is not supported; use version")
    if model_spec.HasField("version"):
        return int(model_spec.version.value) or None
    return None


def _fill_tensor_info(info: Any, spec: TensorSpec) -> None:
    info.name = spec.name
    info.dtype = spec.precision.tf
    for d in spec.shape:
        # TensorShapeProto has no ranges: a range shows as -1, as OVMS shows it.
        info.tensor_shape.dim.add().size = d.lo if d.is_static else -1


def signature_def_map(meta: ModelMetadata) -> Any:
    """The ``SignatureDefMap`` with one ``serving_default`` signature describing ``meta``."""
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    sig = sig_map.signature_def[SIGNATURE]
    sig.method_name = PREDICT_METHOD
    for spec in meta.inputs:
        _fill_tensor_info(sig.inputs[spec.name], spec)
    for spec in meta.outputs:
        _fill_tensor_info(sig.outputs[spec.name], spec)
    return sig_map


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``Predict`` and ``GetModelMetadata`` over the data plane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def Predict(self, request: Any, context: Context) -> Any:
        """Decode the inputs, run the model, encode the (filtered) outputs."""
        try:
            spec = request.model_spec
            limit = self.dataplane.max_request_bytes
            inputs = {name: tensor_to_array(t, name, limit) for name, t in request.inputs.items()}
            result = await self.dataplane.infer(
                InferRequest(
                    model_name=spec.name,
                    model_version=requested_version(spec),
                    inputs=inputs,
                    requested_outputs=list(request.output_filter) or None,
                    api="TFS",
                    interface="gRPC",
                )
            )
            response = predict_pb2.PredictResponse()
            response.model_spec.name = result.model_name
            response.model_spec.version.value = result.model_version
            response.model_spec.signature_name = SIGNATURE
            for name, array in result.outputs.items():
                encode_array(array, response.outputs[name])
            return response
        except VinoserveError as err:
            await abort(context, err)
        except Exception as exc:  # the server answers INTERNAL and stays up
            await abort_unexpected(context, exc, "Predict")

    async def GetModelMetadata(self, request: Any, context: Context) -> Any:
        """The ``serving_default`` signature: inputs and outputs with dtype and current shape."""
        try:
            fields = list(request.metadata_field)
            if fields != [SIGNATURE_FIELD]:
                raise VinoserveError(
                    StatusCode.INVALID_ARGUMENT,
                    f'metadata_field must be ["{SIGNATURE_FIELD}"], got {fields}',
                )
            spec = request.model_spec
            meta = self.dataplane.model_metadata(spec.name, requested_version(spec))
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = meta.name
            response.model_spec.version.value = meta.version
            response.metadata[SIGNATURE_FIELD].Pack(signature_def_map(meta))
            return response
        except VinoserveError as err:
            await abort(context, err)
        except Exception as exc:
            await abort_unexpected(context, exc, "GetModelMetadata")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """``GetModelStatus`` over the data plane; config reload over gRPC is not offered."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def GetModelStatus(self, request: Any, context: Context) -> Any:
        """State of the requested version, or of every version when none is given."""
        try:
            statuses = self.dataplane.model_status(
                request.model_spec.name, requested_version(request.model_spec)
            )
            response = get_model_status_pb2.GetModelStatusResponse()
            for st in statuses:
                entry = response.model_version_status.add()
                entry.version = st.version
                entry.state = int(st.state)
                entry.status.error_code = _UNKNOWN if st.error else _OK
                entry.status.error_message = st.error or "OK"
            return response
        except VinoserveError as err:
            await abort(context, err)
        except Exception as exc:
            await abort_unexpected(context, exc, "GetModelStatus")

    async def HandleReloadConfigRequest(self, request: Any, context: Context) -> Any:
        """Not offered over gRPC: the config file (and ``POST /v1/config/reload``) drive reloads."""
        await abort(
            context,
            VinoserveError(
                StatusCode.UNIMPLEMENTED,
                "HandleReloadConfigRequest; edit the config file or POST /v1/config/reload",
            ),
        )
        return model_management_pb2.ReloadConfigResponse()  # not reached


def add_tfs_servicers(dataplane: DataPlane, server: grpc.aio.Server) -> None:
    """Register both TF Serving services on ``server``; unparseable requests get ``Invalid message``."""
    registry = GuardedRegistry(server)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(dataplane), registry)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(dataplane), registry)
