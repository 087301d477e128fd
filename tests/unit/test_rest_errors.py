"""The HTTP error table covers every status code, with the SPEC §6 statuses."""

from __future__ import annotations

import json

import pytest

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.rest.errors import HTTP_STATUS, error_response, http_status, internal_error

from ..helpers.errors import NOT_BAD_REQUEST


def test_every_status_code_is_mapped() -> None:
    assert set(HTTP_STATUS) == set(StatusCode)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (StatusCode.MODEL_NOT_FOUND, 404),
        (StatusCode.VERSION_NOT_FOUND, 404),
        (StatusCode.VERSION_RETIRED, 404),
        (StatusCode.VERSION_NOT_LOADED, 503),
        (StatusCode.JSON_INVALID, 400),
        (StatusCode.JSON_FORMAT, 400),
        (StatusCode.RESHAPE_ERROR, 412),
        (StatusCode.REQUEST_TOO_LARGE, 413),
        (StatusCode.OVERLOADED, 503),
        (StatusCode.BATCH_QUEUE_FULL, 503),
        (StatusCode.INVALID_MESSAGE, 400),
        (StatusCode.SHUTTING_DOWN, 503),
        (StatusCode.UNIMPLEMENTED, 501),
        (StatusCode.INTERNAL, 500),
    ],
)
def test_spec_rows(code: StatusCode, expected: int) -> None:
    assert http_status(code) == expected


def test_everything_else_is_bad_request() -> None:
    for code in set(StatusCode) - NOT_BAD_REQUEST:
        assert http_status(code) == 400, code


def test_error_body_is_the_spec_text() -> None:
    r = error_response(VinoserveError(StatusCode.INVALID_BATCH, "Expected: 1; Actual: 10; input name: b"))
    assert r.status == 400 and r.content_type == "application/json"
    assert r.text is not None
    assert json.loads(r.text) == {"error": "Invalid input batch size - Expected: 1; Actual: 10; input name: b"}


def test_full_batching_queue_says_when_to_retry() -> None:
    r = error_response(VinoserveError(StatusCode.BATCH_QUEUE_FULL, "batching queue of model m is full (4)"))
    assert r.status == 503 and r.headers["Retry-After"] == "1"
    assert "Retry-After" not in error_response(VinoserveError(StatusCode.OVERLOADED)).headers


def test_unexpected_error_is_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        r = internal_error(exc, "POST /v2/models/m/infer")
    assert r.status == 500 and r.text is not None and json.loads(r.text) == {"error": "Internal server error"}
    assert "boom" in caplog.text
