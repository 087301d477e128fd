"""vinoserve's TF Serving and KServe v2 gRPC servicers behind Ray Serve's gRPC proxy.

Ray Serve's proxy decodes each call with the request type of the service registered from
:data:`GRPC_SERVICER_FUNCTIONS` and hands the message to the replica method of the same name, with a
``RayServegRPCContext`` in place of grpc.aio's context. That context has ``set_code``/``set_details``
but no ``abort``; the servicers end failed calls with ``await context.abort(code, text)``. This module
is the one place that bridges the two: the servicers run unchanged, and a failure becomes the code and
text Ray's proxy sends back, exactly as the standalone server sends them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, cast

import grpc
from google.protobuf import empty_pb2

from vinoserve.dataplane import DataPlane
from vinoserve.protocol.grpc.kserve import KServeServicer
from vinoserve.protocol.grpc.tfs import ModelServicer, PredictionServicer

_GENERATED = "vinoserve.protocol.generated"
# Import paths for ``gRPCOptions(grpc_servicer_functions=...)``: the services the proxy offers.
GRPC_SERVICER_FUNCTIONS = [
    f"{_GENERATED}.tensorflow_serving.apis.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server",
    f"{_GENERATED}.tensorflow_serving.apis.model_service_pb2_grpc.add_ModelServiceServicer_to_server",
    f"{_GENERATED}.kserve.grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server",
]
# Ray's proxy routes by method name alone; the three services share none.
TFS_PREDICTION_METHODS = ("Predict", "GetModelMetadata")
TFS_MODEL_METHODS = ("GetModelStatus", "HandleReloadConfigRequest")
KSERVE_METHODS = ("ServerLive", "ServerReady", "ServerMetadata", "ModelReady", "ModelMetadata", "ModelInfer")
# Trailing metadata naming the Ray node whose replica answered.
NODE_METADATA = "vinoserve-node"

Method = Callable[[Any, Any], Awaitable[Any]]


class _Aborted(grpc.aio.AbortError):
    """Ends a servicer method after :meth:`_AbortContext.abort` set the status, as grpc.aio's abort does
    (the servicers' error handling lets an abort under way pass through)."""


class _AbortContext:
    """The part of ``grpc.aio.ServicerContext`` the servicers use, over Ray's serialisable context."""

    def __init__(self, ray_context: Any) -> None:
        self._ray = ray_context

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        """Record the status for Ray's proxy to send, then leave the method."""
        self._ray.set_code(code)
        self._ray.set_details(details)
        raise _Aborted


class GrpcIngress:
    """Runs the standalone server's servicers on one replica's data plane."""

    def __init__(self, dataplane: DataPlane, max_request_bytes: int, node_id: str) -> None:
        self._limit = max_request_bytes
        self._node = node_id
        services: list[tuple[object, tuple[str, ...]]] = [
            (PredictionServicer(dataplane, max_request_bytes), TFS_PREDICTION_METHODS),
            (ModelServicer(dataplane), TFS_MODEL_METHODS),
            (KServeServicer(dataplane), KSERVE_METHODS),
        ]
        self._methods: dict[str, Method] = {
            name: getattr(servicer, name) for servicer, names in services for name in names
        }

    async def call(self, method: str, request: Any, grpc_context: Any) -> Any:
        """The response of ``method``; on failure an empty message, the status being in ``grpc_context``.

        A status code set on Ray's context wins over the proxy's OK, and the details go out as they are,
        so clients see the same code and text as from the standalone server. Returning (rather than
        raising) keeps a client's mistake out of Ray's error logs.
        """
        context = _AbortContext(grpc_context)
        grpc_context.set_trailing_metadata([(NODE_METADATA, self._node)])
        try:
            size = request.ByteSize()
            if size > self._limit:
                # Ray's proxy admits messages up to 2 GiB; refuse with the text of the standalone
                # server's limit, which gRPC core itself writes.
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"SERVER: Received message larger than max ({size} vs. {self._limit})",
                )
            return await self._methods[method](request, cast("grpc.aio.ServicerContext[Any, Any]", context))
        except _Aborted:
            return empty_pb2.Empty()
