"""TF Serving REST routes (SPEC §5): predict, model status, model metadata, config and reload.

Each route parses, calls the data plane and encodes; errors are raised as
:class:`~vinoserve.errors.VinoserveError` and turned into ``{"error": ...}`` by the app.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aiohttp import web

from vinoserve.dataplane import DataPlane
from vinoserve.protocol.generated.tensorflow.core.framework import types_pb2
from vinoserve.protocol.rest.jsoncodec import json_response
from vinoserve.protocol.rest.offload import outputs_size, run_sized
from vinoserve.protocol.rest.tfs_json import encode_predict, parse_predict
from vinoserve.types import InferRequest, ModelMetadata, TensorSpec, VersionStatus

SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
SIGNATURE_MAP_TYPE = "type.googleapis.com/tensorflow.serving.SignatureDefMap"
# TF Serving paths; aiohttp backtracks over the name, so "a:b:predict" is model "a:b".
_MODEL = "/v1/models/{name}"
_VERSION = "/v1/models/{name}/versions/{version:\\d+}"


def requested_version(request: web.Request) -> int | None:
    """The version in the path; None (the default version) when absent or 0, as ovmsclient sends."""
    v = request.match_info.get("version")
    return int(v) or None if v else None


def status_json(statuses: list[VersionStatus]) -> dict[str, Any]:
    """``{"model_version_status": [...]}`` as TF Serving prints it; a failed load shows its error."""
    return {
        "model_version_status": [
            {
                "version": str(st.version),
                "state": st.state.name,
                "status": {"error_code": "UNKNOWN" if st.error else "OK", "error_message": st.error or "OK"},
            }
            for st in statuses
        ]
    }


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    # a range dimension has no TensorShapeProto form: it shows as -1, as OVMS shows it
    dims = [{"size": str(d.lo if d.is_static else -1), "name": ""} for d in spec.shape]
    return {
        "dtype": types_pb2.DataType.Name(spec.precision.tf),
        "tensorShape": {"dim": dims, "unknownRank": False},
        "name": spec.name,
    }


def metadata_json(meta: ModelMetadata) -> dict[str, Any]:
    """GetModelMetadataResponse in the JSON OVMS prints (proto3 JSON, camelCase, defaults shown)."""
    signature = {
        "inputs": {s.name: _tensor_info(s) for s in meta.inputs},
        "outputs": {s.name: _tensor_info(s) for s in meta.outputs},
        "methodName": PREDICT_METHOD,
    }
    return {
        "modelSpec": {"name": meta.name, "signatureName": "", "version": str(meta.version)},
        "metadata": {"signature_def": {"@type": SIGNATURE_MAP_TYPE, "signatureDef": {SIGNATURE: signature}}},
    }


class TfsRoutes:
    """Handlers of the TF Serving REST API over one data plane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def predict(self, request: web.Request) -> web.Response:
        """Row or column predict; JSON numbers take the dtype of the model input they feed."""
        body = await request.read()
        row = True

        async def decode(meta: ModelMetadata) -> dict[str, np.ndarray]:
            nonlocal row
            inputs, row = await run_sized(len(body), parse_predict, body, {s.name: s.precision for s in meta.inputs})
            return inputs

        pending = InferRequest(request.match_info["name"], requested_version(request), {}, api="TFS", interface="REST")
        result = await self.dataplane.infer(pending, decode)
        data = await run_sized(outputs_size(result.outputs), encode_predict, result.outputs, row)
        return web.Response(body=data, content_type="application/json")

    async def status(self, request: web.Request) -> web.Response:
        """``GET /v1/models/{name}[/versions/{N}]``: every version, or the one asked for."""
        statuses = self.dataplane.model_status(request.match_info["name"], requested_version(request))
        return json_response(status_json(statuses))

    async def metadata(self, request: web.Request) -> web.Response:
        """``GET .../metadata``: the ``serving_default`` signature with the current shapes."""
        meta = self.dataplane.model_metadata(request.match_info["name"], requested_version(request))
        return json_response(metadata_json(meta))

    async def config(self, request: web.Request) -> web.Response:
        """``GET /v1/config``: the status of every model, by name."""
        return json_response({n: status_json(s) for n, s in self.dataplane.config_status().items()})

    async def reload(self, request: web.Request) -> web.Response:
        """``POST /v1/config/reload``: 201 with the status map when anything changed, else 200."""
        changed, statuses = await self.dataplane.reload_config()
        return json_response({n: status_json(s) for n, s in statuses.items()}, 201 if changed else 200)


def add_routes(router: web.UrlDispatcher, dataplane: DataPlane) -> None:
    """Register the TF Serving REST routes."""
    r = TfsRoutes(dataplane)
    for base in (_VERSION, _MODEL):
        router.add_post(base + ":predict", r.predict)
        router.add_get(base + "/metadata", r.metadata)
        router.add_get(base, r.status)
    router.add_get("/v1/config", r.config)
    router.add_post("/v1/config/reload", r.reload)
