"""A bounded LRU cache of compiled shape variants of one model version (SPEC §7.1–7.3).

A request for a shape already compiled is served at once. A request for a new shape starts one
compile off the event loop; every request that needs the same shape awaits that one compile, while
requests for other shapes keep being served. The least recently used *idle* variant is evicted when
the cache holds more than its capacity; a variant in use is never evicted under a request.

A version whose shapes are fixed at load (static, ``-1`` or ranges) is served through the same cache,
*pinned*: the one variant compiled at load serves every request, is never evicted, nothing is compiled
on request, and it is not counted as a shape variant (no hits, misses, reshapes or resident gauge).

Warm-up (SPEC §7.5) goes through the same path with ``warmup=True``: it is not counted as a cache
hit or miss, does not count as a use, and leaves ``last_used`` (what metadata shows) alone. The
cache counts the requests served per key, evicted ones included, so a new version can warm the
shapes this one served most (:meth:`VariantCache.top_keys`); the count is one dict update per
request, and the table is bounded (the least used keys are dropped) whatever shapes clients send.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

import numpy as np

from ..errors import StatusCode, VinoserveError
from ..metrics import Metrics
from ..runtime.openvino import CompiledVariant
from .pool import RequestPool

log = logging.getLogger(__name__)

# One concrete shape per input, sorted by input name.
VariantKey = tuple[tuple[str, tuple[int, ...]], ...]
# Keys whose uses are counted, at least; beyond, the least used half is dropped.
_COUNTED_KEYS = 64


def describe(key: VariantKey) -> str:
    """``a(8,3,224,224) b(8,10)`` for logs."""
    return " ".join(f"{n}({','.join(map(str, s))})" for n, s in key)


@dataclass(frozen=True, slots=True, eq=False)
class Variant:
    """A compiled variant with the pool of its infer requests: what a request runs on."""

    compiled: CompiledVariant
    pool: RequestPool[Mapping[str, np.ndarray], dict[str, np.ndarray]]

    @classmethod
    def of(cls, compiled: CompiledVariant) -> Variant:
        """Pool every infer request of ``compiled``."""
        return cls(compiled, RequestPool(compiled.slots))


V = TypeVar("V")  # what ``compile`` makes: a Variant when serving, anything in the cache's own tests


@dataclass(slots=True)
class _Entry(Generic[V]):
    variant: V
    users: int = 0  # requests holding it now


class VariantCache(Generic[V]):
    """Compiled variants by key; ``compile`` is blocking and runs in ``executor``.

    With ``pinned`` the cache serves the one variant given to :meth:`pin`, for every key.
    """

    def __init__(
        self,
        capacity: int,
        compile: Callable[[VariantKey], V],
        executor: Executor,
        metrics: Metrics,
        labels: tuple[str, str],
        *,
        pinned: bool = False,
    ) -> None:
        self.capacity = max(1, capacity)
        self.pinned = pinned
        self._compile = compile
        self._executor = executor
        self._metrics = metrics
        self._labels = labels
        self._series = metrics.version_series(*labels)  # hits and misses: None without per-request metrics
        self._ready: OrderedDict[VariantKey, _Entry[V]] = OrderedDict()
        self._pending: dict[VariantKey, asyncio.Future[_Entry[V]]] = {}
        # set by clear(): a compile still running for a request that went away is dropped when it ends
        self._closed = False
        self._pin: _Entry[V] | None = None
        self.last_used: V | None = None
        # requests served per key (warm-up not counted), least recently used first
        self._uses: dict[VariantKey, int] = {}
        self._counted = max(_COUNTED_KEYS, 4 * self.capacity)

    def __len__(self) -> int:
        return len(self._ready)

    def keys(self) -> list[VariantKey]:
        """Resident shape variants, least recently used first (none when pinned)."""
        return list(self._ready)

    def top_keys(self, k: int) -> list[VariantKey]:
        """Up to ``k`` keys that served requests, most uses first (ties: most recent first)."""
        served = sorted(reversed(self._uses.items()), key=lambda item: -item[1])
        return [key for key, _ in served[:k]]

    def variants(self) -> list[V]:
        """Every variant held: the pinned one, or the resident shape variants."""
        return [self._pin.variant] if self._pin is not None else [e.variant for e in self._ready.values()]

    @property
    def held(self) -> int:
        """Requests holding a variant right now (inside :meth:`use`)."""
        pin = self._pin.users if self._pin is not None else 0
        return pin + sum(e.users for e in self._ready.values())

    def pin(self, variant: V) -> None:
        """Serve every key with ``variant`` (compiled at load); only for a ``pinned`` cache."""
        if not self.pinned:
            raise ValueError("pin() on a cache of shape variants")
        self._pin = _Entry(variant)
        self.last_used = variant

    def put(self, key: VariantKey, variant: V) -> None:
        """Add a variant compiled elsewhere (at load or warm-up)."""
        if self.pinned:
            raise ValueError("put() on a pinned cache")
        self._ready[key] = _Entry(variant)
        self._ready.move_to_end(key)
        self.last_used = variant
        self._evict()

    def use(self, key: Callable[[], VariantKey], cause: Callable[[], str], *, warmup: bool = False) -> Held[V]:
        """``async with cache.use(key, cause) as variant``: the variant for the request's key, compiled
        first if needed, and held (not evictable) inside the block.

        Both are computed only when needed: ``key`` not at all by a pinned cache, ``cause`` (why, for
        the log and the reshape metric) only when a compile is needed. ``warmup``: not a request (see
        the module's docstring).
        """
        return Held(self, key, cause, warmup)

    async def _enter(self, key: Callable[[], VariantKey], cause: Callable[[], str], warmup: bool) -> _Entry[V]:
        if self.pinned:
            if self._pin is None:
                raise VinoserveError(StatusCode.VERSION_NOT_LOADED)
            entry = self._pin
        else:
            k = key()
            entry = await self._get(k, cause, count=not warmup)
            if not warmup:
                self._count(k)
        entry.users += 1
        if not warmup:
            self.last_used = entry.variant
        return entry

    def _count(self, key: VariantKey) -> None:
        self._uses[key] = self._uses.pop(key, 0) + 1  # re-inserted: the dict's order is recency
        if len(self._uses) > self._counted:
            keep = set(self.top_keys(self._counted // 2))
            self._uses = {k: n for k, n in self._uses.items() if k in keep}

    def _leave(self, entry: _Entry[V]) -> None:
        entry.users -= 1
        if len(self._ready) > self.capacity:
            self._evict()

    async def _get(self, key: VariantKey, cause: Callable[[], str], count: bool) -> _Entry[V]:
        entry = self._ready.get(key)
        if entry is not None:
            self._ready.move_to_end(key)
            if count and self._series is not None:
                self._series.variant_cache()[0].inc()
            return entry
        if count and self._series is not None:
            self._series.variant_cache()[1].inc()
        fut = self._pending.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            fut.add_done_callback(_consume)
            self._pending[key] = fut
            asyncio.get_running_loop().create_task(self._build(key, cause(), fut))
        # shield: a waiter whose client goes away must not cancel the compile others wait on
        return await asyncio.shield(fut)

    async def _build(self, key: VariantKey, cause: str, fut: asyncio.Future[_Entry[V]]) -> None:
        name, version = self._labels
        log.info("Reshaping model %s version %s to %s (cause: %s)", name, version, describe(key), cause)
        start = time.perf_counter()
        try:
            variant = await asyncio.get_running_loop().run_in_executor(self._executor, self._compile, key)
        except BaseException as exc:
            self._pending.pop(key, None)
            if self._closed:  # the version retired meanwhile (its model may already be released)
                fut.set_exception(VinoserveError(StatusCode.VERSION_RETIRED))
                return
            self._metrics.reshape_failures.labels(*self._labels).inc()
            log.warning("Reshape of model %s version %s to %s failed: %s", name, version, describe(key), exc)
            # the client learns which shape failed; OpenVINO's own text stays in the log
            code = exc.code if isinstance(exc, VinoserveError) else StatusCode.INTERNAL
            fut.set_exception(VinoserveError(code, f"requested {describe(key)}"))
            return
        if self._closed:  # the version retired while this compiled: nobody may use it, nothing to count
            self._pending.pop(key, None)
            fut.set_exception(VinoserveError(StatusCode.VERSION_RETIRED))
            return
        took = time.perf_counter() - start
        self._metrics.reshapes.labels(name, version, cause.split(" ")[0]).inc()
        self._metrics.reshape_time.labels(*self._labels).observe(took)
        log.info("Reshaped model %s version %s to %s in %.3f s (cause: %s)", name, version, describe(key), took, cause)
        entry = _Entry(variant)
        self._ready[key] = entry
        self._pending.pop(key, None)
        fut.set_result(entry)
        self._evict(keep=key)

    def _evict(self, keep: VariantKey | None = None) -> None:
        """Drop least recently used idle variants while over capacity."""
        for key in list(self._ready):
            if len(self._ready) <= self.capacity:
                break
            entry = self._ready[key]
            if entry.users == 0 and key != keep:
                del self._ready[key]
                self._metrics.variant_evictions.labels(*self._labels).inc()
                log.info("Evicted shape variant %s of model %s version %s", describe(key), *self._labels)
        self._metrics.variants_resident.labels(*self._labels).set(len(self._ready))

    def refresh_gauge(self) -> None:
        """Publish the resident count again (a replaced object of the same version zeroed it)."""
        if not self.pinned:
            self._metrics.variants_resident.labels(*self._labels).set(len(self._ready))

    def clear(self) -> None:
        """Drop every variant (the version is retiring); compiles still running are dropped when they end."""
        self._closed = True
        self._ready.clear()
        self._uses.clear()
        self._pin = None
        self.last_used = None
        if not self.pinned:
            self._metrics.variants_resident.labels(*self._labels).set(0)


class Held(Generic[V]):
    """One request's hold on a variant (see :meth:`VariantCache.use`); a class rather than a generator
    because it is entered on every request."""

    __slots__ = ("_cache", "_key", "_cause", "_warmup", "_entry")

    def __init__(
        self, cache: VariantCache[V], key: Callable[[], VariantKey], cause: Callable[[], str], warmup: bool
    ) -> None:
        self._cache = cache
        self._key = key
        self._cause = cause
        self._warmup = warmup
        self._entry: _Entry[V] | None = None

    async def __aenter__(self) -> V:
        self._entry = await self._cache._enter(self._key, self._cause, self._warmup)
        return self._entry.variant

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._entry is not None:
            self._cache._leave(self._entry)
            self._entry = None


def _consume(fut: asyncio.Future[_Entry[V]]) -> None:
    # mark a failed compile's exception as retrieved even if every waiter went away
    if not fut.cancelled():
        fut.exception()
