"""One way to say what pydantic refused, so every command and log names the field the same way."""

from __future__ import annotations

import re
from collections.abc import Collection

from pydantic import ValidationError

_SHOWN = 200  # characters of a rejected value quoted back


def first_error(exc: ValidationError, *, show_input: bool = False) -> str:
    """`location: message` of the first error, plus how many more there are; `show_input` adds
    the rejected value (for command-line arguments, where the user typed it and wants it back)."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"]) or "value"
    # a whole-model check's input is every setting at once: not shown
    return _described(exc, location, show_input=show_input and bool(error["loc"]))


def _described(exc: ValidationError, location: str, *, show_input: bool) -> str:
    """`location: message` of the first error, the value as sent (cut) when `show_input`, and
    how many more errors there are."""
    error = exc.errors()[0]
    text = f"{location}: {error['msg']}"
    if show_input:
        given = repr(error.get("input"))
        text += f" (got {given if len(given) <= _SHOWN else given[:_SHOWN] + '...'})"
    if exc.error_count() > 1:
        text += f" (and {exc.error_count() - 1} more)"
    return text


_FIELD = re.compile(r'error parsing value for field "([a-z0-9_]+)"')


def settings_problem(exc: Exception, prefix: str, flags: Collection[str] = ()) -> str | None:
    """What a settings class refused, naming the environment variable (`<prefix><FIELD>`, and
    the `--<field>` flag for the fields in `flags`) that whoever runs it can fix rather than the Python
    field, or None when `exc` is not a settings failure. pydantic-settings raises SettingsError,
    naming only the field, when a list or object setting is not JSON."""
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = f"{prefix}{field.upper()}" if field else "the settings"
        if field in flags:
            variable += f" (or --{field})"
        return _described(exc, variable, show_input=True)
    found = _FIELD.search(str(exc))
    if found is None:
        return None
    return f"{prefix}{found.group(1).upper()}: not JSON (a list or object setting takes JSON)"
