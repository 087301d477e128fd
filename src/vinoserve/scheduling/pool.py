"""The infer requests of one compiled variant, handed out one inference at a time.

The pool decides *on which* infer request an inference runs and when one is free again; how to run
an inference on one request is the runtime's business (:class:`Slot`). A slot goes back to the pool
only once the runtime is done with it, whatever happened to the caller: a caller cancelled while its
inference runs (a client's deadline) leaves the slot to come back when that inference completes, so
the next caller never gets a request the device still works on.

Waiting inferences are served in arrival order. A slot that comes free starts the oldest one at once,
from the completion callback, before any caller's task runs: the device is not left idle while the
event loop gets round to the waiting caller (with as many infer requests as streams, that gap was a
few per cent of a busy device's time).

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


class _Job(Generic[In, Out]):
    """One inference handed off: its inputs, when it was asked for and started, and its caller's future."""

    __slots__ = ("inputs", "size", "future", "queued_at", "started_at")

    def __init__(self, inputs: In, size: int, future: asyncio.Future[tuple[Out, float, float]]) -> None:
        self.inputs = inputs
        self.size = size
        self.future = future
        self.queued_at = time.perf_counter()
        self.started_at = 0.0


class RequestPool(Generic[In, Out]):
    """A fixed set of slots; :meth:`run` runs one inference on a free one (see the module's docstring)."""

    def __init__(self, slots: Iterable[Slot[In, Out]]) -> None:
        self._idle: list[Slot[In, Out]] = list(slots)
        self.size = len(self._idle)
        self._waiting: deque[_Job[In, Out]] = deque()
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
        job: _Job[In, Out] = _Job(inputs, size, asyncio.get_running_loop().create_future())
        if self._idle:
            self._start(self._idle.pop(), job)
        else:
            self._waiting.append(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            # not started yet: it leaves the queue; started: its slot comes back when it ends (_finish)
            if job in self._waiting:
                self._waiting.remove(job)
            elif job.future.done() and not job.future.cancelled():
                job.future.exception()  # answered just as the caller went away: mark it read
            raise

    def _start(self, slot: Slot[In, Out], job: _Job[In, Out]) -> None:
        """Start ``job`` on ``slot``; when the device is done, :meth:`_finish` runs in the loop."""
        job.started_at = time.perf_counter()
        try:
            done = slot.start(job.inputs)
        except Exception as exc:
            job.future.set_exception(exc)
            self._put_back(slot)  # nothing started: the slot is free at once
            return
        done.add_done_callback(lambda _: self._finish(slot, job))

    def _finish(self, slot: Slot[In, Out], job: _Job[In, Out]) -> None:
        """The inference of ``job`` ended: read its result off the slot, start the next job on that
        slot at once (the device does not wait for the caller's task to run), then answer the caller."""
        took = time.perf_counter() - job.started_at
        error: Exception | None = None
        try:
            out = slot.result()
        except Exception as exc:
            error = exc
        seconds = slot.device_seconds
        if seconds is not None:
            self._learn(seconds, job.size)
        self._put_back(slot)
        if job.future.done():  # the caller went away (a client's deadline): nobody reads this one
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result((out, job.started_at - job.queued_at, took))

    def _put_back(self, slot: Slot[In, Out]) -> None:
        """A free slot goes to the oldest waiting job, started at once, or back to the idle ones."""
        while self._waiting:
            job = self._waiting.popleft()
            if not job.future.done():
                self._start(slot, job)
                return
        self._idle.append(slot)
