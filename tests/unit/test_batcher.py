"""The request batcher on its own: merging, landing sizes, splitting back, failures, cancellation, limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from vinoserve.config.settings import DynamicBatching
from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.metrics import Metrics
from vinoserve.scheduling.batcher import Batcher
from vinoserve.scheduling.rows import Arrays, default_ladder

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
    for _ in range(10):
        await asyncio.sleep(0)


def sample(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name, {"name": "m", "version": "1"})
    return 0.0 if value is None else value


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


def test_a_failing_inference_fails_exactly_its_requests() -> None:
    async def go() -> None:
        model = Model()
        model.gated = True
        model.fail = lambda a: a["x"].shape[1] == 4
        b, _ = make(model, max_batch_size=8)
        first = asyncio.create_task(b.submit({"x": rows(0, 1)}))
        bad = [asyncio.create_task(b.submit({"x": rows(i, 1, width=4)})) for i in range(2)]
        good = asyncio.create_task(b.submit({"x": rows(7, 2)}))
        await settle()
        for _ in range(3):
            model.release()
            await settle()
        np.testing.assert_array_equal((await first)["y"], rows(0, 1) * 2 + 1)
        np.testing.assert_array_equal((await good)["y"], rows(7, 2) * 2 + 1)
        for t in bad:
            with pytest.raises(VinoserveError) as err:
                await t
            assert err.value.code == StatusCode.INTERNAL
        assert model.rows() == [1, 2, 2]

    asyncio.run(go())


def test_a_cancelled_request_leaves_the_queue_or_its_rows_are_dropped() -> None:
    async def go() -> None:
        model = Model()
        model.gated = True
        b, _ = make(model, max_batch_size=8)
        first = asyncio.create_task(b.submit({"x": rows(0, 1)}))
        gone = asyncio.create_task(b.submit({"x": rows(1, 1)}))
        kept = asyncio.create_task(b.submit({"x": rows(2, 1)}))
        await settle()
        gone.cancel()
        await settle()
        assert b.queued == 1
        model.release()
        await settle()
        assert model.rows() == [1, 1]  # the cancelled one never ran
        late = asyncio.create_task(b.submit({"x": rows(3, 1)}))
        also = asyncio.create_task(b.submit({"x": rows(4, 1)}))
        model.release()
        await settle()
        assert model.rows() == [1, 1, 2]
        late.cancel()  # its batch is running: its rows are dropped, the other gets its own
        await settle()
        model.release()
        np.testing.assert_array_equal((await asyncio.wait_for(also, WAIT))["y"], rows(4, 1) * 2 + 1)
        np.testing.assert_array_equal((await first)["y"], rows(0, 1) * 2 + 1)
        np.testing.assert_array_equal((await kept)["y"], rows(2, 1) * 2 + 1)
        assert gone.cancelled() and late.cancelled()

    asyncio.run(go())


def test_a_full_queue_refuses_with_the_spec_text() -> None:
    async def go() -> None:
        model = Model()
        model.gated = True
        b, _ = make(model, max_queue_size=2)
        tasks = [asyncio.create_task(b.submit({"x": rows(i, 1)})) for i in range(3)]
        await settle()
        with pytest.raises(VinoserveError) as err:
            await b.submit({"x": rows(9, 1)})
        assert err.value.code == StatusCode.BATCH_QUEUE_FULL
        assert err.value.text == "Server overloaded - batching queue of model m is full (2)"
        model.release()
        await settle()
        model.release()
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT)

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


def test_outputs_without_a_row_per_request_fall_back_to_running_each_alone() -> None:
    async def go() -> None:
        model = Model()
        model.gated = True
        b, _ = make(model, max_batch_size=8)
        model.reduce = True  # an output that sums over the batch
        tasks = [asyncio.create_task(b.submit({"x": rows(i, 1)})) for i in range(3)]
        await settle()
        for _ in range(4):
            model.release()
            await settle()
        outs = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out["y"], rows(i, 1) * 2 + 1)
        assert model.rows() == [1, 2, 1, 1]

    asyncio.run(go())


def test_a_size_the_model_cannot_take_is_dropped_and_its_requests_run_alone() -> None:
    async def go() -> None:
        model = Model()
        model.gated = True
        model.fail = lambda a: a["x"].shape[0] > 1
        model.failure = StatusCode.RESHAPE_ERROR
        b, _ = make(model, sizes=frozenset({1, 4}), max_batch_size=8)
        tasks = [asyncio.create_task(b.submit({"x": rows(i, 1)})) for i in range(6)]
        await settle()
        for _ in range(7):
            model.release()
            await settle()
        outs = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out["y"], rows(i, 1) * 2 + 1)
        assert model.rows() == [1, 4, 1, 1, 1, 1, 1]  # 4 failed to reshape: never tried again

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
