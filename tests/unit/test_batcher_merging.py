"""The request batcher on its own when all goes well: merging queued requests, landing on allowed
sizes with as little padding as possible, splitting results back, batch indexes, the queue delay and
the batching metrics."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from vinoserve.scheduling.rows import default_ladder

from ..helpers.batcher import WAIT, Model, make, rows, sample, settle


def test_lone_request_runs_at_once_unchanged() -> None:
    async def go() -> None:
        model = Model()
        b, _ = make(model)
        x = rows(0, 2)
        out = await asyncio.wait_for(b.submit({"x": x}), WAIT)
        assert model.batches[0]["x"] is x  # no copy, no queue
        np.testing.assert_array_equal(out["y"], x * 2 + 1)

    asyncio.run(go())


def test_requests_queued_while_busy_merge_and_each_gets_its_rows() -> None:
    async def go() -> None:
        model = Model()
        model.gated = True
        b, metrics = make(model, max_batch_size=16)
        tasks = [asyncio.create_task(b.submit({"x": rows(10 * i, i + 1)})) for i in range(4)]
        await settle()
        assert model.rows() == [1] and b.queued == 3
        model.release()
        await settle()
        assert model.rows() == [1, 2 + 3 + 4]
        model.release()
        outs = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out["y"], rows(10 * i, i + 1) * 2 + 1)
        assert sample(metrics, "vinoserve_batch_size_count") == 2
        assert sample(metrics, "vinoserve_batch_size_sum") == 10
        assert sample(metrics, "vinoserve_batch_queue_delay_seconds_count") == 4

    asyncio.run(go())


def test_max_batch_size_bounds_a_merge_and_larger_requests_run_alone() -> None:
    async def go() -> None:
        model = Model()
        model.gated = True
        b, _ = make(model, max_batch_size=4)
        tasks = [asyncio.create_task(b.submit({"x": rows(i * 10, n)})) for i, n in enumerate([1, 2, 2, 1, 6, 1])]
        await settle()
        for _ in range(5):
            model.release()
            await settle()
        assert model.rows() == [1, 4, 1, 6, 1]  # 2+2 fills 4; the 1 behind them waits; 6 alone
        outs = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        for i, (n, out) in enumerate(zip([1, 2, 2, 1, 6, 1], outs, strict=True)):
            np.testing.assert_array_equal(out["y"], rows(i * 10, n) * 2 + 1)

    asyncio.run(go())


def test_different_shapes_or_dtypes_are_never_merged() -> None:
    async def go() -> None:
        model = Model()
        model.gated = True
        b, _ = make(model, max_batch_size=16)
        first = asyncio.create_task(b.submit({"x": rows(0, 1)}))
        others = [
            {"x": rows(1, 1, width=4)},
            {"x": rows(2, 1)},
            {"x": rows(3, 1).astype(np.float64)},
            {"x": rows(4, 1, width=4)},
            {"x": rows(5, 1)},
        ]
        tasks = [asyncio.create_task(b.submit(o)) for o in others]
        await settle()
        for _ in range(4):
            model.release()
            await settle()
        shapes = [(b["x"].shape, b["x"].dtype) for b in model.batches]
        f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
        assert shapes == [((1, 3), f32), ((2, 4), f32), ((2, 3), f32), ((1, 3), f64)]
        outs = await asyncio.wait_for(asyncio.gather(first, *tasks), WAIT)
        for o, out in zip([{"x": rows(0, 1)}, *others], outs, strict=True):
            np.testing.assert_array_equal(out["y"], o["x"] * 2 + 1)

    asyncio.run(go())


def test_merged_batches_land_on_allowed_sizes_and_padding_never_reaches_a_client() -> None:
    async def go() -> None:
        model = Model()
        model.gated = True
        b, metrics = make(model, sizes=frozenset({1, 4}), max_batch_size=8)
        tasks = [asyncio.create_task(b.submit({"x": rows(i * 10, n)})) for i, n in enumerate([1, 1, 2, 2, 3])]
        await settle()
        for _ in range(4):
            model.release()
            await settle()
        # 1 alone (idle); then 1 (1+2 would be 3 rows padded to 4: too much padding; 1 lands exactly);
        # 2+2 land on 4 exactly; 3 alone fits nothing exactly: padded to 4 (3 of 4 real rows)
        assert model.rows() == [1, 1, 4, 4]
        np.testing.assert_array_equal(model.batches[3]["x"][3], model.batches[3]["x"][2])  # padding repeats
        outs = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        for i, (n, out) in enumerate(zip([1, 1, 2, 2, 3], outs, strict=True)):
            np.testing.assert_array_equal(out["y"], rows(i * 10, n) * 2 + 1)
        assert sample(metrics, "vinoserve_batch_padding_rows_total") == 1

    asyncio.run(go())


@pytest.mark.parametrize(
    ("queued", "sizes", "landed", "padding"),
    [
        (3, {1, 2, 4, 8}, [2, 1], 0),  # 3 of 4 would be padding a row: 2 now, 1 next
        (7, {1, 8}, [8], 1),  # 7 real rows of 8: padded
        (6, {2, 4, 8}, [4, 2], 0),  # 6 of 8 is too little: 4, then 2
        (5, {8}, [8], 3),  # nothing lands exactly (a fixed batch): padded
    ],
)
def test_padding_only_when_real_rows_fill_most_of_the_batch(
    queued: int, sizes: set[int], landed: list[int], padding: int
) -> None:
    async def go() -> None:
        model = Model()
        model.gated = True
        b, metrics = make(model, sizes=frozenset(sizes), max_batch_size=8)
        first = asyncio.create_task(b.submit({"x": rows(100, min(sizes))}))  # runs alone, holds the version
        await settle()
        tasks = [asyncio.create_task(b.submit({"x": rows(i, 1)})) for i in range(queued)]
        await settle()
        for _ in range(1 + len(landed)):
            model.release()
            await settle()
        assert model.rows()[1:] == landed
        outs = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out["y"], rows(i, 1) * 2 + 1)
        await first
        assert sample(metrics, "vinoserve_batch_padding_rows_total") == padding

    asyncio.run(go())


@pytest.mark.parametrize("per_request", [False, True])
def test_batching_metrics_are_kept_only_with_per_request_metrics(per_request: bool) -> None:
    async def go() -> None:
        model = Model()
        model.gated = True
        b, metrics = make(model, sizes=frozenset({1, 8}), max_batch_size=8, per_request=per_request)
        first = asyncio.create_task(b.submit({"x": rows(100, 1)}))  # runs alone, holds the version
        await settle()
        tasks = [asyncio.create_task(b.submit({"x": rows(i, 1)})) for i in range(7)]
        await settle()
        for _ in range(2):
            model.release()
            await settle()
        assert model.rows() == [1, 8]  # 7 real rows merged and padded to 8
        await asyncio.wait_for(asyncio.gather(first, *tasks), WAIT)
        counted = [
            sample(metrics, "vinoserve_batch_size_count"),
            sample(metrics, "vinoserve_batch_size_sum"),
            sample(metrics, "vinoserve_batch_queue_delay_seconds_count"),
            sample(metrics, "vinoserve_batch_padding_rows_total"),
        ]
        assert counted == ([2, 8, 8, 1] if per_request else [0, 0, 0, 0])

    asyncio.run(go())


def test_a_request_larger_than_every_allowed_size_runs_alone_at_its_size() -> None:
    async def go() -> None:
        model = Model()
        b, _ = make(model, sizes=frozenset({1, 2}), max_batch_size=8)
        out = await asyncio.wait_for(b.submit({"x": rows(0, 5)}), WAIT)
        assert model.rows() == [5]
        np.testing.assert_array_equal(out["y"], rows(0, 5) * 2 + 1)

    asyncio.run(go())


def test_fixed_batch_pads_smaller_requests_and_splits_larger_ones() -> None:
    async def go() -> None:
        model = Model()
        b, _ = make(model, sizes=frozenset({4}), split=4, max_batch_size=16)
        out = await asyncio.wait_for(b.submit({"x": rows(0, 10)}), WAIT)
        np.testing.assert_array_equal(out["y"], rows(0, 10) * 2 + 1)
        assert model.rows() == [4, 4, 4]
        small = await asyncio.wait_for(b.submit({"x": rows(20, 1)}), WAIT)
        assert small["y"].shape == (1, 3) and model.rows()[-1] == 4

    asyncio.run(go())


def test_inputs_merge_along_their_own_batch_index() -> None:
    async def go() -> None:
        model = Model(batch_index=1)
        model.gated = True
        b, _ = make(model, max_batch_size=8)
        xs = [rows(i * 10, i + 1).T.copy() for i in range(3)]  # [3, rows]
        tasks = [asyncio.create_task(b.submit({"x": x})) for x in xs]
        await settle()
        model.release()
        await settle()
        model.release()
        outs = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        assert model.batches[1]["x"].shape == (3, 5)
        for x, out in zip(xs, outs, strict=True):
            np.testing.assert_array_equal(out["y"], x.T * 2 + 1)

    asyncio.run(go())


def test_queue_delay_waits_for_more_requests_when_idle() -> None:
    async def go() -> None:
        model = Model()
        b, metrics = make(model, concurrency=4, max_queue_delay_ms=50, max_batch_size=8)
        outs = await asyncio.wait_for(asyncio.gather(*(b.submit({"x": rows(i, 1)}) for i in range(3))), WAIT)
        assert model.rows() == [3]
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out["y"], rows(i, 1) * 2 + 1)
        # a full batch does not wait
        b2, _ = make(model, concurrency=4, max_queue_delay_ms=60_000, max_batch_size=2)
        await asyncio.wait_for(asyncio.gather(*(b2.submit({"x": rows(i, 1)}) for i in range(2))), WAIT)
        assert model.rows() == [3, 2]

    asyncio.run(go())


def test_default_ladder() -> None:
    assert default_ladder(16, 4) == {16, 8, 4, 2}
    assert default_ladder(8, 4) == {8, 4, 2, 1}
    assert default_ladder(6, 8) == {6, 3, 2, 1}
    assert default_ladder(1, 4) == {1}


@pytest.mark.parametrize("concurrency", [1, 2])
def test_requests_left_by_an_exact_landing_run_when_nothing_else_arrives(concurrency: int) -> None:
    """With a queue delay, 3 rows waiting land as 2 then 1: the one left behind runs at once after
    (its own wait is over), on the free infer request or when the batch ends; none is stranded."""

    async def go() -> None:
        model = Model()
        b, _ = make(model, concurrency=concurrency, sizes=frozenset({1, 2, 4, 8}), max_queue_delay_ms=20)
        outs = await asyncio.wait_for(asyncio.gather(*(b.submit({"x": rows(i, 1)}) for i in range(3))), WAIT)
        assert sorted(model.rows()) == [1, 2] and b.queued == 0
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out["y"], rows(i, 1) * 2 + 1)

    asyncio.run(go())
