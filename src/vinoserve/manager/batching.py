"""Which batch sizes a model version's merged batches may land on, and the batcher built from that.

The batcher (:mod:`vinoserve.scheduling.batcher`) merges requests; this module tells it, from the
version's input rules and its compiled variants, where a merged batch may land:

- a fixed batch N: exactly N (smaller requests padded to N, larger ones cut into pieces of N);
- a range ``a:b``: any size from a to b; ``-1``: any size;
- ``auto``: the batch sizes already compiled for the request's other dimensions, and the preferred
  sizes (``preferred_batch_sizes``, or by default ``max_batch_size`` halved down to ``--shape_variants``
  sizes), so a merged batch of an odd size is padded to one of those rather than compiled.

A model with an input that has no batch dimension is not batched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import numpy as np

from ..config import ModelConfig
from ..metrics import Metrics
from ..scheduling.batcher import Batcher
from ..scheduling.rows import Arrays, default_ladder
from ..scheduling.variants import Variant, VariantCache
from .inputs import InputRule

log = logging.getLogger(__name__)


class BatchPlan:
    """The batch sizes of one version (see the module's docstring)."""

    def __init__(self, cfg: ModelConfig, rules: dict[str, InputRule], variants: VariantCache[Variant]) -> None:
        assert cfg.dynamic_batching is not None
        self._rules = rules
        self._variants = variants
        self.batch_index = {n: r.batch_index for n, r in rules.items()}
        batching = cfg.dynamic_batching
        dims = [
            r.accepted[r.batch_index] for r in rules.values() if not r.any_rank and r.batch_index not in r.auto_dims
        ]
        self.auto = len(dims) < len(rules)
        self.split: int | None = None
        self._fixed: frozenset[int] | None = None
        if not self.auto and dims and all(d.is_static for d in dims) and len({d.lo for d in dims}) == 1:
            self.split = dims[0].lo
            self._fixed = frozenset({self.split})
        elif not self.auto and dims and all(d.hi >= 0 for d in dims):
            lo, hi = max(max(d.lo, 1) for d in dims), min(d.hi for d in dims)
            self._fixed = frozenset(range(lo, hi + 1))
        self._ladder = frozenset(batching.preferred_batch_sizes) or default_ladder(
            batching.max_batch_size, cfg.shape_variants
        )

    def sizes(self, sample: Arrays) -> frozenset[int] | None:
        """The batch sizes a merged batch like ``sample`` may run at; None: any size."""
        if not self.auto:
            return self._fixed
        want = {n: self._rules[n].key_dims(a.shape) for n, a in sample.items()}
        sizes = set(self._ladder)
        for key in self._variants.keys():
            batch = {dims[self._rules[n].batch_index] for n, dims in key if n in want}
            if len(batch) == 1 and all(
                _same_but_batch(want[n], dims, self._rules[n].batch_index) for n, dims in key if n in want
            ):
                sizes |= batch
        return frozenset(sizes)


def _same_but_batch(a: tuple[int, ...], b: tuple[int, ...], bi: int) -> bool:
    return len(a) == len(b) and all(x == y for i, (x, y) in enumerate(zip(a, b, strict=True)) if i != bi)


def make_batcher(
    cfg: ModelConfig,
    rules: dict[str, InputRule],
    variants: VariantCache[Variant],
    run: Callable[[Arrays], Awaitable[Arrays]],
    metrics: Metrics,
    labels: tuple[str, str],
) -> tuple[Batcher | None, bool]:
    """The batcher of a loaded version (None when it is not batched), and whether requests of any
    batch size are accepted (a fixed batch: the batcher pads and splits)."""
    if cfg.dynamic_batching is None:
        return None, False
    if not rules or any(r.batch_index < 0 for r in rules.values()):
        log.warning("Model %s version %s has an input without a batch dimension: requests are not batched", *labels)
        return None, False
    if any(r.batch_index != 0 for r in rules.values()):
        # merged results are cut along the outputs' first dimension, and nothing says where an output's
        # batch is when an input's is not first: such a model is not batched rather than mis-split
        log.warning(
            "Model %s version %s has an input whose batch is not its first dimension: requests are not batched", *labels
        )
        return None, False
    plan = BatchPlan(cfg, rules, variants)

    def concurrency() -> int:
        variant = variants.last_used
        return variant.pool.size if variant is not None else 1

    batcher = Batcher(
        cfg.name,
        cfg.dynamic_batching,
        plan.batch_index,
        run,
        sizes=plan.sizes,
        concurrency=concurrency,
        metrics=metrics,
        labels=labels,
        split=plan.split,
    )
    return batcher, plan.split is not None


def batch_rows(rules: dict[str, InputRule], inputs: dict[str, np.ndarray]) -> int | None:
    """The rows of a request when every input agrees on them, else None (it is then run alone)."""
    if any(a.ndim <= rules[n].batch_index for n, a in inputs.items()):
        return None  # e.g. a scalar for a shape-auto input: run alone, where its shape gets its own error
    rows = {a.shape[rules[n].batch_index] for n, a in inputs.items()}
    return rows.pop() if len(rows) == 1 else None
