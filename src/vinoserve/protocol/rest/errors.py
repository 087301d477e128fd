"""The one table from vinoserve status codes to HTTP statuses (SPEC §6), and JSON error bodies."""

from __future__ import annotations

import logging

from aiohttp import web

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.rest.jsoncodec import json_response

log = logging.getLogger(__name__)

HTTP_STATUS: dict[StatusCode, int] = {
    StatusCode.MODEL_NOT_FOUND: 404,
    StatusCode.VERSION_NOT_FOUND: 404,
    StatusCode.VERSION_NOT_LOADED: 503,
    StatusCode.VERSION_RETIRED: 404,
    StatusCode.INVALID_INPUT_COUNT: 400,
    StatusCode.MISSING_INPUT: 400,
    StatusCode.INVALID_PRECISION: 400,
    StatusCode.INVALID_RANK: 400,
    StatusCode.INVALID_BATCH: 400,
    StatusCode.INVALID_SHAPE: 400,
    StatusCode.INVALID_CONTENT_SIZE: 400,
    StatusCode.INVALID_VALUE_COUNT: 400,
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.JSON_INVALID: 400,
    StatusCode.JSON_FORMAT: 400,
    StatusCode.RESHAPE_ERROR: 412,
    StatusCode.REQUEST_TOO_LARGE: 413,
    StatusCode.OVERLOADED: 503,
    StatusCode.BATCH_QUEUE_FULL: 503,
    StatusCode.INVALID_MESSAGE: 400,
    StatusCode.SHUTTING_DOWN: 503,
    StatusCode.UNIMPLEMENTED: 501,
    StatusCode.INTERNAL: 500,
}


def http_status(code: StatusCode) -> int:
    """The HTTP status for a vinoserve status code."""
    return HTTP_STATUS[code]


def json_error(status: int, text: str) -> web.Response:
    """A ``{"error": text}`` response with ``status``."""
    return json_response({"error": text}, status)


# Seconds a client is asked to wait before retrying when a batching queue is full.
RETRY_AFTER_S = 1


def error_response(err: VinoserveError) -> web.Response:
    """The response for a domain error: its HTTP status and its SPEC text (a full batching queue
    also says when to retry)."""
    response = json_error(http_status(err.code), err.text)
    if err.code is StatusCode.BATCH_QUEUE_FULL:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def internal_error(exc: BaseException, what: str) -> web.Response:
    """Log an unexpected failure with its traceback and answer 500 with the SPEC text."""
    log.error("unexpected error in %s", what, exc_info=exc)
    return error_response(VinoserveError(StatusCode.INTERNAL))
