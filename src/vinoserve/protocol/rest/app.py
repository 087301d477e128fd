"""The HTTP server: TF Serving REST, KServe v2 REST and ``/metrics`` over the one data plane.

It runs on aiohttp: asyncio-native, so it shares one event loop with the ``grpc.aio`` server
and the model manager (no threads, no second loop), and it parses HTTP with a C parser
(llhttp), which keeps per-request overhead low next to inference.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestPayloadError

from vinoserve.dataplane import DataPlane
from vinoserve.drain import Drain
from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.rest import kserve, tfs
from vinoserve.protocol.rest.errors import error_response, internal_error, json_error
from vinoserve.protocol.rest.tls_site import TlsSite

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Health checks keep answering while shutting down: ready says 503, live 200.
_ALWAYS_SERVED = frozenset({"/v2/health/live", "/v2/health/ready"})
# After the drain, idle keep-alive connections and responses still being written get this long.
_CLOSE_CONNECTIONS_S = 2.0
_POLL_S = 0.05


def _too_large(limit: int, size: int | None) -> VinoserveError:
    mb = limit / (1024 * 1024)
    body = f"body of {size} bytes" if size is not None else "chunked body"
    return VinoserveError(StatusCode.REQUEST_TOO_LARGE, f"{body} is over --max_request_mb {mb:g} ({limit} bytes)")


def _error_middleware(limit: int) -> Middleware:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Refuse a declared oversize body before reading (or allocating for) any of it.
        declared = request.content_length
        if declared is not None and declared > limit:
            return error_response(_too_large(limit, declared))
        try:
            return await handler(request)
        except VinoserveError as err:
            return error_response(err)
        except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the limit
            return error_response(_too_large(limit, None))  # aiohttp stops reading past the limit
        except RequestPayloadError as exc:  # e.g. a Content-Encoding the body does not follow
            return error_response(
                VinoserveError(StatusCode.INVALID_ARGUMENT, f"the request body cannot be read: {exc}")
            )
        except web.HTTPException as exc:
            if exc.status >= 400:
                return json_error(exc.status, f"{exc.reason}: {request.method} {request.path}")
            raise
        except Exception as exc:  # the server answers 500 and stays up
            return internal_error(exc, f"{request.method} {request.path}")

    return errors


def _drain_middleware(drain: Drain) -> Middleware:
    """Track requests for the drain; while shutting down, refuse new ones and close connections after."""

    @web.middleware
    async def draining(request: web.Request, handler: Handler) -> web.StreamResponse:
        if drain.closing and request.path not in _ALWAYS_SERVED:
            response: web.StreamResponse = error_response(drain.refused())
        else:
            task = drain.enter()
            try:
                response = await handler(request)
            except asyncio.CancelledError:
                if not drain.was_cut(task):
                    raise
                response = error_response(drain.cut_error())
            finally:
                drain.leave(task)
        if drain.closing:  # the client's next request goes to a new connection, which is refused
            response.force_close()
        return response

    return draining


def _metrics_route(dataplane: DataPlane) -> Handler:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=dataplane.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    return metrics


def build_app(dataplane: DataPlane, max_request_bytes: int, metrics_enable: bool) -> web.Application:
    """The aiohttp application with every route; bodies above ``max_request_bytes`` get 413."""
    app = web.Application(
        client_max_size=max_request_bytes,
        middlewares=[_drain_middleware(dataplane.drain), _error_middleware(max_request_bytes)],
    )
    tfs.add_routes(app.router, dataplane)
    kserve.add_routes(app.router, dataplane)
    if metrics_enable:
        app.router.add_get("/metrics", _metrics_route(dataplane))
    return app


class RestServer:
    """The running HTTP server (from :func:`start_rest_server`); ``port`` is the bound port."""

    def __init__(self, runner: web.AppRunner, port: int, tls: TlsSite | None = None) -> None:
        self.port = port
        self._runner = runner
        self._tls = tls
        # transport -> its socket; the socket's fileno() turns -1 once the connection is closed
        self._connections: dict[asyncio.Transport, Any] = {}

    def _remember_connections(self) -> None:
        server = self._runner.server
        for handler in server.connections if server is not None else ():
            transport = handler.transport
            if transport is not None and transport not in self._connections:
                self._connections[transport] = transport.get_extra_info("socket")

    def _open(self) -> list[asyncio.Transport]:
        return [t for t, sock in self._connections.items() if sock is not None and sock.fileno() != -1]

    async def stop_listening(self) -> None:
        """Close the listening socket now; open connections stay until :meth:`close`."""
        for site in list(self._runner.sites):
            await site.stop()
        # Before the drain closes any of them, so that each is followed until its socket is closed.
        self._remember_connections()

    async def close(self) -> None:
        """Close every connection, then release the application; no socket is left open on return.

        aiohttp closes idle keep-alive connections and gives responses still being written up to
        ``_CLOSE_CONNECTIONS_S``. Closing a TLS connection sends close_notify and keeps the socket
        until the client answers, which an idle pooled client connection (``requests``/urllib3)
        never does; asyncio would wait 30 s, past the return of ``stop`` and past the end of an
        event loop closed after it, leaking the socket. Whatever is still open then is aborted.
        Connections still in their TLS handshake are aborted first: they have no request to finish.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLOSE_CONNECTIONS_S
        stalled = self._tls.abort_handshakes() if self._tls is not None else 0
        if stalled:
            log.info("Closed %d HTTPS connections that had not completed their TLS handshake", stalled)
        self._remember_connections()
        await self._runner.cleanup()
        while self._open() and loop.time() < deadline:
            await asyncio.sleep(_POLL_S)
        left = self._open()
        for transport in left:
            transport.abort()
        if left:
            log.info("Closed %d HTTP connections whose clients did not close them", len(left))
            await asyncio.sleep(0)  # abort() closes each socket in the loop's next callbacks
        self._connections.clear()


async def start_rest_server(
    dataplane: DataPlane,
    address: str,
    port: int,
    max_request_bytes: int,
    metrics_enable: bool,
    ssl_context: ssl.SSLContext | None = None,
) -> RestServer:
    """Serve HTTP (HTTPS with ``ssl_context``) on ``address:port`` (0 = any free port).

    :meth:`RestServer.stop_listening` closes the port at once; :meth:`RestServer.close` then closes
    the connections left. Raises ``OSError`` when the address cannot be bound.
    """
    app = build_app(dataplane, max_request_bytes, metrics_enable)
    # No access log: a log line per request costs more than routing it.
    # The drain (Server.stop) bounds in-flight requests; the runner's own timeout only covers closing.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=_CLOSE_CONNECTIONS_S)
    await runner.setup()
    # HTTPS through TlsSite: a bounded TLS handshake, and connections in it closed by close()
    tls = TlsSite(runner, address, port, ssl_context) if ssl_context is not None else None
    site = tls or web.TCPSite(runner, address, port, reuse_port=False)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = port
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            bound = int(addr[1])
            break
    return RestServer(runner, bound, tls)
