"""The request batcher on its own when things go wrong: a failing inference, a cancelled request, a
full queue, outputs that cannot be split back per request, and a batch size the model cannot take."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from vinoserve.errors import StatusCode, VinoserveError

from ..helpers.batcher import WAIT, Model, make, rows, settle


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
