"""The infer-request pool on its own: a slot per inference, handed back only once the device is done."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.scheduling.pool import RequestPool

WAIT = 10  # seconds: generous, nothing here waits on anything slow


class FakeSlot:
    """An infer request whose inference ends when the test says so (``finish``), or at once with ``auto``.

    ``start`` on a slot the device still runs on fails the test: that is what the pool must prevent.
    """

    def __init__(self, n: int, auto: bool = False) -> None:
        self.n = n
        self.auto = auto
        self.running: asyncio.Future[None] | None = None
        self.starts: list[object] = []
        self.fail_start = False
        self.fail_result = False
        self.on_result: Callable[[], object] | None = None
        self.device_seconds: float | None = None  # untimed: every inference is handed off
        self.inline: list[object] = []
        self.inline_seconds = 0.0  # how long an inline inference blocks

    def run(self, inputs: object) -> tuple[int, object]:
        assert self.running is None or self.running.done(), f"slot {self.n} run inline while still running"
        self.inline.append(inputs)
        time.sleep(self.inline_seconds)
        if self.fail_result:
            raise VinoserveError(StatusCode.INTERNAL, "inference error")
        return self.n, inputs

    def start(self, inputs: object) -> asyncio.Future[None]:
        assert self.running is None or self.running.done(), f"slot {self.n} started while still running"
        if self.fail_start:
            raise VinoserveError(StatusCode.INTERNAL, "could not start")
        self.starts.append(inputs)
        self.running = asyncio.get_running_loop().create_future()
        if self.auto:
            asyncio.get_running_loop().call_soon(self.finish)
        return self.running

    def finish(self) -> None:
        assert self.running is not None
        self.running.set_result(None)

    def result(self) -> tuple[int, object]:
        if self.on_result is not None:
            self.on_result()
        if self.fail_result:
            raise VinoserveError(StatusCode.INTERNAL, "inference error")
        return self.n, self.starts[-1]


async def settle() -> None:
    """Let every ready callback and task step run."""
    for _ in range(10):
        await asyncio.sleep(0)


def test_at_most_size_run_at_once_and_waiters_in_order() -> None:
    async def go() -> None:
        slots = [FakeSlot(0), FakeSlot(1)]
        pool: RequestPool[int, tuple[int, object]] = RequestPool(slots)
        tasks = [asyncio.create_task(pool.run(i)) for i in range(6)]
        await settle()
        assert pool.idle == 0 and sum(len(s.starts) for s in slots) == 2
        started = 2
        while started < 6:  # the device finishes one at a time; the oldest waiter gets that slot
            running = next(s for s in slots if s.running is not None and not s.running.done())
            running.finish()
            await settle()
            started += 1
            assert sum(len(s.starts) for s in slots) == started
            assert running.starts[-1] == started - 1
        for s in slots:
            s.finish()
        results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        assert [inputs for (_, inputs), _, _ in results] == list(range(6))
        assert all(waited >= 0 and took >= 0 for _, waited, took in results)
        assert pool.idle == pool.size == 2

    asyncio.run(go())


def test_cancelled_caller_frees_the_slot_only_when_the_inference_ends() -> None:
    async def go() -> None:
        slot = FakeSlot(0)
        pool: RequestPool[str, tuple[int, object]] = RequestPool([slot])
        first = asyncio.create_task(pool.run("first"))
        await settle()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert pool.idle == 0  # the device still runs on it
        second = asyncio.create_task(pool.run("second"))
        await settle()
        assert slot.starts == ["first"] and not second.done()
        slot.finish()  # the cancelled inference ends: now the slot serves the waiter
        await settle()
        assert slot.starts == ["first", "second"]
        slot.finish()
        (n, inputs), _, _ = await asyncio.wait_for(second, WAIT)
        assert inputs == "second" and pool.idle == 1

    asyncio.run(go())


def test_cancelled_waiter_leaves_the_queue() -> None:
    async def go() -> None:
        slot = FakeSlot(0)
        pool: RequestPool[str, tuple[int, object]] = RequestPool([slot])
        first = asyncio.create_task(pool.run("first"))
        await settle()
        waiting = asyncio.create_task(pool.run("gone"))
        await settle()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        slot.finish()
        await asyncio.wait_for(first, WAIT)
        assert slot.starts == ["first"] and pool.idle == 1
        slot.auto = True
        assert (await asyncio.wait_for(pool.run("next"), WAIT))[0] == (0, "next")

    asyncio.run(go())


def test_waiter_cancelled_as_it_is_handed_a_slot_gives_it_back() -> None:
    async def go() -> None:
        slot = FakeSlot(0)
        pool: RequestPool[str, tuple[int, object]] = RequestPool([slot])
        first = asyncio.create_task(pool.run("first"))
        await settle()
        waiting = asyncio.create_task(pool.run("gone"))
        await settle()
        # cancelled in the same step of the loop in which the first run hands it the slot
        slot.on_result = lambda: asyncio.get_running_loop().call_soon(waiting.cancel)
        slot.finish()
        await asyncio.wait_for(first, WAIT)
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert slot.starts == ["first"] and pool.idle == 1
        slot.on_result, slot.auto = None, True
        assert (await asyncio.wait_for(pool.run("next"), WAIT))[0] == (0, "next")

    asyncio.run(go())


def test_a_failed_start_or_inference_gives_the_slot_back() -> None:
    async def go() -> None:
        slot = FakeSlot(0, auto=True)
        pool: RequestPool[str, tuple[int, object]] = RequestPool([slot])
        slot.fail_start = True
        with pytest.raises(VinoserveError, match="could not start"):
            await asyncio.wait_for(pool.run("a"), WAIT)
        assert pool.idle == 1
        slot.fail_start, slot.fail_result = False, True
        with pytest.raises(VinoserveError, match="inference error"):
            await asyncio.wait_for(pool.run("b"), WAIT)
        assert pool.idle == 1
        slot.fail_result = False
        assert (await asyncio.wait_for(pool.run("c"), WAIT))[0] == (0, "c")

    asyncio.run(go())


def test_fast_inferences_run_inline_once_timed_and_large_or_slow_ones_are_handed_off() -> None:
    async def go() -> None:
        slot = FakeSlot(0, auto=True)
        pool: RequestPool[str, tuple[int, object]] = RequestPool([slot])
        slot.device_seconds = 20e-6  # 20 µs for 40 bytes: a tiny model
        for i in range(3):  # timed first, through the runtime's threads
            assert (await asyncio.wait_for(pool.run(f"timed{i}", 40), WAIT))[0] == (0, f"timed{i}")
        assert slot.inline == [] and len(slot.starts) == 3
        (_, inputs), waited, took = await asyncio.wait_for(pool.run("fast", 40), WAIT)
        assert inputs == "fast" and slot.inline == ["fast"] and len(slot.starts) == 3
        assert waited == 0.0 and took >= 0 and pool.idle == 1
        # the same model on 1000× the bytes is predicted at ~20 ms: handed off
        await asyncio.wait_for(pool.run("large", 40_000), WAIT)
        assert slot.starts[-1] == "large" and slot.inline == ["fast"]
        # one inference preempted for 5 ms does not send the next ones off the loop ...
        slot.inline_seconds = 0.005
        await asyncio.wait_for(pool.run("preempted", 40), WAIT)
        assert pool.inline(40)
        # ... but a model that keeps taking 5 ms inline is handed off again within a few inferences
        runs = 1
        while pool.inline(40) and runs < 20:
            await asyncio.wait_for(pool.run("slow", 40), WAIT)
            runs += 1
        assert not pool.inline(40) and runs < 12
        await asyncio.wait_for(pool.run("after", 40), WAIT)
        assert slot.starts[-1:] == ["after"] and "after" not in slot.inline

    asyncio.run(go())


def test_inline_needs_a_free_slot_and_a_failure_gives_it_back() -> None:
    async def go() -> None:
        slot = FakeSlot(0)
        pool: RequestPool[str, tuple[int, object]] = RequestPool([slot])
        slot.device_seconds = 1e-6
        for i in range(3):
            task = asyncio.create_task(pool.run(f"timed{i}", 40))
            await settle()
            slot.finish()
            await asyncio.wait_for(task, WAIT)
        assert pool.inline(40)
        busy = asyncio.create_task(pool.run("busy", 1_000_000))  # handed off: holds the only slot
        await settle()
        assert not pool.inline(40)
        queued = asyncio.create_task(pool.run("queued", 40))  # no free slot: it waits, then is handed off
        await settle()
        assert slot.starts[-1] == "busy" and not queued.done()
        slot.finish()
        await settle()
        assert slot.starts[-1:] == ["queued"]
        slot.finish()
        await asyncio.wait_for(asyncio.gather(busy, queued), WAIT)
        slot.fail_result = True
        with pytest.raises(VinoserveError, match="inference error"):
            await asyncio.wait_for(pool.run("fails", 40), WAIT)
        assert slot.inline[-1] == "fails" and pool.idle == 1

    asyncio.run(go())
