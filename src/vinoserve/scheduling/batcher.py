"""Request batching (SPEC §7.4): concurrent requests to one version merged into one inference.

One :class:`Batcher` per model version owns the queue, the per-request futures and the batch rule.
A request is queued only while the version is busy: when fewer batches run than the version has
infer requests and nothing is queued, it runs at once on its own, in its caller's task, so a lone
client pays nothing. When a batch finishes, the queued requests of the oldest request's group (same
inputs, same non-batch shapes, same dtypes) are merged along each input's batch index, up to
``max_batch_size`` rows, and run as one inference; each request gets its own rows of the outputs (the
batch dimension of the outputs is their first), and an inference that fails fails exactly the
requests merged into it.

*Where* a batch lands is the caller's ``sizes`` rule: ``None`` means any size runs (``-1``, ranges);
otherwise the merged rows land on an allowed size: exactly, with fewer requests taken when needed
(the rest wait for the next batch), or padded up when real rows fill most of it (padding rows
repeat the last real row and never reach a client; see :func:`.rows.land`). A request with more
rows than ``max_batch_size``, or more than any allowed size, runs alone at its own size. With
``split`` (a fixed batch N) a larger request is cut into pieces of N rows.

Nothing here runs in the background: batches are formed when a request arrives, when a batch ends
and when ``max_queue_delay_ms`` expires, so there is no task to stop when the version retires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

import numpy as np

from ..config.settings import DynamicBatching
from ..errors import StatusCode, VinoserveError
from ..metrics import Metrics
from .rows import Arrays, Group, cut, group_of, land, merge

log = logging.getLogger(__name__)


class _Part:
    """One queued piece of a request: its arrays, its row count and the future of its outputs."""

    __slots__ = ("inputs", "rows", "group", "future", "queued_at")

    def __init__(self, inputs: Arrays, rows: int, group: Group, future: asyncio.Future[Arrays]) -> None:
        self.inputs = inputs
        self.rows = rows
        self.group = group
        self.future = future
        self.queued_at = time.perf_counter()


class Batcher:
    """Merges concurrent requests to one model version (see the module's docstring)."""

    def __init__(
        self,
        model: str,
        config: DynamicBatching,
        batch_index: Mapping[str, int],
        run: Callable[[Arrays], Awaitable[Arrays]],
        *,
        sizes: Callable[[Arrays], frozenset[int] | None],
        concurrency: Callable[[], int],
        metrics: Metrics,
        labels: tuple[str, str],
        split: int | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.max_rows = config.max_batch_size if split is None else min(split, config.max_batch_size)
        self._batch_index = dict(batch_index)
        self._run = run
        self._sizes = sizes
        self._concurrency = concurrency
        self._split = split
        self._delay = config.max_queue_delay_ms / 1000
        self._queue: deque[_Part] = deque()
        self._running = 0  # batches started and not finished
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._merging = True  # off once a model's outputs turn out not to split by rows
        self._refused: set[int] = set()  # merged batch sizes the model could not be reshaped to
        self._labels = labels
        # batching series are per request: kept only with --metrics_enable, decided once here
        self._counting = metrics.per_request
        self._batch_sizes = metrics.batch_size.labels(*labels)
        self._queue_delay = metrics.batch_queue_delay.labels(*labels)
        self._padding = metrics.batch_padding_rows.labels(*labels)

    @property
    def queued(self) -> int:
        """Pieces of requests waiting in the queue."""
        return len(self._queue)

    async def submit(self, inputs: Arrays) -> Arrays:
        """The outputs of one request (arrays by real input name, batch > 0), batched with others."""
        rows = self._rows(inputs)
        group = group_of(inputs, self._batch_index)
        loop = asyncio.get_running_loop()
        pieces = (
            cut(inputs, rows, self._split, self._batch_index)
            if self._split is not None and rows > self._split
            else [(inputs, rows)]
        )
        parts = [_Part(a, n, group, loop.create_future()) for a, n in pieces]
        for p in parts:
            p.future.add_done_callback(_consume)
        if len(parts) == 1 and not self._queue and self._delay == 0 and self._running < self._concurrency():
            # idle: run now in this task, without a queue round trip
            self._running += 1
            await self._run_batch(parts, self._target(parts[:1])[1], inline=True)
            return parts[0].future.result()
        if len(self._queue) + len(parts) > self.config.max_queue_size:
            raise VinoserveError(
                StatusCode.BATCH_QUEUE_FULL,
                f"batching queue of model {self.model} is full ({self.config.max_queue_size})",
            )
        self._queue.extend(parts)
        self._pump()
        try:
            outs = [await p.future for p in parts]
        except BaseException:
            # the client went away, or another piece failed: the rest leave the queue, or are
            # dropped when their batch returns
            for p in parts:
                p.future.cancel()
                try:
                    self._queue.remove(p)
                except ValueError:
                    pass
            raise
        if len(outs) == 1:
            return outs[0]
        return {name: np.concatenate([o[name] for o in outs], axis=0) for name in outs[0]}

    # -- the batch rule --------------------------------------------------------------------------
    def _pump(self) -> None:
        """Start batches from the queue while the version has infer requests to run them on."""
        loop = asyncio.get_running_loop()
        while self._queue and self._running < self._concurrency():
            while self._queue and self._queue[0].future.done():
                self._queue.popleft()
            if not self._queue:
                return
            parts = self._candidates()
            if self._delay > 0 and sum(p.rows for p in parts) < self.max_rows:
                deadline = self._queue[0].queued_at + self._delay
                if time.perf_counter() < deadline:
                    if self._timer is None:  # wait for more, at most until the oldest's deadline
                        self._timer = loop.call_later(deadline - time.perf_counter(), self._expire)
                    return
            taken, target = self._target(parts)
            chosen = set(map(id, taken))
            self._queue = deque(p for p in self._queue if id(p) not in chosen)
            if self._counting:
                now = time.perf_counter()
                for p in taken:
                    self._queue_delay.observe(now - p.queued_at)
            self._running += 1
            task = loop.create_task(self._run_batch(taken, target, inline=False))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _expire(self) -> None:
        self._timer = None
        self._pump()

    def _candidates(self) -> list[_Part]:
        """The oldest request and the queued ones that can join it, in arrival order."""
        head = self._queue[0]
        if not self._merging or head.rows >= self.max_rows:
            return [head]
        parts, total = [head], head.rows
        for p in list(self._queue)[1:]:
            if p.group != head.group or p.future.done():
                continue
            if total + p.rows > self.max_rows:
                break
            parts.append(p)
            total += p.rows
        return parts

    def _target(self, parts: Sequence[_Part]) -> tuple[list[_Part], int]:
        """The prefix of ``parts`` to run now and the batch size it lands on (see :func:`.rows.land`)."""
        sizes = self._sizes(parts[0].inputs)
        if sizes is None:
            return list(parts), sum(p.rows for p in parts)
        allowed = sorted(s for s in sizes if s <= max(self.max_rows, self._split or 0) and s not in self._refused)
        k, size = land([p.rows for p in parts], allowed)
        return list(parts[:k]), size

    # -- running one batch -----------------------------------------------------------------------
    async def _run_batch(self, parts: list[_Part], target: int, *, inline: bool) -> None:
        try:
            rows = sum(p.rows for p in parts)
            if self._counting:
                self._batch_sizes.observe(rows)
                if target > rows:
                    self._padding.inc(target - rows)
                if inline:
                    self._queue_delay.observe(0.0)
            try:
                outs = await self._run(self._merge(parts, target))
            except VinoserveError as exc:
                if exc.code != StatusCode.RESHAPE_ERROR or (len(parts) == 1 and target == rows):
                    raise
                # the model cannot take this merged size (auto): never again, and each request alone
                log.warning(
                    "Model %s version %s cannot run a batch of %d: no longer used for merging", *self._labels, target
                )
                self._refused.add(target)
                await self._one_by_one(parts)
                return
            if not self._deliver(parts, outs, target):
                await self._one_by_one(parts)  # outputs without rows per request
        except asyncio.CancelledError:
            for p in parts:
                p.future.cancel()
            if inline:
                raise
        except Exception as exc:
            for p in parts:
                if not p.future.done():
                    p.future.set_exception(exc)
        finally:
            self._running -= 1
            if self._queue:
                self._pump()

    async def _one_by_one(self, parts: Sequence[_Part]) -> None:
        """Run each part on its own, as if batching were off; each gets its own result or error."""
        for p in parts:
            if p.future.done():
                continue
            try:
                out = await self._run(p.inputs)
            except Exception as exc:
                if not p.future.done():
                    p.future.set_exception(exc)
                continue
            if not p.future.done():
                p.future.set_result(out)

    def _merge(self, parts: Sequence[_Part], target: int) -> Arrays:
        pad = target - sum(p.rows for p in parts)
        if len(parts) == 1 and pad == 0:
            return parts[0].inputs
        return merge([p.inputs for p in parts], self._batch_index, pad)

    def _deliver(self, parts: Sequence[_Part], outs: Arrays, target: int) -> bool:
        """Give each part its rows of ``outs``; False when the outputs do not have ``target`` rows."""
        if len(parts) == 1 and target == parts[0].rows:
            if not parts[0].future.done():
                parts[0].future.set_result(outs)
            return True
        if any(a.ndim == 0 or a.shape[0] != target for a in outs.values()):
            log.warning(
                "Model %s version %s: outputs do not have one row per batch row; requests are no longer merged",
                *self._labels,
            )
            self._merging = False
            return False
        offset = 0
        for p in parts:
            if not p.future.done():
                p.future.set_result({n: a[offset : offset + p.rows] for n, a in outs.items()})
            offset += p.rows
        return True

    # -- helpers ---------------------------------------------------------------------------------
    def _rows(self, inputs: Arrays) -> int:
        name, bi = next(iter(self._batch_index.items()))
        return int(inputs[name].shape[bi])


def _consume(fut: asyncio.Future[Arrays]) -> None:
    # mark an exception as retrieved even when its request went away or failed on another piece
    if not fut.cancelled():
        fut.exception()
