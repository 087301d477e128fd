"""HTTPS listening for the REST server: a bound on the TLS handshake, and a hold on connections in it.

With ``loop.create_server(ssl=...)`` (what aiohttp's ``TCPSite`` does) a connection reaches aiohttp
only once its TLS handshake is done, and asyncio waits 60 s for that by default: a client that opens
a TCP connection and never completes the handshake holds a connection and a file descriptor for a
minute, unseen by the server's stop, and left open when the event loop ends before it. Here the
listener accepts plain TCP and upgrades each connection with ``loop.start_tls``, so the site knows
every connection still in its handshake, bounds the handshake by :data:`HANDSHAKE_TIMEOUT_S` and
aborts the ones left when the server closes (:meth:`TlsSite.abort_handshakes`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

log = logging.getLogger(__name__)

# A client completes its handshake in a few round trips, milliseconds even on slow links; 10 s leaves
# a loaded client room while a stalled or hostile one holds its connection a sixth of asyncio's 60 s.
HANDSHAKE_TIMEOUT_S = 10.0


class TlsSite(web.BaseSite):
    """An aiohttp site serving HTTPS on ``host:port`` (0 = any free port), see the module's docstring."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, ssl_context: ssl.SSLContext) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._context = ssl_context
        self._handshakes: set[asyncio.Transport] = set()  # accepted, TLS handshake not done
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        """The site's URL, as aiohttp names its sites."""
        return f"https://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        """Listen; each accepted connection starts its TLS handshake."""
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Accepted(self), self._host, self._port, backlog=self._backlog, reuse_port=False
        )

    def abort_handshakes(self) -> int:
        """Abort the connections still in their TLS handshake; how many there were."""
        stalled = list(self._handshakes)
        for transport in stalled:
            transport.abort()
        self._handshakes.clear()
        return len(stalled)

    def _accepted(self, transport: asyncio.Transport) -> None:
        self._handshakes.add(transport)
        task = asyncio.get_running_loop().create_task(self._upgrade(transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _upgrade(self, raw: asyncio.Transport) -> None:
        """The TLS handshake of one connection, then the connection handed to aiohttp."""
        early = _Early()
        try:
            if raw.is_closing():
                return
            tls = await asyncio.get_running_loop().start_tls(
                raw, early, self._context, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S
            )
        except OSError as exc:  # a failed handshake, one past the timeout, or the client gone
            log.debug("TLS handshake with %s failed: %s", raw.get_extra_info("peername"), exc)
            return
        finally:
            self._handshakes.discard(raw)
        server = self._runner.server
        if tls is None or server is None:  # the client left during the handshake, or the server closed
            raw.abort()
            return
        handler = server()
        tls.set_protocol(handler)
        handler.connection_made(tls)
        for chunk in early.chunks:
            handler.data_received(chunk)
        if early.eof:
            handler.eof_received()
        if early.lost:
            handler.connection_lost(early.lost[0])


class _Accepted(asyncio.Protocol):
    """A TCP connection just accepted: it only hands itself to the site."""

    def __init__(self, site: TlsSite) -> None:
        self._site = site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # The first bytes are the ClientHello: they stay in the socket until start_tls reads them.
        transport.pause_reading()
        self._site._accepted(transport)


class _Early(asyncio.Protocol):
    """What TLS delivers between the end of the handshake and aiohttp taking the connection over
    (``start_tls`` delivers data at once, before it returns the transport aiohttp needs first)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.eof = False
        self.lost: list[Exception | None] = []

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def eof_received(self) -> None:
        self.eof = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
