"""KServe v2 gRPC servicer (``inference.GRPCInferenceService``).

Each method parses the request, calls the data plane and encodes the answer; errors go through
the one gRPC error decorator (:func:`~vinoserve.protocol.grpc.errors.grpc_errors`). Inputs come in
``raw_input_contents`` (one buffer per input, as tritonclient sends them), in the typed
``contents`` fields, or in a registered system shared memory region (:mod:`vinoserve.shm`); outputs go back in
``raw_output_contents`` (BYTES elements with 4-byte little-endian length prefixes) or into the
shared memory their request names.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import numpy as np

from vinoserve.dataplane import DataPlane
from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2 as pb
from vinoserve.protocol.generated.kserve import grpc_predict_v2_pb2_grpc as pb_grpc
from vinoserve.protocol.grpc.errors import Context, grpc_errors
from vinoserve.protocol.grpc.guard import GuardedRegistry
from vinoserve.protocol.kserve_tensors import (
    checked_shape,
    datatype_of,
    dims_of,
    from_raw,
    from_shm,
    from_values,
    parse_version,
    precision_for,
    shm_ref,
    to_raw,
    to_shm,
)
from vinoserve.shm import Lease
from vinoserve.types import InferRequest, TensorSpec

PLATFORM = "OpenVINO"

# KServe datatype -> the InferTensorContents field that carries it (FP16/BF16 have none: raw only).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _params(parameters: Mapping[str, pb.InferParameter]) -> dict[str, object]:
    """Plain values of a tensor's parameters (only shared memory ones are read)."""
    return {k: getattr(v, v.WhichOneof("parameter_choice") or "string_param") for k, v in parameters.items()}


def decode_inputs(request: pb.ModelInferRequest, lease: Lease) -> dict[str, np.ndarray]:
    """Arrays by input name from shared memory, ``raw_input_contents`` (every other input), or typed ``contents``."""
    raw = request.raw_input_contents
    refs = [shm_ref(_params(t.parameters), f"input {t.name}") if t.parameters else None for t in request.inputs]
    plain = refs.count(None)
    if raw and len(raw) != plain:
        raise VinoserveError(
            StatusCode.INVALID_ARGUMENT,
            f"raw_input_contents has {len(raw)} entries for {plain} inputs not in shared memory; give one per input",
        )
    inputs: dict[str, np.ndarray] = {}
    next_raw = 0
    for tensor, ref in zip(request.inputs, refs, strict=True):
        name = tensor.name
        precision = precision_for(tensor.datatype, name)
        shape = checked_shape(tensor.shape, precision, name)
        if ref is not None:
            inputs[name] = from_shm(lease, ref, precision, shape, name)
            continue
        if raw:
            inputs[name] = from_raw(raw[next_raw], precision, shape, name)
            next_raw += 1
            continue
        field = _CONTENTS_FIELD.get(precision.kserve)
        if field is None:
            raise VinoserveError(
                StatusCode.INVALID_ARGUMENT,
                f"{precision.kserve} has no typed contents; send it in raw_input_contents; input name: {name}",
            )
        inputs[name] = from_values(getattr(tensor.contents, field), precision, shape, name)
    if len(inputs) != len(request.inputs):
        raise VinoserveError(StatusCode.INVALID_ARGUMENT, "an input name is given twice")
    return inputs


def requested_outputs(request: pb.ModelInferRequest, lease: Lease) -> list[str] | None:
    """The names of the requested outputs (None: all); those with shared memory parameters go to the lease."""
    for o in request.outputs:
        ref = shm_ref(_params(o.parameters), f"output {o.name}") if o.parameters else None
        if ref is not None:
            lease.add_output(o.name, ref)
    return [o.name for o in request.outputs] or None


def _tensor_metadata(out: pb.ModelMetadataResponse.TensorMetadata, spec: TensorSpec) -> None:
    out.name = spec.name
    out.datatype = spec.precision.kserve
    out.shape.extend(dims_of(spec.shape))


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Health, metadata and inference of the KServe v2 gRPC API over ``dataplane``."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        """The process answers."""
        return pb.ServerLiveResponse(live=self.dataplane.live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        """False until every configured model had its first load attempt."""
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        """Name, version and extensions."""
        meta = self.dataplane.server_metadata()
        return pb.ServerMetadataResponse(name=meta.name, version=meta.version, extensions=meta.extensions)

    @grpc_errors
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        """Whether that version is AVAILABLE; an unknown model or version is NOT_FOUND."""
        return pb.ModelReadyResponse(ready=self.dataplane.model_ready(request.name, parse_version(request.version)))

    @grpc_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        """Inputs and outputs as currently compiled; -1 for dynamic dimensions."""
        meta = self.dataplane.model_metadata(request.name, parse_version(request.version))
        response = pb.ModelMetadataResponse(
            name=meta.name, platform=PLATFORM, versions=[str(v) for v in self.dataplane.available_versions(meta)]
        )
        for spec in meta.inputs:
            _tensor_metadata(response.inputs.add(), spec)
        for spec in meta.outputs:
            _tensor_metadata(response.outputs.add(), spec)
        return response

    @grpc_errors
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        """Decode the inputs, run the model, encode the (filtered) outputs as raw contents.

        An output sent to shared memory gets its metadata and an empty raw entry, so the raw
        contents stay aligned with the outputs (as Triton answers, and tritonclient reads).
        """
        with self.dataplane.shm.lease() as lease:
            inputs = decode_inputs(request, lease)
            result = await self.dataplane.infer(
                InferRequest(
                    request.model_name,
                    parse_version(request.model_version),
                    inputs,
                    requested_outputs(request, lease),
                    request.id,
                    api="KServe",
                    interface="gRPC",
                )
            )
            response = pb.ModelInferResponse(
                model_name=result.model_name, model_version=str(result.model_version), id=result.id
            )
            for name, array in result.outputs.items():
                response.outputs.add(name=name, datatype=datatype_of(array), shape=array.shape)
                if name in lease.outputs:
                    to_shm(lease, name, array)
                    response.raw_output_contents.append(b"")
                else:
                    response.raw_output_contents.append(to_raw(array))
        return response

    @grpc_errors
    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: Context
    ) -> pb.SystemSharedMemoryStatusResponse:
        """Registered regions: the one named, or all of them."""
        response = pb.SystemSharedMemoryStatusResponse()
        for r in self.dataplane.shm.status(request.name):
            response.regions[r.name].CopyFrom(
                pb.SystemSharedMemoryStatusResponse.RegionStatus(
                    name=r.name, key=r.key, offset=r.offset, byte_size=r.byte_size
                )
            )
        return response

    @grpc_errors
    async def SystemSharedMemoryRegister(
        self, request: pb.SystemSharedMemoryRegisterRequest, context: Context
    ) -> pb.SystemSharedMemoryRegisterResponse:
        """Map a region of a shared-memory object under a name."""
        self.dataplane.shm.register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    @grpc_errors
    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: Context
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        """Forget one region, or all of them when no name is given."""
        self.dataplane.shm.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()


def add_kserve_servicer(dataplane: DataPlane, server: grpc.aio.Server) -> None:
    """Register ``inference.GRPCInferenceService`` on ``server``; unparseable requests get ``Invalid message``."""
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(KServeServicer(dataplane), GuardedRegistry(server))
