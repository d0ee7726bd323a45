"""Numeric inputs checked one value at a time, for a refusal that names the input, the row and
the problem: booleans, non-numbers, NaN and infinity, fractions in an INT64 input, values
outside the schema's range or what the model's datatype holds, and integers of any length (JSON
sets none). The validator's fast path checks whole batches at once and comes here only to name
what it refused; so does its careful path for every input's layout (`flat`). Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from creditmodel.core.schema import Feature
from creditmodel.predictor.errors import RequestError, clip

_FLOAT64_MAX = float(np.finfo(np.float64).max)
FP32_MAX = float(np.finfo(np.float32).max)
EXACT_INT = 2**53 - 1
"""The largest integer whose float64 stands for it alone: 2**53 + 1 reads as 2**53, so a bound
of 2**53 served it as 2**53. The one-row path leaves larger ones to the array path, which
refuses them."""


def representable(feature: Feature) -> tuple[float, float]:
    """The values the model's input holds as sent: float32's range for FP32 (beyond it the cast
    gives infinity), +-(2**53 - 1) for INT64 (integers whose float64 is theirs alone), within the schema's
    own bounds. Anything outside is refused, never silently coerced."""
    limit = FP32_MAX if feature.datatype == "FP32" else float(EXACT_INT)
    low = -limit if feature.minimum is None else max(float(feature.minimum), -limit)
    high = limit if feature.maximum is None else min(float(feature.maximum), limit)
    return low, high


def _holds_boolean(items: list[Any]) -> bool:
    """Whether a JSON boolean is anywhere in `items`. Iterative: data may nest as deep as the
    JSON does."""
    stack = [items]
    while stack:
        kinds = set(map(type, items := stack.pop()))
        if bool in kinds:
            return True
        if list in kinds:
            stack.extend(i for i in items if type(i) is list)
    return False


def first_boolean(data: list[Any]) -> int | None:
    """The row of the first JSON boolean in `data` (a list, maybe of row lists), else None."""
    for row, item in enumerate(data):
        if type(item) is bool or (type(item) is list and _holds_boolean(item)):
            return row
    return None


def shown(value: Any) -> str:
    """A value as a refusal quotes it: its repr, cut as every client string is."""
    return clip(repr(value.item() if isinstance(value, np.generic) else value))


def flat(name: str, shape: Sequence[int], data: Any, rows: int) -> Any:
    """One input's `rows` values, flat: a list or a 1-D array. V2 data (a JSON array or binary
    contents) is accepted flat, or nested exactly as its shape ([N, 1]: N one-value rows);
    anything else, deeper, ragged or miscounted, is refused naming the input. Looks two levels
    down at most: data may nest as deep as the JSON does."""
    held: int | None = None  # how many values, where that is the whole problem
    if isinstance(data, np.ndarray):
        if data.size == rows and (data.ndim == 1 or data.shape == tuple(shape)):
            return data.reshape(rows)
        held = None if data.size == rows else data.size
    elif not any(type(item) is list for item in data):
        if len(data) == rows:
            return data
        held = len(data)
    elif len(shape) == 2 and len(data) == rows:
        if all(type(row) is list and len(row) == 1 and type(row[0]) is not list for row in data):
            return [row[0] for row in data]
    if held is not None:
        raise RequestError(
            "wrong_shape", f"input {name!r}: shape says {rows} values, data holds {held}"
        )
    dims = ", ".join(map(str, shape))
    plural = "s" if rows != 1 else ""
    one_each = f", or {rows} array{plural} of one value" if len(shape) == 2 else ""
    raise RequestError(
        "wrong_shape",
        f"input {name!r}: data is not laid out as its shape [{dims}]: expected a flat array"
        f" of {rows} value{plural}{one_each}",
    )


def checked_column(
    feature: Feature, shape: Sequence[int], data: Any, rows: int
) -> npt.NDArray[np.float64]:
    name = feature.name
    items = flat(name, shape, data, rows)
    row = first_boolean(items) if isinstance(items, list) else None
    if row is not None:
        raise RequestError(
            "wrong_datatype",
            f"input {name!r}: row {row} is a boolean; values of a {feature.datatype!r} input"
            " must be numbers",
        )
    values = np.asarray(items)
    if values.dtype.kind not in "iuf":
        values = _numbers(feature, values)
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all():
            row = int(np.argmin(finite))
            raise RequestError(
                "non_finite",
                f"input {name!r}: row {row} is {shown(values[row])}; NaN and infinity are"
                " not valid",
            )
        if feature.datatype == "INT64":
            fractional = values != np.floor(values)
            if fractional.any():
                row = int(np.argmax(fractional))
                raise RequestError(
                    "wrong_datatype",
                    f"input {name!r}: row {row} is {shown(values[row])}, not an integer",
                )
    _check_range(feature, values)
    return values.astype(np.float64)


def _numbers(feature: Feature, values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Values numpy could not type as numbers: a non-number is named; numbers are integers
    no 64-bit type holds (JSON has no limit) or such integers beside negative ones, read as
    float64, and one beyond even float64 is out of range, not a wrong datatype."""
    items = values.tolist()
    for row, value in enumerate(items):
        if type(value) is bool:  # an int to Python: numpy would score True as 1.0
            raise RequestError(
                "wrong_datatype",
                f"input {feature.name!r}: row {row} is a boolean; values of a"
                f" {feature.datatype!r} input must be numbers",
            )
        if not isinstance(value, int | float):
            raise RequestError(
                "wrong_datatype",
                f"input {feature.name!r}: values must be numbers, got {shown(value)}",
            )
    try:
        return np.array(items, dtype=np.float64)
    except OverflowError:
        row = next(r for r, v in enumerate(items) if abs(v) > _FLOAT64_MAX)
        low, high = representable(feature)
        raise RequestError(
            "out_of_range",
            f"input {feature.name!r}: row {row} is an integer beyond what the model's"
            f" {feature.datatype} input holds ({low:g} to {high:g})",
        ) from None


def _check_range(feature: Feature, values: npt.NDArray[Any]) -> None:
    for bound, outside, word in (
        (feature.minimum, np.less, "below the minimum"),
        (feature.maximum, np.greater, "above the maximum"),
    ):
        if bound is None:
            continue
        bad = outside(values, bound)
        if bad.any():
            row = int(np.argmax(bad))
            raise RequestError(
                "out_of_range",
                f"input {feature.name!r}: row {row} is {shown(values[row])}, {word} {bound:g}",
            )
    low, high = representable(feature)
    beyond = (values < low) | (values > high)
    if beyond.any():
        row = int(np.argmax(beyond))
        raise RequestError(
            "out_of_range",
            f"input {feature.name!r}: row {row} is {shown(values[row])}, beyond what the"
            f" model's {feature.datatype} input holds ({low:g} to {high:g})",
        )
