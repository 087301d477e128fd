"""The server process: gRPC and HTTP in one event loop over one data plane; graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

from .config import ServerSettings
from .dataplane import DataPlane
from .manager.manager import ModelManager
from .metrics import Metrics
from .runtime.openvino import Runtime

log = logging.getLogger(__name__)
# gRPC's own grace runs this much longer than the drain, so calls the drain cuts answer UNAVAILABLE
# first; only calls that never reached a handler (a message still arriving) are left for gRPC to end.
_GRPC_EXTRA_GRACE_S = 1.0
# Cut requests answer within this long (their cancellation runs no inference).
_CUT_WAIT_S = 5.0


class Server:
    """Start, serve and stop.

    A port of 0 in the settings means that server is off; -1 (used by the tests) binds any free port.
    The ports actually bound are read back into ``grpc_port`` and ``rest_port``.
    """

    def __init__(self, settings: ServerSettings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.runtime = runtime or Runtime(settings.cache_dir)
        self.metrics = Metrics(per_request=settings.metrics_enable)
        self.manager = ModelManager(
            settings.models, self.runtime, self.metrics, settings.config_path, settings.shape_variants
        )
        self.dataplane = DataPlane(self.manager, self.metrics)
        self.grpc_port = 0
        self.rest_port = 0
        self._grpc: Any = None
        self._rest: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, bind_grpc: bool = True, bind_rest: bool = True) -> None:
        """Open the ports (``settings.port``/``rest_port``; -1 here means 'any free port'), then load."""
        s = self.settings
        if s.port and bind_grpc:
            from .protocol.grpc.server import start_grpc_server, tls_credentials

            creds = tls_credentials(*s.tls.read()) if s.tls else None
            self._grpc, self.grpc_port = await start_grpc_server(
                self.dataplane, s.grpc_bind_address, max(s.port, 0), s.max_request_bytes, creds
            )
            log.info("gRPC server listening on %s:%d", s.grpc_bind_address, self.grpc_port)
        if s.rest_port and bind_rest:
            from .protocol.rest.app import start_rest_server
            from .tls import server_context

            self._rest = await start_rest_server(
                self.dataplane,
                s.rest_bind_address,
                max(s.rest_port, 0),
                s.max_request_bytes,
                s.metrics_enable,
                server_context(s.tls) if s.tls else None,
            )
            self.rest_port = self._rest.port
            log.info("REST server listening on %s:%d", s.rest_bind_address, self.rest_port)
        self._tasks.append(asyncio.create_task(self.manager.start()))
        if s.file_system_poll_wait_seconds > 0:
            self._tasks.append(asyncio.create_task(self.manager.watch(s.file_system_poll_wait_seconds)))

    async def wait_ready(self) -> None:
        """Until every model had its first load attempt."""
        await self._tasks[0]

    async def stop(self, grace: float | None = None) -> None:
        """Shut down as Kubernetes expects; ``grace`` defaults to ``--shutdown_timeout_s``.

        At once: readiness turns false, both ports stop accepting connections, and new requests on
        open connections are refused with UNAVAILABLE / 503. In-flight requests get ``grace``
        seconds to finish; the rest are then cancelled with UNAVAILABLE / 503. Then models are released.
        """
        grace = self.settings.shutdown_timeout_s if grace is None else grace
        drain = self.dataplane.drain
        drain.close(grace)
        for t in self._tasks[1:]:
            t.cancel()
        grpc_stopped = None
        if self._grpc is not None:  # gRPC closes its port and sends GOAWAY at once
            grpc_stopped = asyncio.create_task(self._grpc.stop(grace + _GRPC_EXTRA_GRACE_S))
        if self._rest is not None:
            await self._rest.stop_listening()
        if drain.in_flight:
            log.info("Shutting down: waiting for %d in-flight requests (up to %g s)", drain.in_flight, grace)
        if not await drain.wait(grace):
            log.warning("Shutting down: cancelling %d requests still running after %g s", drain.cut(), grace)
            await drain.wait(_CUT_WAIT_S)
        if grpc_stopped is not None:
            await grpc_stopped
        if self._rest is not None:
            await self._rest.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._tasks[0]
        if drain.cutting:
            # A cut request's inference is still running inside OpenVINO, and releasing its compiled
            # model waits for it to end; the process is about to exit, which releases everything.
            log.info("vinoserve stopped (models left to the process exit: an inference is still running)")
            self.dataplane.shm.close()
            return
        await self.manager.stop()
        self.dataplane.shm.close()  # every request has ended: nothing maps a region any more
        log.info("vinoserve stopped")


async def _serve(settings: ServerSettings) -> int:
    server = Server(settings)
    try:
        await server.start()
    except OSError as exc:
        log.error("Cannot open port: %s", exc)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("Shutting down: readiness is now false and new requests are refused")
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal does not cut the drain short
        loop.remove_signal_handler(sig)
        loop.add_signal_handler(sig, lambda: log.info("Already shutting down"))
    await server.stop()
    if server.dataplane.drain.cutting:
        # Releasing a model whose inference still runs blocks until that inference ends, and the
        # interpreter's own exit would release it: end the process here to keep the timeout bounded.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def run(settings: ServerSettings) -> int:
    """Serve until SIGINT/SIGTERM; the process exit code."""
    return asyncio.run(_serve(settings))
