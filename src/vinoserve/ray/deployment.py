"""The Ray Serve deployment: one vinoserve data plane per replica, behind Ray's HTTP and gRPC proxies.

Each replica builds what ``vinoserve`` builds (runtime, model manager with its per-model batching
scheduler and shape-variant cache, data plane) without opening ports: Ray Serve's proxies own them.
Requests are not batched by Ray (no ``@serve.batch``): the replica's scheduler groups them, so batch
sizes stay those the model was compiled for instead of every size from 1 to N.
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from vinoserve.ray.grpc_ingress import GrpcIngress
from vinoserve.ray.http_ingress import HttpIngress
from vinoserve.ray.settings import flags_from_args, replica_settings
from vinoserve.server import Server

log = logging.getLogger(__name__)

# Requests one replica takes at once: enough for its scheduler to fill batches (Ray's default is 5).
MAX_ONGOING_REQUESTS = 64


class Vinoserve:
    """A replica: KServe v2 and TF Serving over HTTP (``__call__``) and gRPC (the methods named as the RPCs)."""

    async def __init__(self, argv: list[str]) -> None:  # type: ignore[misc]  # Ray awaits an async __init__
        settings = replica_settings(argv)
        logging.getLogger("vinoserve").setLevel(settings.log_level)
        self._server = Server(settings)
        await self._server.start(bind_grpc=False, bind_rest=False)
        # Ray routes to a replica once its constructor returns: every model has had its first load by then.
        await self._server.wait_ready()
        node = ray.get_runtime_context().get_node_id()
        self._http = HttpIngress(self._server.dataplane, settings.max_request_bytes, node)
        self._grpc = GrpcIngress(self._server.dataplane, settings.max_request_bytes, node)

    async def __call__(self, request: Request) -> Response:
        """Every REST path of the standalone server except ``/metrics`` (Ray exports its own)."""
        return await self._http.handle(request)

    async def check_health(self) -> None:
        """Ray replaces a replica whose check raises."""
        if not self._server.dataplane.live():
            raise RuntimeError("vinoserve replica is not live")

    async def __del__(self) -> None:
        """Release the models; Ray has already waited for the replica's requests to end."""
        server = getattr(self, "_server", None)  # absent when the constructor failed
        if server is not None:
            await server.stop(grace=0)

    # gRPC: tensorflow.serving.PredictionService and ModelService
    async def Predict(self, request: Any, grpc_context: Any) -> Any:  # noqa: N802
        return await self._grpc.call("Predict", request, grpc_context)

    async def GetModelMetadata(self, request: Any, grpc_context: Any) -> Any:  # noqa: N802
        return await self._grpc.call("GetModelMetadata", request, grpc_context)

    async def GetModelStatus(self, request: Any, grpc_context: Any) -> Any:  # noqa: N802
        return await self._grpc.call("GetModelStatus", request, grpc_context)

    async def HandleReloadConfigRequest(self, request: Any, grpc_context: Any) -> Any:  # noqa: N802
        return await self._grpc.call("HandleReloadConfigRequest", request, grpc_context)

    # gRPC: inference.GRPCInferenceService (KServe v2)
    async def ServerLive(self, request: Any, grpc_context: Any) -> Any:  # noqa: N802
        return await self._grpc.call("ServerLive", request, grpc_context)

    async def ServerReady(self, request: Any, grpc_context: Any) -> Any:  # noqa: N802
        return await self._grpc.call("ServerReady", request, grpc_context)

    async def ServerMetadata(self, request: Any, grpc_context: Any) -> Any:  # noqa: N802
        return await self._grpc.call("ServerMetadata", request, grpc_context)

    async def ModelReady(self, request: Any, grpc_context: Any) -> Any:  # noqa: N802
        return await self._grpc.call("ModelReady", request, grpc_context)

    async def ModelMetadata(self, request: Any, grpc_context: Any) -> Any:  # noqa: N802
        return await self._grpc.call("ModelMetadata", request, grpc_context)

    async def ModelInfer(self, request: Any, grpc_context: Any) -> Any:  # noqa: N802
        return await self._grpc.call("ModelInfer", request, grpc_context)


# One replica per CPU it is given; replicas, autoscaling and resources come from the Serve config.
VinoserveDeployment = serve.deployment(name="vinoserve", max_ongoing_requests=MAX_ONGOING_REQUESTS)(Vinoserve)


def app_builder(args: dict[str, Any]) -> serve.Application:
    """The application for ``serve run``/``serve deploy``: ``args: {flags: {model_name: ..., ...}}``.

    ``flags`` is a mapping of vinoserve flags to values, or a list such as ``["--model_name=m", ...]``;
    the flags are checked here, so a config with a bad flag fails to deploy with the standalone message.
    """
    argv = flags_from_args(args.get("flags", {}))
    replica_settings(argv)
    return VinoserveDeployment.bind(argv)
