"""Graceful shutdown bookkeeping shared by the gRPC and REST layers.

On SIGTERM/SIGINT the server *closes* the drain: readiness turns false and new requests are refused
with ``SHUTTING_DOWN``. Requests already running are tracked by their asyncio task; the server waits
for them up to ``--shutdown_timeout_s`` and then *cuts* the rest: their tasks are cancelled, and the
protocol layer that sees the cancellation answers UNAVAILABLE / 503 instead of dropping the call.
"""

from __future__ import annotations

import asyncio

from .errors import StatusCode, VinoserveError


class Drain:
    """The in-flight requests of one server and whether it is shutting down."""

    def __init__(self) -> None:
        self.closing = False
        self.cutting = False
        self.timeout_s = 0.0
        self._tasks: set[asyncio.Task[object]] = set()
        self._idle: asyncio.Event | None = None  # made inside the loop, on first use

    def close(self, timeout_s: float) -> None:
        """Refuse new requests from now on; ``timeout_s`` is named in the error of cut requests."""
        self.closing = True
        self.timeout_s = timeout_s

    def enter(self) -> asyncio.Task[object] | None:
        """Track the current request's task; returns it (for :meth:`leave`)."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        return task

    def leave(self, task: asyncio.Task[object] | None) -> None:
        """The request of ``task`` ended (answered, failed or cut)."""
        if task is not None:
            self._tasks.discard(task)
        if not self._tasks and self._idle is not None:
            self._idle.set()

    @property
    def in_flight(self) -> int:
        """Requests being served now."""
        return len(self._tasks)

    def was_cut(self, task: asyncio.Task[object] | None) -> bool:
        """Whether a CancelledError in ``task`` came from :meth:`cut` (then it is consumed here).

        A cancellation from elsewhere (the client went away, the loop is ending) is left alone.
        """
        if not self.cutting or task is None or task.cancelling() != 1:
            return False
        task.uncancel()
        return True

    async def wait(self, timeout_s: float) -> bool:
        """Until no request is in flight, at most ``timeout_s``; True when drained."""
        if not self._tasks:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return not self._tasks
        return True

    def cut(self) -> int:
        """Cancel every request still in flight; returns how many."""
        self.cutting = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return len(tasks)

    def refused(self) -> VinoserveError:
        """The error of a request that arrives while shutting down."""
        return VinoserveError(StatusCode.SHUTTING_DOWN)

    def cut_error(self) -> VinoserveError:
        """The error of a request cancelled when the drain timed out."""
        return VinoserveError(
            StatusCode.SHUTTING_DOWN, f"request cancelled after --shutdown_timeout_s {self.timeout_s:g}"
        )
