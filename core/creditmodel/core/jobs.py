"""What a finished batch Job tells the operator: its exit code and its termination message.

`creditmodel-train` (and `creditmodel-drift`, with the same codes) exits with an `ExitCode`; the
training container also leaves a compact JSON `TerminationMessage` where the kubelet keeps it
(`/dev/termination-log`), so the operator and `kubectl describe` see why without reading logs.
The kubelet keeps at most 4096 bytes of it, so `render` shrinks the message to fit while keeping it
valid JSON, and `parse` accepts anything a pod may leave there (another image's text, a log tail,
a truncated file) and answers None rather than raising.
"""

from __future__ import annotations

import json
from enum import IntEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

TERMINATION_LOG_ENV: Final = "CREDITMODEL_TERMINATION_LOG"
"""Where the message goes instead of the default path (tests, or a pod with another mount)."""
TERMINATION_LOG_DEFAULT: Final = "/dev/termination-log"
TERMINATION_MESSAGE_MAX_BYTES: Final = 4096
"""The kubelet's cap on one container's termination message."""
ERROR_MAX_CHARS: Final = 2000
GATES_MAX: Final = 32
GATE_NAME_MAX_CHARS: Final = 100


class ExitCode(IntEnum):
    """How a batch command ended. 1 is left to Python itself (an uncaught crash)."""

    OK = 0
    BAD_INPUT = 2
    """Arguments, data file or data contents; nothing published."""
    GATE_FAILED = 3
    """A quality gate failed; nothing published."""
    STORAGE = 4
    """S3 or the output location: bucket, credentials, endpoint, already published."""

    @property
    def kind(self) -> str:
        """The `kind` word of the JSON summary: bad_input, gate_failed, storage (ok for 0)."""
        return self.name.lower()


class TerminationMessage(BaseModel):
    """The compact summary of one training run. Every field is optional and unknown ones are
    ignored, so a message from an older or newer creditmodel-train still parses (the operator
    reads one without `exit_code` as not creditmodel-train's); long texts are cut on read."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    exit_code: int | None = None
    """An int, not an ExitCode: a code this version does not know is still reported as is."""
    kind: str | None = None
    model_name: str | None = None
    version: str | None = None
    uri: str | None = None
    gates_passed: bool | None = None
    failed_gates: list[str] = []
    error: str | None = None

    @field_validator("error", "kind", "model_name", "version", "uri")
    @classmethod
    def _bounded(cls, value: str | None) -> str | None:
        return None if value is None else _cut(value, ERROR_MAX_CHARS)

    @field_validator("failed_gates")
    @classmethod
    def _few_gates(cls, value: list[str]) -> list[str]:
        return [_cut(name, GATE_NAME_MAX_CHARS) for name in value[:GATES_MAX]]

    @property
    def code(self) -> ExitCode | None:
        """The exit code as an ExitCode, None when absent or unknown."""
        try:
            return None if self.exit_code is None else ExitCode(self.exit_code)
        except ValueError:
            return None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def _dumps(message: TerminationMessage) -> str:
    # ASCII only (ensure_ascii), so the length in characters is the length in bytes.
    return json.dumps(message.model_dump(exclude_none=True), separators=(",", ":"))


def render(message: TerminationMessage, limit: int = TERMINATION_MESSAGE_MAX_BYTES) -> str:
    """The message as JSON of at most `limit` bytes. What the operator acts on survives longest:
    the error text is shortened first, then the list of failed gates, then only the code and
    kind remain."""
    text = _dumps(message)
    if len(text) > limit and message.error:
        budget = limit - len(_dumps(message.model_copy(update={"error": ""})))
        error = _escaped_prefix(message.error, budget) if budget > 3 else None
        message = message.model_copy(update={"error": error})
        text = _dumps(message)
    while len(text) > limit and message.failed_gates:
        message = message.model_copy(update={"failed_gates": message.failed_gates[:-1]})
        text = _dumps(message)
    if len(text) > limit:
        text = _dumps(TerminationMessage(exit_code=message.exit_code, kind=message.kind))
    if len(text) > limit:
        text = _dumps(TerminationMessage(exit_code=message.exit_code))
    return text


def _escaped_prefix(text: str, budget: int) -> str:
    """The longest prefix of `text`, marked "...", whose JSON string escaping fits `budget`."""
    used = 3
    for index, char in enumerate(text):
        used += len(json.dumps(char)) - 2
        if used > budget:
            return text[:index] + "..."
    return text


def parse(text: str | bytes | None) -> TerminationMessage | None:
    """The termination message in `text`, or None when it is absent, larger than the kubelet
    would keep, not JSON, not an object or of the wrong shape."""
    if not text or len(text) > TERMINATION_MESSAGE_MAX_BYTES:
        return None
    try:
        return TerminationMessage.model_validate_json(text)
    except ValidationError:
        return None
