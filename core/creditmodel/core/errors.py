"""One way to say what pydantic refused, so every command and log names the field the same way."""

from __future__ import annotations

from pydantic import ValidationError

_SHOWN = 200  # characters of a rejected value quoted back


def first_error(exc: ValidationError, *, show_input: bool = False) -> str:
    """`location: message` of the first error, plus how many more there are; `show_input` adds
    the rejected value (for command-line arguments, where the user typed it and wants it back)."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"]) or "value"
    text = f"{location}: {error['msg']}"
    if show_input and error["loc"]:  # a whole-model check's input is every setting at once
        given = repr(error.get("input"))
        text += f" (got {given if len(given) <= _SHOWN else given[:_SHOWN] + '...'})"
    if exc.error_count() > 1:
        text += f" (and {exc.error_count() - 1} more)"
    return text
