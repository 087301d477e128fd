"""vinoserve's REST routes (KServe v2 and TF Serving) behind Ray Serve's HTTP proxy.

Ray Serve hands the replica a Starlette request. The routes are the standalone server's aiohttp
handlers, registered on an aiohttp router as usual and matched here by the router's own patterns;
each handler gets a small request object with what they read (path parameters, headers, body), and
errors go through the same table and JSON bodies as the standalone server's middleware.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from starlette.requests import Request
from starlette.responses import Response

from vinoserve.dataplane import DataPlane
from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.rest import kserve, tfs
from vinoserve.protocol.rest.errors import error_response, internal_error, json_error

# Response header naming the Ray node whose replica answered.
NODE_HEADER = "X-Vinoserve-Node"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _RouteRequest:
    """What the aiohttp handlers read from a request: ``match_info``, ``headers``, ``read()``."""

    def __init__(self, request: Request, match_info: dict[str, str], body: bytes) -> None:
        self.method = request.method
        self.path = request.url.path
        self.headers = request.headers
        self.match_info = match_info
        self._body = body

    async def read(self) -> bytes:
        """The whole body."""
        return self._body


def _routes(dataplane: DataPlane) -> list[tuple[re.Pattern[str], dict[str, Handler]]]:
    """(pattern, handler by method) of every REST route, in the order aiohttp would try them."""
    app = web.Application()
    tfs.add_routes(app.router, dataplane)
    kserve.add_routes(app.router, dataplane)
    table = []
    for resource in app.router.resources():
        info = resource.get_info()
        pattern = info["pattern"] if "pattern" in info else re.compile(re.escape(info["path"]))
        table.append((pattern, {route.method: route.handler for route in resource}))
    return table


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused before reading when its declared size is over ``limit``, or once it grows past it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise VinoserveError(
            StatusCode.REQUEST_TOO_LARGE,
            f"body of {declared} bytes is over --max_request_mb {limit / 2**20:g} ({limit} bytes)",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise VinoserveError(
                StatusCode.REQUEST_TOO_LARGE, f"chunked body is over --max_request_mb {limit / 2**20:g} ({limit} bytes)"
            )
        chunks.append(chunk)
    return b"".join(chunks)


class HttpIngress:
    """Answers one Starlette request with the standalone server's route handlers."""

    def __init__(self, dataplane: DataPlane, max_request_bytes: int, node_id: str) -> None:
        self._routes = _routes(dataplane)
        self._limit = max_request_bytes
        self._node = node_id

    def _match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = False
        for pattern, handlers in self._routes:
            m = pattern.fullmatch(path)
            if m is None:
                continue
            handler = handlers.get(method)
            if handler is not None:
                return handler, m.groupdict()
            allowed = True
        raise web.HTTPMethodNotAllowed(method, []) if allowed else web.HTTPNotFound()

    async def handle(self, request: Request) -> Response:
        """The response, with the status, body and headers the standalone server gives."""
        method, path = request.method, request.url.path
        try:
            handler, match_info = self._match(method, path)
            body = await _read_body(request, self._limit)
            answer = await handler(cast(web.Request, _RouteRequest(request, match_info, body)))
        except VinoserveError as err:
            answer = error_response(err)
        except web.HTTPException as exc:
            answer = json_error(exc.status, f"{exc.reason}: {method} {path}")
        except Exception as exc:  # the replica answers 500 and stays up
            answer = internal_error(exc, f"{method} {path}")
        return _starlette(answer, self._node)


def _starlette(answer: web.StreamResponse, node: str) -> Response:
    body: Any = answer.body if isinstance(answer, web.Response) else None
    headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
    headers[NODE_HEADER] = node
    return Response(content=body or b"", status_code=answer.status, headers=headers)
