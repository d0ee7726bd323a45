"""Bounds on what a client can make the predictor say back: request ids, and the names,
datatypes, shapes and values quoted in refusals, response headers and log lines. Pure.

The request id (JSON or gRPC `id`, the `x-request-id` header or metadata) is at most
`MAX_ID_CHARS` characters; a longer one is refused naming where it came from. It is echoed as
given in the V2 response `id` (JSON-escaped there), and as `header_value` in the `x-request-id`
response header: printable ASCII as is, every other character percent-encoded as UTF-8, so that
no CR, LF, NUL or other control character ever reaches a header.

Every other client string quoted in a message is cut to `MAX_SHOWN_CHARS` with its length
appended, and a whole refusal message to `MAX_MESSAGE_CHARS` (errors.py), whatever built it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from creditmodel.core.schema import Schema
from creditmodel.predictor.errors import MAX_SHOWN_CHARS, RequestError, clip
from creditmodel.predictor.numeric import first_boolean
from creditmodel.predictor.validation import Tensor

MAX_ID_CHARS = 128
# A longer name is shown cut, as every client string is (the schema's own names
# are never cut, whatever their length).
MAX_NAME_CHARS = MAX_SHOWN_CHARS
# The longest V2 datatype name is six characters ("UINT64").
MAX_DATATYPE_CHARS = 16
_MAX_SHAPE_SHOWN = 3
_INT64 = 63
_NOT_NUMBERS = ("BYTES", "BOOL")


class Shown:
    """A stand-in whose repr is a bounded description of a client value (validation formats
    names, datatypes and shapes with repr; a stand-in keeps what it prints short)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def show(value: object) -> str:
    """A bounded repr of a client value: strings and numbers cut, containers by type only (the
    repr of a deeply nested list can exhaust the stack)."""
    if isinstance(value, str):
        return repr(clip(value))
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return (
            repr(value)
            if value.bit_length() <= _INT64
            else f"<an integer of {value.bit_length()} bits>"
        )
    if isinstance(value, bytes):
        return repr(value[:MAX_SHOWN_CHARS]) + ("…" if len(value) > MAX_SHOWN_CHARS else "")
    return f"<{type(value).__name__}>"


def checked_id(value: str | None, where: str) -> str | None:
    """A client-given request id, None when absent or empty; longer than `MAX_ID_CHARS` is
    refused naming `where` (e.g. "'id'", "header 'x-request-id'")."""
    if not value:
        return None
    if len(value) > MAX_ID_CHARS:
        raise RequestError(
            "invalid_request",
            f"{where}: {len(value)} characters, longer than the limit of {MAX_ID_CHARS}",
        )
    return value


def usable_id(value: str | None) -> str | None:
    """A client-given id to log a refusal under when the request was refused before its id was
    checked (an unknown model or version): the id if `checked_id` would take it, else None."""
    return value if value and len(value) <= MAX_ID_CHARS else None


def header_value(text: str) -> bytes:
    """`text` as a header value: printable ASCII kept, anything else percent-encoded (UTF-8)."""
    if text.isascii() and text.isprintable():
        return text.encode("ascii")
    return "".join(
        c if " " <= c <= "~" else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in text
    ).encode("ascii")


def _plain_dimension(value: object) -> bool:
    return isinstance(value, float) or (isinstance(value, int) and value.bit_length() <= _INT64)


def _shown_shape(shape: Sequence[Any]) -> list[Any]:
    shown: list[Any] = [
        d if _plain_dimension(d) else Shown(show(d)) for d in shape[:_MAX_SHAPE_SHOWN]
    ]
    if len(shape) > _MAX_SHAPE_SHOWN:
        shown.append(Shown(f"… ({len(shape)} dimensions)"))
    return shown


def _bounded(tensor: Tensor, schema: Schema) -> Tensor | None:
    """A stand-in for `tensor` that prints bounded and is refused exactly as it would be, or
    None when it needs none."""
    name, datatype, shape = tensor.name, tensor.datatype, tensor.shape
    new_name: Any = name
    if not isinstance(name, str):
        new_name = Shown(show(name))
    elif len(name) > MAX_NAME_CHARS and name not in {f.name for f in schema.features}:
        new_name = clip(name)
    new_datatype: Any = datatype
    if not isinstance(datatype, str):
        new_datatype = Shown(show(datatype))
    elif len(datatype) > MAX_DATATYPE_CHARS:
        new_datatype = clip(datatype, MAX_DATATYPE_CHARS)
    new_shape: Any = shape
    if isinstance(shape, list | tuple) and (
        len(shape) > 2 or not all(_plain_dimension(d) for d in shape)
    ):
        new_shape = _shown_shape(shape)
    if new_name is name and new_datatype is datatype and new_shape is shape:
        return None
    return Tensor(new_name, new_datatype, new_shape, tensor.data)


def _plain(tensor: Tensor) -> bool:
    """Nothing to bound (the common case, checked in well under a microsecond)."""
    name, datatype, shape = tensor.name, tensor.datatype, tensor.shape
    return (
        type(name) is str
        and len(name) <= MAX_NAME_CHARS
        and type(datatype) is str
        and len(datatype) <= MAX_DATATYPE_CHARS
        and (
            not isinstance(shape, list | tuple)
            or (len(shape) == 2 and type(shape[0]) is int and type(shape[1]) is int)
            or (len(shape) == 1 and type(shape[0]) is int)
            or not shape
        )
    )


def screen(tensors: Sequence[Tensor], schema: Schema) -> Sequence[Tensor]:
    """The tensors with every name, datatype and shape that validation would quote unbounded
    replaced by a bounded stand-in that it refuses the same way (the schema's own names are
    never cut), so validating these instead says the same with bounded quotes. Tensors with
    nothing to bound are returned as they are."""
    result: list[Tensor] | None = None
    for index, tensor in enumerate(tensors):
        if _plain(tensor):
            continue
        bounded = _bounded(tensor, schema)
        if bounded is not None:
            if result is None:
                result = list(tensors)
            result[index] = bounded
    return tensors if result is None else result


def nested_input(tensors: Sequence[Tensor], depth: int = 8) -> Tensor | None:
    """The first tensor whose data nests lists deeper than `depth` (an input is [N] or [N, 1]),
    found without recursion; for naming it when something describing it overflowed."""
    for tensor in tensors:
        stack: list[tuple[Any, int]] = [(tensor.data, 0)]
        while stack:
            items, level = stack.pop()
            if type(items) is not list:
                continue
            if level >= depth:
                return tensor
            stack.extend((item, level + 1) for item in items if type(item) is list)
    return None


def refuse_booleans(tensors: Sequence[Tensor]) -> None:
    """`true`/`false` is not a number: refused in every tensor of a numeric datatype."""
    for tensor in tensors:
        data = tensor.data
        if type(data) is not list or tensor.datatype in _NOT_NUMBERS:
            continue
        kinds = set(map(type, data))
        if bool not in kinds and list not in kinds:
            continue
        row = first_boolean(data)
        if row is not None:
            raise RequestError(
                "wrong_datatype",
                f"input {show(tensor.name)}: row {row} is a boolean; values of a"
                f" {show(tensor.datatype)} input must be numbers",
            )
