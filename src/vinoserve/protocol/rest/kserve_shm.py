"""KServe v2 REST routes of the system shared memory extension, as Triton serves them.

``GET /v2/systemsharedmemory[/region/{name}]/status`` lists regions as a JSON array of
``{"name", "key", "offset", "byte_size"}``; ``POST /v2/systemsharedmemory/region/{name}/register``
takes ``{"key", "offset", "byte_size"}``; ``POST /v2/systemsharedmemory[/region/{name}]/unregister``
forgets one region or all of them. The registry itself is :mod:`vinoserve.shm`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vinoserve.dataplane import DataPlane
from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.rest.jsoncodec import json_response, loads

_BASE = "/v2/systemsharedmemory"
_REGION = _BASE + "/region/{name}"
MAX_BODY = 64 * 1024  # a register body is three small fields


def _invalid(text: str) -> VinoserveError:
    return VinoserveError(StatusCode.INVALID_ARGUMENT, text)


def _count(doc: dict[str, Any], key: str, default: int | None) -> int:
    value = doc.get(key, default)
    if type(value) is not int or value < 0:  # exact type: true is no size
        raise _invalid(f"{key} must be a non-negative integer")
    return value


class SharedMemoryRoutes:
    """Status, register and unregister of system shared memory regions over one data plane."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def status(self, request: web.Request) -> web.Response:
        """``GET .../status``: the named region, or every region."""
        regions = self.dataplane.shm.status(request.match_info.get("name", ""))
        return json_response(
            [{"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size} for r in regions]
        )

    async def register(self, request: web.Request) -> web.Response:
        """``POST .../region/{name}/register`` with ``{"key", "offset", "byte_size"}``."""
        too_large = VinoserveError(StatusCode.REQUEST_TOO_LARGE, f"a register request has at most {MAX_BODY} bytes")
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise too_large
        body = await request.read()  # a chunked body is bounded by the app's request size limit, then here
        if len(body) > MAX_BODY:
            raise too_large
        try:
            doc = loads(body)
        except ValueError as exc:
            raise VinoserveError(StatusCode.JSON_INVALID, str(exc)) from None
        if not isinstance(doc, dict) or type(doc.get("key")) is not str:
            raise _invalid("a register request is an object with a key (string), byte_size and offset")
        self.dataplane.shm.register(
            request.match_info["name"], doc["key"], _count(doc, "offset", 0), _count(doc, "byte_size", None)
        )
        return web.Response(status=200)

    async def unregister(self, request: web.Request) -> web.Response:
        """``POST .../unregister``: the named region, or every region."""
        self.dataplane.shm.unregister(request.match_info.get("name", ""))
        return web.Response(status=200)


def add_routes(router: web.UrlDispatcher, dataplane: DataPlane) -> None:
    """Register the system shared memory routes."""
    r = SharedMemoryRoutes(dataplane)
    for base in (_BASE, _REGION):
        router.add_get(base + "/status", r.status)
        router.add_post(base + "/unregister", r.unregister)
    router.add_post(_REGION + "/register", r.register)
