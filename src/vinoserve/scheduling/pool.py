"""The infer requests of one compiled variant, handed out one inference at a time.

The pool decides *on which* infer request an inference runs and when one is free again; how to run
an inference on one request is the runtime's business (:class:`Slot`). A slot goes back to the pool
only once the runtime is done with it, whatever happened to the caller: a caller cancelled while its
inference runs (a client's deadline) leaves the slot to come back when that inference completes, so
the next caller never gets a request the device still works on.

Waiters are served in arrival order, and a freed slot goes straight to the oldest waiter.

*Inline or handed off.* Handing an inference to the runtime's threads and back to the event loop
costs two thread hops, 0.2–0.35 ms here: more than a small model takes to run. The pool times the
inferences of its variant (seconds per input byte, a moving average) and runs one predicted to
take less than :data:`INLINE_BELOW_S` on the calling thread, which blocks the loop that long (the
runtime releases the GIL meanwhile); anything predicted longer, and every inference until a few
have been timed, is handed off. Per byte, because one variant of a dynamic shape serves every
batch size: a large batch of a small model is predicted long and handed off. An inline inference
cannot be cancelled half-way (the loop does not run meanwhile), so its slot is back before anything
else runs.
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

# An inference predicted shorter than this runs inline: about what a hand-off and back costs.
INLINE_BELOW_S = 0.0003
_TIMED_FIRST = 3  # inferences timed (handed off) before the first inline one
_SMOOTHING = 0.2  # weight of the newest timing in the moving average
# A timing counts for at most this many times the average: one inference preempted on a busy machine
# does not send the next ones off the loop, while a model that is really slower gets there in a few runs.
_OUTLIER = 4.0


class Slot(Protocol[In_contra, Out_co]):
    """One infer request: start an inference, then read its result once it is done; or run one inline."""

    def start(self, inputs: In_contra) -> asyncio.Future[None]:
        """Start one inference; the future completes when the device is done with this slot."""

    def result(self) -> Out_co:
        """The outputs of the inference that just completed; raises if it failed."""

    def run(self, inputs: In_contra) -> Out_co:
        """One inference to its end on the calling thread; its outputs, or raises."""

    @property
    def device_seconds(self) -> float | None:
        """How long the device took on the last inference started with :meth:`start` (None: unknown)."""


class RequestPool(Generic[In, Out]):
    """A fixed set of slots; :meth:`run` waits for a free one, runs on it and gives it back."""

    def __init__(self, slots: Iterable[Slot[In, Out]]) -> None:
        self._idle: list[Slot[In, Out]] = list(slots)
        self.size = len(self._idle)
        self._waiters: deque[asyncio.Future[Slot[In, Out]]] = deque()
        self._per_byte = 0.0  # seconds per input byte, moving average
        self._timed = 0

    @property
    def idle(self) -> int:
        """Slots free right now (all ``size`` of them when nothing runs)."""
        return len(self._idle)

    def inline(self, size: int) -> bool:
        """Whether an inference on ``size`` input bytes would run on the calling thread now."""
        return bool(self._idle) and self._timed >= _TIMED_FIRST and self._per_byte * size < INLINE_BELOW_S

    def _learn(self, seconds: float, size: int) -> None:
        per_byte = seconds / max(size, 1)
        if self._timed == 0:
            self._per_byte = per_byte
        else:
            per_byte = min(per_byte, _OUTLIER * self._per_byte)
            self._per_byte += _SMOOTHING * (per_byte - self._per_byte)
        self._timed += 1

    async def run(self, inputs: In, size: int = 1) -> tuple[Out, float, float]:
        """One inference on a free slot: (result, seconds waited for the slot, seconds running).

        ``size``: the bytes of ``inputs``, which scale the predicted time (see the module's docstring).
        """
        if self.inline(size):
            slot = self._idle.pop()
            t = time.perf_counter()
            try:
                out = slot.run(inputs)
            finally:
                self._put_back(slot)
            took = time.perf_counter() - t
            self._learn(took, size)
            return out, 0.0, took
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
            seconds = slot.device_seconds
            if seconds is not None:
                self._learn(seconds, size)
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
