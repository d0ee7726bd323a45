"""Request errors with a stable machine-readable reason (the `reason` label of
`creditmodel_request_errors_total`) and a message that names the offending input."""

from __future__ import annotations

from typing import Literal

ErrorReason = Literal[
    "invalid_json",
    "invalid_request",
    "missing_input",
    "unknown_input",
    "wrong_datatype",
    "wrong_shape",
    "length_mismatch",
    "non_finite",
    "out_of_range",
    "unknown_category",
    "empty_batch",
    "batch_too_large",
    "body_too_large",
    "unsupported_encoding",
    "unknown_variant",
    "unknown_model",
    "model_not_ready",
]

INTERNAL = "internal"
"""The `reason` of a request the server failed to score (HTTP 500, gRPC INTERNAL): no client
error, so no ErrorReason, but counted beside them, as outcome=error."""

# HTTP status per reason; everything a client sent wrong is a 400 (gRPC INVALID_ARGUMENT) except
# the cases HTTP and the V2 protocol give their own status to.
_STATUS: dict[str, int] = {
    "unknown_model": 404,
    "body_too_large": 413,
    "unsupported_encoding": 415,
    "model_not_ready": 503,
}

# Every refusal message is cut to about this many characters, whatever client strings went into
# it (bounds.py cuts each one first, so this only catches what slipped through).
MAX_MESSAGE_CHARS = 1024


MAX_SHOWN_CHARS = 64
"""A client string (a name, a category, a number's digits) quoted in a refusal or a log line."""


def clip(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """`text`, or its first `limit` characters, an ellipsis and its length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…({len(text)} characters)"


def clip_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`message` cut in the middle to about `limit` characters, keeping its start (what is
    refused) and its end (why)."""
    if len(message) <= limit:
        return message
    head, tail = limit * 2 // 3, limit // 4
    omitted = len(message) - head - tail
    return f"{message[:head]}…[{omitted} characters omitted]…{message[-tail:]}"


class RequestError(Exception):
    """A request the predictor refuses; never a server fault."""

    def __init__(self, reason: ErrorReason, message: str) -> None:
        message = clip_message(message)
        super().__init__(message)
        self.reason: ErrorReason = reason
        self.message = message

    @property
    def http_status(self) -> int:
        return _STATUS.get(self.reason, 400)
