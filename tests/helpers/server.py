"""The real vinoserve server in-process (gRPC/HTTP on port 0, read back) and loopback port helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from vinoserve.cli import build_settings
from vinoserve.runtime.openvino import Runtime
from vinoserve.server import Server

T = TypeVar("T")

# The CPU plugin defaults to bf16 on some machines; tests that compare numbers ask for f32.
F32 = '{"INFERENCE_PRECISION_HINT":"f32"}'


class RunningServer:
    """A started server; ``grpc_port``/``rest_port`` are the bound ports."""

    def __init__(self, args: list[str], rest: bool = False, runtime: Runtime | None = None) -> None:
        settings = build_settings([*args, "--port", "1", "--rest_port", "2"])
        # -1: bind any free port and read it back
        settings = dataclasses.replace(settings, port=-1, rest_port=-1 if rest else 0)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = Server(settings, runtime)
        self.call(self.server.start())
        self.call(self.server.wait_ready())
        self.grpc_port = self.server.grpc_port
        self.rest_port = self.server.rest_port

    @property
    def grpc_address(self) -> str:
        """``localhost:port`` of the gRPC server."""
        return f"localhost:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        """``http://localhost:port`` of the HTTP server."""
        return f"http://localhost:{self.rest_port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def stop(self) -> None:
        """Graceful stop, then end and close the loop."""
        try:
            self.call(self.server.stop(grace=5))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            if not self.thread.is_alive():
                self.loop.close()


# The ``serve`` fixture: ``serve(args, rest=False, runtime=None)`` starts a server stopped after the test.
Serve = Callable[..., RunningServer]


def free_port() -> int:
    """A loopback port nothing listens on right now (for processes that cannot take port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_models(root: Path, paths: Mapping[str, Path], *flags: str) -> RunningServer:
    """A server (gRPC and REST) of the model directories ``paths`` by name, from a config.json in ``root``,
    each at f32 precision; ``flags`` are added to the command line. The caller stops it."""
    entries = [{"config": {"name": n, "base_path": str(p), "plugin_config": json.loads(F32)}} for n, p in paths.items()]
    config = root / "config.json"
    config.write_text(json.dumps({"model_config_list": entries}))
    return RunningServer(["--config_path", str(config), *flags], rest=True)
