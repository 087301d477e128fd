"""Where a merged batch lands (:func:`vinoserve.scheduling.rows.land`), on its own: the edge cases of
the rule (pad only when real rows fill most of the landed size, else the longest exact prefix, else
pad, else the first request alone at its own size)."""

from __future__ import annotations

import pytest

from vinoserve.scheduling.rows import land


@pytest.mark.parametrize(
    ("rows", "allowed", "landed"),
    [
        ([1, 1, 1], [1, 2, 4, 8], (2, 2)),  # 3 of 4 is too little: the 2 that land exactly
        ([1, 1, 1, 1], [1, 2, 4, 8], (4, 4)),  # exact is full
        ([2, 3], [1, 2, 4, 8], (1, 2)),  # 5 of 8 too little; the first lands exactly on 2
        ([3, 3], [1, 2, 4, 8], (2, 8)),  # no prefix lands exactly (3, 6): padded after all
        ([3, 1, 3], [1, 2, 4, 8], (3, 8)),  # 7 of 8: padded
        ([3], [4], (1, 4)),  # a fixed batch: pieces are padded up to it
        ([1, 1], [4], (2, 4)),  # fixed, 2 of 4: nothing lands exactly, padded
        ([4], [4], (1, 4)),  # a piece of a split request, exactly the fixed batch
        ([5, 1], [1, 2, 4], (1, 5)),  # the first is larger than every size: alone at its own size
        ([2, 1], [], (1, 2)),  # nothing allowed (all refused, or all above max_batch_size): alone
        ([1], [8], (1, 8)),  # one row, only a larger size: padded rather than compiled
    ],
)
def test_land(rows: list[int], allowed: list[int], landed: tuple[int, int]) -> None:
    taken, size = land(rows, allowed)
    assert (taken, size) == landed
    assert 1 <= taken <= len(rows)  # the oldest request always runs: nothing waits behind it forever
    assert size >= sum(rows[:taken]) and (size in allowed or (taken == 1 and size == rows[0]))
