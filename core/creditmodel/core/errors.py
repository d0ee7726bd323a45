"""One way to say what pydantic refused, so every command and log names the field the same way."""

from __future__ import annotations

from pydantic import ValidationError


def first_error(exc: ValidationError, *, show_input: bool = False) -> str:
    """`location: message` of the first error, plus how many more there are; `show_input` adds
    the rejected value (for command-line arguments, where the user typed it and wants it back)."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"]) or "value"
    text = f"{location}: {error['msg']}"
    if show_input:
        text += f" (got {error.get('input')!r})"
    if exc.error_count() > 1:
        text += f" (and {exc.error_count() - 1} more)"
    return text
