"""The gRPC error table covers every status code, with the SPEC §6 codes."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.grpc.errors import GRPC_CODES, Context, abort, abort_unexpected, grpc_code, grpc_errors

from ..helpers.errors import NOT_BAD_REQUEST


def test_every_status_code_is_mapped() -> None:
    assert set(GRPC_CODES) == set(StatusCode)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (StatusCode.MODEL_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (StatusCode.VERSION_NOT_FOUND, grpc.StatusCode.NOT_FOUND),
        (StatusCode.VERSION_RETIRED, grpc.StatusCode.NOT_FOUND),
        (StatusCode.VERSION_NOT_LOADED, grpc.StatusCode.UNAVAILABLE),
        (StatusCode.INVALID_SHAPE, grpc.StatusCode.INVALID_ARGUMENT),
        (StatusCode.INVALID_CONTENT_SIZE, grpc.StatusCode.INVALID_ARGUMENT),
        (StatusCode.INVALID_VALUE_COUNT, grpc.StatusCode.INVALID_ARGUMENT),
        (StatusCode.RESHAPE_ERROR, grpc.StatusCode.FAILED_PRECONDITION),
        (StatusCode.REQUEST_TOO_LARGE, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (StatusCode.OVERLOADED, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (StatusCode.BATCH_QUEUE_FULL, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (StatusCode.INVALID_MESSAGE, grpc.StatusCode.INVALID_ARGUMENT),
        (StatusCode.SHUTTING_DOWN, grpc.StatusCode.UNAVAILABLE),
        (StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNIMPLEMENTED),
        (StatusCode.INTERNAL, grpc.StatusCode.INTERNAL),
    ],
)
def test_spec_rows(code: StatusCode, expected: grpc.StatusCode) -> None:
    assert grpc_code(code) is expected


def test_everything_else_is_invalid_argument() -> None:
    for code in set(StatusCode) - NOT_BAD_REQUEST:
        assert grpc_code(code) is grpc.StatusCode.INVALID_ARGUMENT, code


class _Aborted(Exception):
    pass


class _FakeContext:
    def __init__(self) -> None:
        self.calls: list[tuple[grpc.StatusCode, str]] = []

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.calls.append((code, details))
        raise _Aborted


def _context(ctx: _FakeContext) -> Context:
    return ctx  # type: ignore[return-value]  # the two methods abort() uses are all it needs


def test_abort_sends_code_and_spec_text() -> None:
    ctx = _FakeContext()
    err = VinoserveError(StatusCode.INVALID_BATCH, "Expected: 1; Actual: 10; input name: b")
    with pytest.raises(_Aborted):
        asyncio.run(abort(_context(ctx), err))
    text = "Invalid input batch size - Expected: 1; Actual: 10; input name: b"
    assert ctx.calls == [(grpc.StatusCode.INVALID_ARGUMENT, text)]


def test_unexpected_error_is_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    ctx = _FakeContext()
    try:
        raise ValueError("boom")
    except ValueError as exc:
        with pytest.raises(_Aborted):
            asyncio.run(abort_unexpected(_context(ctx), exc, "Predict"))
    assert ctx.calls == [(grpc.StatusCode.INTERNAL, "Internal server error")]
    record = next(r for r in caplog.records if "Predict" in r.getMessage())
    assert record.exc_info is not None and "boom" in caplog.text


class _Servicer:
    """A servicer whose one method raises what the test hands it."""

    @grpc_errors
    async def Predict(self, request: BaseException | None, context: Context) -> str:
        if request is not None:
            raise request
        return "answer"


def _predict(request: BaseException | None, ctx: _FakeContext) -> str:
    return asyncio.run(_Servicer().Predict(request, _context(ctx)))


def test_decorator_passes_answers_through() -> None:
    ctx = _FakeContext()
    assert _predict(None, ctx) == "answer"
    assert ctx.calls == []


def test_decorator_aborts_with_the_error_code_and_text() -> None:
    ctx = _FakeContext()
    with pytest.raises(_Aborted):
        _predict(VinoserveError(StatusCode.MODEL_NOT_FOUND), ctx)
    assert ctx.calls == [(grpc.StatusCode.NOT_FOUND, "Model with requested name is not found")]


def test_decorator_answers_anything_else_internal_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    ctx = _FakeContext()
    with pytest.raises(_Aborted):
        _predict(KeyError("boom"), ctx)
    assert ctx.calls == [(grpc.StatusCode.INTERNAL, "Internal server error")]
    record = next(r for r in caplog.records if "Predict" in r.getMessage())
    assert record.exc_info is not None and "boom" in caplog.text


@pytest.mark.parametrize("exc", [asyncio.CancelledError(), grpc.aio.AbortError()], ids=["cancelled", "aborted"])
def test_decorator_leaves_cancellation_and_aborts_alone(exc: BaseException) -> None:
    # a cut request must reach the drain interceptor, which answers UNAVAILABLE; an abort under way is final
    ctx = _FakeContext()
    with pytest.raises(type(exc)):
        _predict(exc, ctx)
    assert ctx.calls == []
