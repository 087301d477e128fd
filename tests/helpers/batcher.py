"""A fake model and a batcher around it, for the unit tests of the request batcher.

``Model`` computes y = x * 2 + 1 and can hold each run until the test releases it or fail it on
demand; ``make`` builds a ``Batcher`` on it; ``rows``, ``settle`` and ``sample`` build inputs, let the
event loop run, and read a batching metric.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from vinoserve.config.settings import DynamicBatching
from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.metrics import Metrics
from vinoserve.scheduling.batcher import Batcher
from vinoserve.scheduling.rows import Arrays

WAIT = 10  # seconds: generous, nothing here waits on anything slow


class Model:
    """y = x * 2 + 1 on rows along ``x``'s batch index (outputs batch first); each run waits for the
    test's ``release`` while ``gated``, and fails when ``fail`` says so."""

    def __init__(self, batch_index: int = 0) -> None:
        self.bi = batch_index
        self.batches: list[Arrays] = []
        self.gated = False
        self.gates: list[asyncio.Future[None]] = []
        self.fail: Callable[[Arrays], bool] = lambda _: False
        self.reduce = False
        self.failure = StatusCode.INTERNAL

    async def run(self, inputs: Arrays) -> Arrays:
        self.batches.append(inputs)
        if self.gated:
            gate = asyncio.get_running_loop().create_future()
            self.gates.append(gate)
            await gate
        if self.fail(inputs):
            raise VinoserveError(self.failure, "inference error")
        y = np.moveaxis(inputs["x"], self.bi, 0) * 2 + 1
        return {"y": y.sum(axis=0, keepdims=True) if self.reduce and len(y) > 1 else y}

    def release(self) -> None:
        gate = self.gates.pop(0)
        gate.set_result(None)

    def rows(self) -> list[int]:
        return [b["x"].shape[self.bi] for b in self.batches]


def make(
    model: Model,
    *,
    concurrency: int = 1,
    sizes: frozenset[int] | None = None,
    split: int | None = None,
    per_request: bool = True,
    **config: object,
) -> tuple[Batcher, Metrics]:
    """A batcher on ``model`` with ``config`` as its dynamic batching settings, and its metrics."""
    metrics = Metrics(per_request=per_request)
    b = Batcher(
        "m",
        DynamicBatching(**config),  # type: ignore[arg-type]
        {"x": model.bi},
        model.run,
        sizes=lambda _: sizes,
        concurrency=lambda: concurrency,
        metrics=metrics,
        labels=("m", "1"),
        split=split,
    )
    return b, metrics


def rows(first: int, n: int, width: int = 3) -> np.ndarray:
    """n distinct rows: row i holds first+i everywhere."""
    return np.repeat(np.arange(first, first + n, dtype=np.float32)[:, None], width, axis=1)


async def settle() -> None:
    """Let every task that can make progress without waiting on time run."""
    for _ in range(10):
        await asyncio.sleep(0)


def sample(metrics: Metrics, name: str) -> float:
    """The value of metric ``name`` for model m version 1 (0 when it has no sample)."""
    value = metrics.registry.get_sample_value(name, {"name": "m", "version": "1"})
    return 0.0 if value is None else value
