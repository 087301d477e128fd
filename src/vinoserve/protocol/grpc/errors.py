"""The one table from vinoserve status codes to gRPC status codes (SPEC §6), and the servicers' error decorator."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeAlias, TypeVar

import grpc

from vinoserve.errors import StatusCode, VinoserveError

log = logging.getLogger(__name__)

GRPC_CODES: dict[StatusCode, grpc.StatusCode] = {
    StatusCode.MODEL_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    StatusCode.VERSION_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    StatusCode.VERSION_NOT_LOADED: grpc.StatusCode.UNAVAILABLE,
    StatusCode.VERSION_RETIRED: grpc.StatusCode.NOT_FOUND,
    StatusCode.INVALID_INPUT_COUNT: grpc.StatusCode.INVALID_ARGUMENT,
    StatusCode.MISSING_INPUT: grpc.StatusCode.INVALID_ARGUMENT,
    StatusCode.INVALID_PRECISION: grpc.StatusCode.INVALID_ARGUMENT,
    StatusCode.INVALID_RANK: grpc.StatusCode.INVALID_ARGUMENT,
    StatusCode.INVALID_BATCH: grpc.StatusCode.INVALID_ARGUMENT,
    StatusCode.INVALID_SHAPE: grpc.StatusCode.INVALID_ARGUMENT,
    StatusCode.INVALID_CONTENT_SIZE: grpc.StatusCode.INVALID_ARGUMENT,
    StatusCode.INVALID_VALUE_COUNT: grpc.StatusCode.INVALID_ARGUMENT,
    StatusCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    # JSON errors come from REST only; listed so the table stays total.
    StatusCode.JSON_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    StatusCode.JSON_FORMAT: grpc.StatusCode.INVALID_ARGUMENT,
    StatusCode.RESHAPE_ERROR: grpc.StatusCode.FAILED_PRECONDITION,
    StatusCode.REQUEST_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    StatusCode.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    StatusCode.BATCH_QUEUE_FULL: grpc.StatusCode.RESOURCE_EXHAUSTED,
    StatusCode.INVALID_MESSAGE: grpc.StatusCode.INVALID_ARGUMENT,
    StatusCode.SHUTTING_DOWN: grpc.StatusCode.UNAVAILABLE,
    StatusCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    StatusCode.INTERNAL: grpc.StatusCode.INTERNAL,
}


def grpc_code(code: StatusCode) -> grpc.StatusCode:
    """The gRPC status for a vinoserve status code."""
    return GRPC_CODES[code]


Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
_Servicer = TypeVar("_Servicer")
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
Method: TypeAlias = Callable[[_Servicer, _Request, Context], Coroutine[Any, Any, _Response]]


async def abort(context: Context, err: VinoserveError) -> NoReturn:
    """End the call with the gRPC status of ``err`` and its SPEC text as details."""
    await context.abort(grpc_code(err.code), err.text)
    raise AssertionError("context.abort returned")  # abort always raises; this satisfies NoReturn


async def abort_unexpected(context: Context, exc: BaseException, what: str) -> NoReturn:
    """Log an unexpected failure with its traceback and end the call with INTERNAL."""
    log.error("unexpected error in %s", what, exc_info=exc)
    await abort(context, VinoserveError(StatusCode.INTERNAL))


def grpc_errors(method: Method[_Servicer, _Request, _Response]) -> Method[_Servicer, _Request, _Response]:
    """Servicer method decorator: a :class:`VinoserveError` ends the call with its code and text,
    anything else is logged and answered INTERNAL, so the server stays up.

    An abort already under way passes through, and so does ``asyncio.CancelledError`` (a
    ``BaseException``): the drain interceptor answers a request cut at shutdown with UNAVAILABLE.
    """
    what = method.__name__

    @functools.wraps(method)
    async def handled(self: _Servicer, request: _Request, context: Context) -> _Response:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except VinoserveError as err:
            await abort(context, err)
        except Exception as exc:
            await abort_unexpected(context, exc, what)

    return handled
