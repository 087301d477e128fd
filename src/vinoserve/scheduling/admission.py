"""Admission of requests to one model version: a bound on how many are in progress at once.

A request is in progress from the moment it is admitted until it leaves, whatever it waits for in
between (a shape variant to compile, a free infer request, later a batch to fill). Beyond the bound
the next request is refused at once with OVERLOADED rather than queued without limit. Retiring a
version waits on :meth:`Admission.drained` for every admitted request to leave.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from ..errors import StatusCode, VinoserveError

# Requests in progress on one version (running, or waiting for a compile or an infer request) beyond
# which the next one is refused with OVERLOADED: a count, so memory held by waiting requests is bounded.
MAX_IN_PROGRESS = 4096


class Admission:
    """Counts the requests in progress on one version; ``with admission:`` holds one place."""

    def __init__(self, what: str, limit: int = MAX_IN_PROGRESS) -> None:
        self.what = what  # "model m version 1", for the refusal's text
        self.limit = limit
        self._in_progress = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_progress(self) -> int:
        """Requests admitted and not yet left."""
        return self._in_progress

    def __enter__(self) -> None:
        """Admit one request, or raise OVERLOADED when ``limit`` are in progress already."""
        if self._in_progress >= self.limit:
            raise VinoserveError(StatusCode.OVERLOADED, f"more than {self.limit} requests in progress for {self.what}")
        self._in_progress += 1
        self._idle.clear()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._in_progress -= 1
        if self._in_progress == 0:
            self._idle.set()

    async def drained(self) -> None:
        """Return once no request is in progress."""
        await self._idle.wait()
