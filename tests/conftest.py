"""Fixtures shared by every test; the helpers they use live in ``tests/helpers``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vinoserve.runtime.openvino import Runtime

from .helpers.server import RunningServer, Serve


@pytest.fixture
def serve() -> Iterator[Serve]:
    """``serve(args, rest=False, runtime=None)`` starts a real server; all are stopped after the test."""
    started: list[RunningServer] = []

    def start(args: list[str], rest: bool = False, runtime: Runtime | None = None) -> RunningServer:
        s = RunningServer(args, rest, runtime)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
