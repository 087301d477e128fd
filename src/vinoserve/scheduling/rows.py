"""Rows of a batch, without the queue: which sizes a merged batch lands on, and how requests'
arrays are merged, padded and cut along their batch index. Pure functions, used by the batcher."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

Arrays = dict[str, np.ndarray]
Group = tuple[tuple[str, tuple[int, ...], str], ...]
# A merged batch is padded up to an allowed size only when real rows fill at least this share of it.
MIN_USEFUL = 0.8


def default_ladder(max_batch_size: int, count: int) -> frozenset[int]:
    """The batch sizes merged batches land on under ``auto`` when none are preferred: the largest
    ``count`` of ``max_batch_size`` halved repeatedly (16, 8, 4, 2 for 16 and 4), so at most
    ``count`` variants are compiled for batching and none of them evicts another."""
    sizes: list[int] = []
    n = max_batch_size
    while n >= 1 and len(sizes) < max(1, count):
        if n not in sizes:
            sizes.append(n)
        n = (n + 1) // 2 if n > 1 else 0
    return frozenset(sizes)


def land(rows: Sequence[int], allowed: Sequence[int]) -> tuple[int, int]:
    """How many of the queued requests (their ``rows``, oldest first) run now, and the batch size
    (one of the sorted ``allowed``) they land on.

    A padding row costs a whole row of inference, so a merged batch is padded only when at least
    :data:`MIN_USEFUL` of the landed size is real rows; otherwise the longest prefix that fills an
    allowed size exactly runs, and the rest stays queued for the next free infer request (3 rows
    with 1, 2, 4 and 8 compiled run as 2, then 1 with what arrives meanwhile, not as 4). Padding
    remains when no prefix lands exactly (a fixed batch, or one request of 3 rows). The first
    request alone, larger than every allowed size, runs at its own size.
    """
    totals = list(itertools.accumulate(rows))
    padded = next(
        ((k, fit) for k in range(len(rows), 0, -1) if (fit := _fit(allowed, totals[k - 1])) is not None), None
    )
    if padded is not None and totals[padded[0] - 1] >= MIN_USEFUL * padded[1]:
        return padded
    exact = next((k for k in range(len(rows), 0, -1) if totals[k - 1] in allowed), None)
    if exact is not None:
        return exact, totals[exact - 1]
    return padded if padded is not None else (1, rows[0])


def _fit(allowed: Sequence[int], rows: int) -> int | None:
    """The smallest of the (sorted) ``allowed`` sizes that takes ``rows``, if any."""
    return next((s for s in allowed if s >= rows), None)


def group_of(inputs: Arrays, batch_index: Mapping[str, int]) -> Group:
    """What requests must share to be merged: every input's non-batch shape and dtype."""
    return tuple(
        sorted((n, a.shape[: batch_index[n]] + a.shape[batch_index[n] + 1 :], a.dtype.str) for n, a in inputs.items())
    )


def merge(requests: Sequence[Arrays], batch_index: Mapping[str, int], pad: int) -> Arrays:
    """The inputs of ``requests`` along each input's batch index, with ``pad`` rows repeating the last."""
    merged = {}
    for name, bi in batch_index.items():
        arrays = [r[name] for r in requests]
        if pad:
            last = np.take(arrays[-1], [arrays[-1].shape[bi] - 1], axis=bi)
            arrays.append(np.repeat(last, pad, axis=bi))
        merged[name] = np.concatenate(arrays, axis=bi)
    return merged


def cut(inputs: Arrays, rows: int, size: int, batch_index: Mapping[str, int]) -> list[tuple[Arrays, int]]:
    """A request of more rows than a fixed batch, as pieces of at most ``size`` rows."""
    pieces = []
    for start in range(0, rows, size):
        n = min(size, rows - start)
        pieces.append(
            ({name: np.take(a, range(start, start + n), axis=batch_index[name]) for name, a in inputs.items()}, n)
        )
    return pieces
