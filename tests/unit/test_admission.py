"""Admission on its own: a bound on requests in progress, and waiting for them to leave."""

from __future__ import annotations

import asyncio

import pytest

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.scheduling.admission import MAX_IN_PROGRESS, Admission


def test_refuses_beyond_the_limit_and_admits_again_once_one_leaves() -> None:
    adm = Admission("model m version 1", limit=2)
    with adm:
        with adm:
            assert adm.in_progress == 2
            with pytest.raises(VinoserveError) as info, adm:
                pass
            assert info.value.code == StatusCode.OVERLOADED
            assert "more than 2 requests in progress for model m version 1" in str(info.value)
            assert adm.in_progress == 2
        with adm:  # a place came free
            assert adm.in_progress == 2
    assert adm.in_progress == 0
    assert Admission("x").limit == MAX_IN_PROGRESS


def test_drained_waits_for_every_admitted_request_even_one_that_failed() -> None:
    async def go() -> None:
        adm = Admission("model m version 1")
        await asyncio.wait_for(adm.drained(), 10)  # nothing in progress: at once
        release = [asyncio.Event(), asyncio.Event()]

        async def request(i: int) -> None:
            with adm:
                await release[i].wait()
                if i == 1:
                    raise RuntimeError("failed")

        tasks = [asyncio.create_task(request(i)) for i in range(2)]
        await asyncio.sleep(0)
        drained = asyncio.create_task(adm.drained())
        release[0].set()
        await asyncio.sleep(0.01)
        assert not drained.done() and adm.in_progress == 1
        release[1].set()
        await asyncio.wait_for(drained, 10)
        assert adm.in_progress == 0
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[1], RuntimeError)

    asyncio.run(go())
