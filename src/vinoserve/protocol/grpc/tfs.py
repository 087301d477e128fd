"""TF Serving gRPC servicers (``tensorflow.serving.PredictionService`` and ``ModelService``).

Each method parses the request, calls the data plane and encodes the answer; errors go
through the one gRPC error decorator (:func:`~vinoserve.protocol.grpc.errors.grpc_errors`).
"""

from __future__ import annotations

import grpc

from vinoserve.dataplane import DataPlane
from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.generated.tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2
from vinoserve.protocol.generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from vinoserve.protocol.generated.tensorflow_serving.util import status_pb2
from vinoserve.protocol.grpc.errors import Context, grpc_errors
from vinoserve.protocol.grpc.guard import GuardedRegistry
from vinoserve.protocol.tfs_tensors import encode_array, tensor_to_array, tf_dtype
from vinoserve.types import InferRequest, ModelMetadata, TensorSpec, VersionStatus

SIGNATURE = "serving_default"
SIGNATURE_FIELD = "signature_def"
PREDICT_METHOD = "tensorflow/serving/predict"


def requested_version(model_spec: model_pb2.ModelSpec) -> int | None:
    """The version a ``ModelSpec`` asks for; None (default version) when absent or 0."""
    if model_spec.HasField("version_label"):
        raise VinoserveError(StatusCode.INVALID_ARGUMENT, "version_label is not supported; use version")
    if model_spec.HasField("version"):
        return int(model_spec.version.value) or None
    return None


def _fill_tensor_info(info: meta_graph_pb2.TensorInfo, spec: TensorSpec) -> None:
    info.name = spec.name
    info.dtype = tf_dtype(spec.precision)
    for d in spec.shape:
        # TensorShapeProto has no ranges: a range shows as -1, as OVMS shows it.
        info.tensor_shape.dim.add().size = d.lo if d.is_static else -1


def signature_def_map(meta: ModelMetadata) -> get_model_metadata_pb2.SignatureDefMap:
    """The ``SignatureDefMap`` with one ``serving_default`` signature describing ``meta``."""
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    sig = sig_map.signature_def[SIGNATURE]
    sig.method_name = PREDICT_METHOD
    for spec in meta.inputs:
        _fill_tensor_info(sig.inputs[spec.name], spec)
    for spec in meta.outputs:
        _fill_tensor_info(sig.outputs[spec.name], spec)
    return sig_map


def _version_status(st: VersionStatus) -> get_model_status_pb2.ModelVersionStatus:
    # a failed load carries its error text under UNKNOWN, as TF Serving reports it
    status = status_pb2.StatusProto(
        error_code=error_codes_pb2.UNKNOWN if st.error else error_codes_pb2.OK, error_message=st.error or "OK"
    )
    return get_model_status_pb2.ModelVersionStatus(version=st.version, state=st.state.name, status=status)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``Predict`` and ``GetModelMetadata`` over ``dataplane``.

    ``max_request_bytes`` bounds the decoded size of one input tensor (``--max_request_mb``).
    """

    def __init__(self, dataplane: DataPlane, max_request_bytes: int) -> None:
        self.dataplane = dataplane
        self.max_request_bytes = max_request_bytes

    @grpc_errors
    async def Predict(self, request: predict_pb2.PredictRequest, context: Context) -> predict_pb2.PredictResponse:
        """Decode the inputs, run the model, encode the (filtered) outputs."""
        spec, limit = request.model_spec, self.max_request_bytes
        inputs = {name: tensor_to_array(t, name, limit) for name, t in request.inputs.items()}
        result = await self.dataplane.infer(
            InferRequest(
                spec.name,
                requested_version(spec),
                inputs,
                list(request.output_filter) or None,
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

    @grpc_errors
    async def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: Context
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """The ``serving_default`` signature: inputs and outputs with dtype and current shape."""
        fields = list(request.metadata_field)
        if fields != [SIGNATURE_FIELD]:
            raise VinoserveError(
                StatusCode.INVALID_ARGUMENT, f'metadata_field must be ["{SIGNATURE_FIELD}"], got {fields}'
            )
        meta = self.dataplane.model_metadata(request.model_spec.name, requested_version(request.model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = meta.name
        response.model_spec.version.value = meta.version
        response.metadata[SIGNATURE_FIELD].Pack(signature_def_map(meta))
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """``GetModelStatus`` over ``dataplane``; config reload over gRPC is not offered."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    @grpc_errors
    async def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: Context
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """State of the requested version, or of every version when none is given."""
        statuses = self.dataplane.model_status(request.model_spec.name, requested_version(request.model_spec))
        return get_model_status_pb2.GetModelStatusResponse(model_version_status=map(_version_status, statuses))

    @grpc_errors
    async def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: Context
    ) -> model_management_pb2.ReloadConfigResponse:
        """Not offered over gRPC: the config file (and ``POST /v1/config/reload``) drive reloads."""
        raise VinoserveError(
            StatusCode.UNIMPLEMENTED, "HandleReloadConfigRequest; edit the config file or POST /v1/config/reload"
        )


def add_tfs_servicers(dataplane: DataPlane, server: grpc.aio.Server, max_request_bytes: int) -> None:
    """Register both TF Serving services on ``server``; unparseable requests get ``Invalid message``."""
    registry = GuardedRegistry(server)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(dataplane, max_request_bytes), registry
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(dataplane), registry)
