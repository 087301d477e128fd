"""The shape-variant cache on its own: one compile per new key, LRU of idle variants, failures."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.metrics import Metrics
from vinoserve.scheduling.variants import VariantCache, VariantKey


def key(b: int) -> VariantKey:
    return (("x", (b, 10)),)


class Compiler:
    """Stands in for the runtime's compile: records calls; a gate holds chosen keys."""

    def __init__(self) -> None:
        self.calls: list[VariantKey] = []
        self.gates: dict[VariantKey, threading.Event] = {}

    def __call__(self, k: VariantKey) -> Any:
        self.calls.append(k)
        gate = self.gates.get(k)
        if gate is not None:
            gate.wait(10)
        if k[0][1][0] == 13:
            raise VinoserveError(StatusCode.RESHAPE_ERROR, "cannot")
        return f"variant{k[0][1][0]}"


def make(capacity: int) -> tuple[VariantCache[Any], Compiler, Metrics]:
    comp, metrics = Compiler(), Metrics()
    cache: VariantCache[Any] = VariantCache(capacity, comp, ThreadPoolExecutor(2), metrics, ("m", "1"))
    return cache, comp, metrics


def sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name, {"name": "m", "version": "1"}) or 0.0


async def use(cache: VariantCache[Any], b: int) -> Any:
    async with cache.use(lambda: key(b), lambda: "test") as v:
        return v


def test_one_compile_for_concurrent_requests_and_hits() -> None:
    async def go() -> None:
        cache, comp, metrics = make(4)
        got = await asyncio.gather(*(use(cache, 8) for _ in range(5)))
        assert got == ["variant8"] * 5 and comp.calls == [key(8)]
        assert await use(cache, 8) == "variant8" and comp.calls == [key(8)]
        assert sample(metrics, "vinoserve_variant_cache_hits_total") == 1
        assert sample(metrics, "vinoserve_variant_cache_misses_total") == 5

    asyncio.run(go())


def test_lru_eviction_keeps_recent_and_busy() -> None:
    async def go() -> None:
        cache, comp, metrics = make(2)
        for b in (1, 2, 1, 3):  # 2 is least recently used when 3 arrives
            await use(cache, b)
        assert sorted(cache.keys()) == sorted([key(1), key(3)])
        assert sample(metrics, "vinoserve_variant_cache_evictions_total") == 1
        assert sample(metrics, "vinoserve_variants_resident") == 2
        # a variant in use is not evicted under its request; it goes once idle
        async with cache.use(lambda: key(1), lambda: "t"):
            await use(cache, 4)
            await use(cache, 5)
            assert key(1) in cache.keys()
        assert len(cache) == 2

    asyncio.run(go())


def test_other_shapes_served_while_one_compiles() -> None:
    async def go() -> None:
        cache, comp, _ = make(4)
        await use(cache, 1)
        comp.gates[key(8)] = threading.Event()
        slow = asyncio.create_task(use(cache, 8))
        await asyncio.sleep(0.05)
        for _ in range(20):  # served at once while 8 is still compiling
            assert await asyncio.wait_for(use(cache, 1), 1) == "variant1"
        assert not slow.done()
        comp.gates[key(8)].set()
        assert await slow == "variant8"

    asyncio.run(go())


def test_failed_compile_fails_every_waiter_then_retries() -> None:
    async def go() -> None:
        cache, comp, metrics = make(4)
        res = await asyncio.gather(*(use(cache, 13) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, VinoserveError) and r.code == StatusCode.RESHAPE_ERROR for r in res)
        assert "requested x(13,10)" in str(res[0])
        assert comp.calls == [key(13)] and len(cache) == 0
        assert sample(metrics, "vinoserve_reshape_failures_total") == 1
        with pytest.raises(VinoserveError):
            await use(cache, 13)
        assert len(comp.calls) == 2
        assert await use(cache, 2) == "variant2"

    asyncio.run(go())


def test_cancelled_waiter_does_not_cancel_the_compile() -> None:
    async def go() -> None:
        cache, comp, _ = make(4)
        comp.gates[key(8)] = threading.Event()
        first = asyncio.create_task(use(cache, 8))
        second = asyncio.create_task(use(cache, 8))
        await asyncio.sleep(0.05)
        first.cancel()
        comp.gates[key(8)].set()
        assert await second == "variant8"
        assert comp.calls == [key(8)]

    asyncio.run(go())


def test_pinned_variant_serves_every_key_without_compiles_or_metrics() -> None:
    async def go() -> None:
        comp, metrics = Compiler(), Metrics()
        cache: VariantCache[str] = VariantCache(4, comp, ThreadPoolExecutor(2), metrics, ("m", "1"), pinned=True)
        with pytest.raises(VinoserveError) as info:
            await use(cache, 1)  # nothing pinned yet: nothing is compiled on request either
        assert info.value.code == StatusCode.VERSION_NOT_LOADED
        cache.pin("fixed")
        assert cache.last_used == "fixed" and cache.variants() == ["fixed"]
        assert [await use(cache, b) for b in (1, 8, 13, 8)] == ["fixed"] * 4  # 13 would fail to compile
        async with cache.use(lambda: key(2), lambda: "t"):
            assert cache.held == 1
        assert cache.held == 0 and comp.calls == [] and len(cache) == 0
        with pytest.raises(ValueError):
            cache.put(key(1), "other")
        cache.refresh_gauge()
        cache.clear()
        assert cache.variants() == []
        # a fixed-shape version reports no shape-variant series at all, not even zeros
        labelled = {
            s.name for family in metrics.registry.collect() for s in family.samples if s.labels.get("name") == "m"
        }
        assert labelled == set()

    asyncio.run(go())


def test_shape_variants_are_listed_and_held_while_in_use() -> None:
    async def go() -> None:
        cache, comp, metrics = make(4)
        with pytest.raises(ValueError):
            cache.pin("fixed")
        await use(cache, 1)
        async with cache.use(lambda: key(2), lambda: "t"), cache.use(lambda: key(2), lambda: "t"):
            assert cache.held == 2
        assert cache.held == 0 and sorted(cache.variants()) == ["variant1", "variant2"]
        cache.clear()
        assert cache.variants() == [] and sample(metrics, "vinoserve_variants_resident") == 0

    asyncio.run(go())


def test_warmup_compiles_without_counting_a_request() -> None:
    async def go() -> None:
        cache, comp, metrics = make(4)
        async with cache.use(lambda: key(8), lambda: "warmup x(8,10)", warmup=True) as v:
            assert v == "variant8"
        assert comp.calls == [key(8)] and cache.last_used is None  # metadata is not moved by warm-up
        assert sample(metrics, "vinoserve_variant_cache_misses_total") == 0
        assert sample(metrics, "vinoserve_variant_cache_hits_total") == 0
        reshapes = metrics.registry.get_sample_value(
            "vinoserve_reshapes_total", {"name": "m", "version": "1", "cause": "warmup"}
        )
        assert reshapes == 1
        assert await use(cache, 8) == "variant8" and comp.calls == [key(8)]
        assert sample(metrics, "vinoserve_variant_cache_misses_total") == 0
        assert sample(metrics, "vinoserve_variant_cache_hits_total") == 1
        assert cache.last_used == "variant8"

    asyncio.run(go())


def test_top_keys_by_uses_then_recency() -> None:
    async def go() -> None:
        cache, _, _ = make(4)
        cache.put(key(1), "loaded")  # compiled at load, never served: not a shape this version served
        for b in (2, 3, 3, 4, 2, 3):
            await use(cache, b)
        async with cache.use(lambda: key(5), lambda: "warmup", warmup=True):
            pass  # warmed, never served
        assert cache.top_keys(4) == [key(3), key(2), key(4)]
        assert cache.top_keys(2) == [key(3), key(2)]
        await use(cache, 4)  # 2 and 4 tie at two uses: the more recent first
        assert cache.top_keys(3) == [key(3), key(4), key(2)]
        for b in (6, 7, 8):  # 3 is evicted, and still counts as the shape served most
            await use(cache, b)
        assert key(3) not in cache.keys() and cache.top_keys(1) == [key(3)]

    asyncio.run(go())


def test_use_counts_stay_bounded() -> None:
    async def go() -> None:
        cache, _, _ = make(1)
        for _ in range(3):
            await use(cache, 1)
        for b in range(20, 200):  # a client sending ever new shapes
            await use(cache, b)
        assert len(cache._uses) <= 64
        assert cache.top_keys(1) == [key(1)]

    asyncio.run(go())


def test_a_compile_that_ends_after_clear_is_dropped() -> None:
    """The version retired while a shape compiled for a client that went away: the variant is not kept."""

    async def go() -> None:
        cache, comp, metrics = make(4)
        comp.gates[key(8)] = threading.Event()
        waiter = asyncio.create_task(use(cache, 8))
        await asyncio.sleep(0.05)
        waiter.cancel()
        cache.clear()
        comp.gates[key(8)].set()
        for _ in range(100):
            if not cache._pending:
                break
            await asyncio.sleep(0.02)
        assert len(cache) == 0 and cache.keys() == []
        assert sample(metrics, "vinoserve_reshapes_total") == 0
        assert sample(metrics, "vinoserve_variants_resident") == 0

    asyncio.run(go())
