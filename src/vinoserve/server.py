"""The server process: gRPC and HTTP in one event loop over one data plane; graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from .config import ServerSettings
from .dataplane import DataPlane
from .manager.manager import ModelManager
from .metrics import Metrics
from .runtime.openvino import Runtime

log = logging.getLogger(__name__)
# In-flight requests get this long to finish on SIGTERM/SIGINT before they are cut.
SHUTDOWN_GRACE_S = 30.0


class Server:
    """Start, serve and stop. Ports given as 0 in tests are read back as ``grpc_port``/``rest_port``."""

    def __init__(self, settings: ServerSettings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.runtime = runtime or Runtime(settings.cache_dir)
        self.metrics = Metrics()
        self.manager = ModelManager(settings.models, self.runtime, self.metrics, settings.config_path,
                                    settings.shape_variants)
        self.dataplane = DataPlane(self.manager, self.metrics, settings.max_request_bytes)
        self.grpc_port = 0
        self.rest_port = 0
        self._grpc: Any = None
        self._rest: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, bind_grpc: bool = True, bind_rest: bool = True) -> None:
        """Open the ports (``settings.port``/``rest_port``; -1 here means 'any free port'), then load."""
        s = self.settings
        if s.port and bind_grpc:
            from .protocol.grpc.server import start_grpc_server

            self._grpc, self.grpc_port = await start_grpc_server(
                self.dataplane, s.grpc_bind_address, max(s.port, 0), s.max_request_bytes)
            log.info("gRPC server listening on %s:%d", s.grpc_bind_address, self.grpc_port)
        if s.rest_port and bind_rest:
            from .protocol.rest.app import start_rest_server

            self._rest, self.rest_port = await start_rest_server(
                self.dataplane, s.rest_bind_address, max(s.rest_port, 0), s.max_request_bytes,
                s.metrics_enable)
            log.info("REST server listening on %s:%d", s.rest_bind_address, self.rest_port)
        self._tasks.append(asyncio.create_task(self.manager.start()))
        if s.file_system_poll_wait_seconds > 0:
            self._tasks.append(asyncio.create_task(self.manager.watch(s.file_system_poll_wait_seconds)))

    async def wait_ready(self) -> None:
        """Until every model had its first load attempt."""
        await self._tasks[0]

    async def stop(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace`` s), release models."""
        for t in self._tasks[1:]:
            t.cancel()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._rest is not None:
            await self._rest.cleanup()
        with contextlib.suppress(asyncio.CancelledError):
            await self._tasks[0]
        await self.manager.stop()
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
    log.info("Shutting down: finishing in-flight requests")
    await server.stop()
    return 0


def run(settings: ServerSettings) -> int:
    """Serve until SIGINT/SIGTERM; the process exit code."""
    return asyncio.run(_serve(settings))
