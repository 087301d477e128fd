"""The infer requests of one compiled variant, handed out one inference at a time.

The pool decides *on which* infer request an inference runs and when one is free again; how to run
an inference on one request is the runtime's business (:class:`Slot`). A slot goes back to the pool
only once the runtime is done with it, whatever happened to the caller: a caller cancelled while its
inference runs (a client's deadline) leaves the slot to come back when that inference completes, so
the next caller never gets a request the device still works on.

Waiters are served in arrival order, and a freed slot goes straight to the oldest waiter.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)
In = TypeVar("In")  # what one inference takes
Out = TypeVar("Out")  # what one inference gives back


class Slot(Protocol[In_contra, Out_co]):
    """One infer request: start an inference, then read its result once it is done."""

    def start(self, inputs: In_contra) -> asyncio.Future[None]:
        """Start one inference; the future completes when the device is done with this slot."""

    def result(self) -> Out_co:
        """The outputs of the inference that just completed; raises if it failed."""


class RequestPool(Generic[In, Out]):
    """A fixed set of slots; :meth:`run` waits for a free one, runs on it and gives it back."""

    def __init__(self, slots: Iterable[Slot[In, Out]]) -> None:
        self._idle: list[Slot[In, Out]] = list(slots)
        self.size = len(self._idle)
        self._waiters: deque[asyncio.Future[Slot[In, Out]]] = deque()

    @property
    def idle(self) -> int:
        """Slots free right now (all ``size`` of them when nothing runs)."""
        return len(self._idle)

    async def run(self, inputs: In) -> tuple[Out, float, float]:
        """One inference on a free slot: (result, seconds waited for the slot, seconds running)."""
        t0 = time.perf_counter()
        slot = self._idle.pop() if self._idle else await self._wait()
        t1 = time.perf_counter()
        try:
            done = slot.start(inputs)
        except BaseException:
            self._put_back(slot)  # nothing started: the slot is free at once
            raise
        try:
            # shield: cancelling the caller must not cancel ``done``, which only the device completes
            await asyncio.shield(done)
        except BaseException:
            # the caller was cancelled while the inference runs: the slot comes back when it ends
            done.add_done_callback(lambda _: self._put_back(slot))
            raise
        t2 = time.perf_counter()
        try:
            return slot.result(), t1 - t0, t2 - t1
        finally:
            self._put_back(slot)

    async def _wait(self) -> Slot[In, Out]:
        fut: asyncio.Future[Slot[In, Out]] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._put_back(fut.result())  # handed a slot just as the caller went away
            elif fut in self._waiters:  # a freed slot may have passed over it already
                self._waiters.remove(fut)
            raise

    def _put_back(self, slot: Slot[In, Out]) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._idle.append(slot)
