"""KServe v2 REST routes (SPEC §5): health, server and model metadata, model ready, infer
(and, from :mod:`.kserve_shm`, system shared memory).

Each route parses, calls the data plane and encodes; errors are raised as
:class:`~vinoserve.errors.VinoserveError` and turned into ``{"error": ...}`` by the app.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vinoserve.dataplane import DataPlane
from vinoserve.protocol.kserve_tensors import dims_of, parse_version
from vinoserve.protocol.rest import kserve_shm
from vinoserve.protocol.rest.jsoncodec import json_response
from vinoserve.protocol.rest.kserve_json import HEADER_LENGTH, encode_infer, parse_infer, use_shm
from vinoserve.protocol.rest.offload import outputs_size, run_sized
from vinoserve.types import InferRequest, ModelMetadata, ServerMetadata, TensorSpec

PLATFORM = "OpenVINO"
_MODEL = "/v2/models/{name}"
_VERSION = "/v2/models/{name}/versions/{version}"


def _version(request: web.Request) -> int | None:
    return parse_version(request.match_info.get("version"))


def _tensor(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.precision.kserve, "shape": dims_of(spec.shape)}


def server_metadata_json(meta: ServerMetadata) -> dict[str, Any]:
    """KServe ServerMetadataResponse."""
    return {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)}


def model_metadata_json(meta: ModelMetadata, versions: list[int]) -> dict[str, Any]:
    """KServe ModelMetadataResponse: -1 for a dynamic (or ranged) dimension."""
    return {
        "name": meta.name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORM,
        "inputs": [_tensor(s) for s in meta.inputs],
        "outputs": [_tensor(s) for s in meta.outputs],
    }


class KServeRoutes:
    """Handlers of the KServe v2 REST API over one data plane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def server_metadata(self, request: web.Request) -> web.Response:
        """``GET /v2``: name, version, extensions."""
        return json_response(server_metadata_json(self.dataplane.server_metadata()))

    async def live(self, request: web.Request) -> web.Response:
        """``GET /v2/health/live``."""
        return web.Response(status=200 if self.dataplane.live() else 503)

    async def ready(self, request: web.Request) -> web.Response:
        """``GET /v2/health/ready``: 503 until every model had its first load attempt."""
        return web.Response(status=200 if self.dataplane.ready() else 503)

    async def model_metadata(self, request: web.Request) -> web.Response:
        """``GET /v2/models/{m}[/versions/{v}]``: I/O as currently compiled."""
        meta = self.dataplane.model_metadata(request.match_info["name"], _version(request))
        return json_response(model_metadata_json(meta, self.dataplane.available_versions(meta)))

    async def model_ready(self, request: web.Request) -> web.Response:
        """``GET .../ready``: 200 when that version is AVAILABLE, else 503; unknown ones 404."""
        ok = self.dataplane.model_ready(request.match_info["name"], _version(request))
        return web.Response(status=200 if ok else 503)

    async def infer(self, request: web.Request) -> web.Response:
        """``POST .../infer``: JSON tensors or the binary tensor extension, both ways."""
        body = await request.read()
        parsed = await run_sized(len(body), parse_infer, body, request.headers.get(HEADER_LENGTH))
        with self.dataplane.shm.lease() as lease:
            use_shm(parsed, lease)
            result = await self.dataplane.infer(
                InferRequest(
                    request.match_info["name"],
                    _version(request),
                    parsed.inputs,
                    parsed.outputs,
                    parsed.id,
                    api="KServe",
                    interface="REST",
                )
            )
            data, header_length = await run_sized(outputs_size(result.outputs), encode_infer, result, parsed, lease)
        if header_length is None:
            return web.Response(body=data, content_type="application/json")
        return web.Response(
            body=data, content_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)}
        )


def add_routes(router: web.UrlDispatcher, dataplane: DataPlane) -> None:
    """Register the KServe v2 REST routes."""
    r = KServeRoutes(dataplane)
    router.add_get("/v2", r.server_metadata)
    router.add_get("/v2/health/live", r.live)
    router.add_get("/v2/health/ready", r.ready)
    for base in (_VERSION, _MODEL):
        router.add_get(base, r.model_metadata)
        router.add_get(base + "/ready", r.model_ready)
        router.add_post(base + "/infer", r.infer)
    kserve_shm.add_routes(router, dataplane)
