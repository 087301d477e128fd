"""What both error tables agree on: the status codes that are not a malformed request."""

from __future__ import annotations

from vinoserve.errors import StatusCode

# Every other code is a client's malformed request: INVALID_ARGUMENT over gRPC, 400 over HTTP.
NOT_BAD_REQUEST = frozenset(
    {
        StatusCode.MODEL_NOT_FOUND,
        StatusCode.VERSION_NOT_FOUND,
        StatusCode.VERSION_RETIRED,
        StatusCode.VERSION_NOT_LOADED,
        StatusCode.RESHAPE_ERROR,
        StatusCode.REQUEST_TOO_LARGE,
        StatusCode.OVERLOADED,
        StatusCode.UNIMPLEMENTED,
        StatusCode.INTERNAL,
        StatusCode.SHUTTING_DOWN,
        StatusCode.BATCH_QUEUE_FULL,
    }
)
