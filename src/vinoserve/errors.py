"""The one family of domain errors (SPEC §6).

Protocol layers map :class:`StatusCode` to gRPC codes and HTTP statuses through their own
tables (``protocol/grpc/errors.py`` and ``protocol/rest/errors.py``); nothing here imports
either wire library.
"""

from __future__ import annotations

import enum


class StatusCode(enum.Enum):
    """Every way a request can fail, with the SPEC §6 message as the value."""

    MODEL_NOT_FOUND = "Model with requested name is not found"
    VERSION_NOT_FOUND = "Model with requested version is not found"
    VERSION_NOT_LOADED = "Model with requested version is not loaded yet"
    VERSION_RETIRED = "Model with requested version is retired"
    INVALID_INPUT_COUNT = "Invalid number of inputs"
    MISSING_INPUT = "Missing input with specific name"
    INVALID_PRECISION = "Invalid input precision"
    INVALID_RANK = "Invalid number of shape dimensions"
    INVALID_BATCH = "Invalid input batch size"
    INVALID_SHAPE = "Invalid input shape"
    INVALID_CONTENT_SIZE = "Invalid content size of tensor proto"
    INVALID_VALUE_COUNT = "Invalid number of values in tensor proto container"
    INVALID_ARGUMENT = "Invalid argument"
    JSON_INVALID = "Could not parse instance content. Not valid ndarray detected"
    JSON_FORMAT = "Invalid JSON structure. Could not detect row or column format"
    RESHAPE_ERROR = "Model could not be reshaped with requested shape"
    REQUEST_TOO_LARGE = "Request exceeds the size limit"
    OVERLOADED = "Server is overloaded"
    BATCH_QUEUE_FULL = "Server overloaded"
    INVALID_MESSAGE = "Invalid message"
    SHUTTING_DOWN = "Server is shutting down"
    UNIMPLEMENTED = "Not implemented"
    INTERNAL = "Internal server error"

    @property
    def message(self) -> str:
        """The fixed SPEC message of this code."""
        return self.value


class VinoserveError(Exception):
    """A request failed with a known status; ``str()`` is the SPEC text ``<message> - <details>``."""

    def __init__(self, code: StatusCode, details: str = "") -> None:
        self.code = code
        self.details = details
        super().__init__(self.text)

    @property
    def text(self) -> str:
        """The client-visible text: the code's message, then the details if any."""
        if self.details:
            return f"{self.code.message} - {self.details}"
        return self.code.message

    def __repr__(self) -> str:
        return f"VinoserveError({self.code.name}, {self.details!r})"


class StartupError(Exception):
    """A mistake in flags or config detected at start-up: printed as one line, exit code 1."""
