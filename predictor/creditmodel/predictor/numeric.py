"""Numeric inputs checked one value at a time, for a refusal that names the input, the row and
the problem: booleans, non-numbers, NaN and infinity, fractions in an INT64 input, values
outside the schema's range or what the model's datatype holds, and integers of any length (JSON
sets none). The validator's fast path checks whole batches at once and comes here only to name
what it refused; so does its careful path for every input's layout (`flat`). The fast path's
own readings of a batch's numbers (`number_array`, `holds_a_boolean`) are here too. Pure."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from creditmodel.core.schema import Feature
from creditmodel.predictor.errors import RequestError, clip

_FLOAT64_MAX = float(np.finfo(np.float64).max)
FP32_MAX = float(np.finfo(np.float32).max)
FP32_ROUNDS_FINITE = float(np.nextafter(2.0**128 - 2.0**103, 0.0))
"""The largest float64 that float32 rounds to a finite value (its maximum, 3.4028235e+38 as
float32 prints it); anything larger becomes infinity."""


EXACT_INT = 2**53 - 1
"""The largest integer whose float64 stands for it alone: 2**53 + 1 reads as 2**53, so a bound
of 2**53 served it as 2**53. The one-row path leaves larger ones to the array path, which
refuses them."""


def model_dtype(datatype: str) -> npt.DTypeLike:
    """The numpy dtype onnxruntime expects for a V2 datatype (BYTES is a string tensor)."""
    return {"INT64": np.int64, "FP32": np.float32}.get(datatype, object)


def as_float32(value: float) -> float:
    """`value` rounded to float32, as the model's FP32 input holds it (infinity beyond)."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def representable(feature: Feature) -> tuple[float, float]:
    """The values the model is given, within the schema's bounds and its input's datatype. FP32:
    float32 numbers, the schema's bounds rounded to float32 as every value is (a value is judged
    as the model holds it, so JSON, binary and gRPC contents get one decision; 0.1 under a
    maximum of 0.1 was refused as gRPC float32 and served as JSON). INT64: integers within
    +-(2**53 - 1), whose float64 is theirs alone. Anything outside is refused, never coerced."""
    if feature.datatype == "FP32":
        low = -FP32_MAX if feature.minimum is None else as_float32(feature.minimum)
        high = FP32_MAX if feature.maximum is None else as_float32(feature.maximum)
        return max(low, -FP32_MAX), min(high, FP32_MAX)
    low = -EXACT_INT if feature.minimum is None else max(feature.minimum, -EXACT_INT)
    high = EXACT_INT if feature.maximum is None else min(feature.maximum, EXACT_INT)
    return float(low), float(high)


def bound_text(bound: float) -> str:
    """A bound as a refusal quotes it: exactly, a whole number without exponent ("1000000", not
    %g's "1e+06", which hid that 1000001 was above it)."""
    if float(bound).is_integer() and abs(bound) < 1e16:
        return str(int(bound))
    return repr(float(bound))


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
    """One numeric input's values as the model is given them (FP32 rounded to float32), as
    float64; the first problem refused, naming the input and its row."""
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
        values = _numbers(feature, items)
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
    given = items if isinstance(items, list) else values  # quoted as sent: 5 stays 5, not 5.0
    if feature.datatype == "FP32":
        _check_beyond(feature, given, values, -FP32_ROUNDS_FINITE, FP32_ROUNDS_FINITE)
        values = values.astype(np.float32)  # finite: what the model is given, judged below
    _check_range(feature, given, values)
    return values.astype(np.float64)


def _numbers(feature: Feature, items: Any) -> npt.NDArray[np.float64]:
    """Values numpy could not type as numbers: the first non-number is named by row; numbers
    are integers no 64-bit type holds (JSON has no limit) or such integers beside negative
    ones, read as float64, and one beyond even float64 is out of range, not a wrong datatype."""
    items = items.tolist() if isinstance(items, np.ndarray) else items
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
                f"input {feature.name!r}: row {row} is {shown(value)}; values of a"
                f" {feature.datatype!r} input must be numbers",
            )
    try:
        return np.array(items, dtype=np.float64)
    except OverflowError:
        for row, value in enumerate(items):  # the first problem by row: NaN, infinity or this
            if type(value) is float and value - value != 0.0:
                raise RequestError(
                    "non_finite",
                    f"input {feature.name!r}: row {row} is {shown(value)}; NaN and infinity"
                    " are not valid",
                ) from None
            if type(value) is int and abs(value) > _FLOAT64_MAX:
                break
        low, high = representable(feature)
        raise RequestError(
            "out_of_range",
            f"input {feature.name!r}: row {row} is an integer beyond what the model's"
            f" {feature.datatype} input holds ({bound_text(low)} to {bound_text(high)})",
        ) from None


def _check_beyond(
    feature: Feature, given: Any, values: npt.NDArray[Any], low: float, high: float
) -> None:
    beyond = (values < low) | (values > high)
    if beyond.any():
        row = int(np.argmax(beyond))
        low, high = representable(feature)
        raise RequestError(
            "out_of_range",
            f"input {feature.name!r}: row {row} is {shown(given[row])}, beyond what the"
            f" model's {feature.datatype} input holds ({bound_text(low)} to"
            f" {bound_text(high)})",
        )


def _check_range(feature: Feature, given: Any, values: npt.NDArray[Any]) -> None:
    """`values` (as the model is given them) within the schema's bounds and the datatype's;
    a refusal quotes the value as it was `given`."""
    for bound, outside, word in (
        (feature.minimum, np.less, "below the minimum"),
        (feature.maximum, np.greater, "above the maximum"),
    ):
        if bound is None:
            continue
        bad = outside(values, as_float32(bound) if feature.datatype == "FP32" else bound)
        if bad.any():
            row = int(np.argmax(bad))
            raise RequestError(
                "out_of_range",
                f"input {feature.name!r}: row {row} is {shown(given[row])}, {word}"
                f" {bound_text(bound)}",
            )
    _check_beyond(feature, given, values, *representable(feature))


def number_array(datas: list[Any]) -> npt.NDArray[Any]:
    """The numeric inputs as one [inputs, rows] array. JSON lists are read by array("d"), which
    takes Python ints and floats only (a string, null or nested list raises TypeError, an int
    beyond float64 OverflowError): two fifths fewer instructions than numpy discovering the
    type of every item. Booleans pass as 1.0 and 0.0 here, as they do through numpy, and are
    looked for afterwards (holds_a_boolean). Binary tensors keep numpy's reading, which leaves
    narrow floats unwidened until their finiteness is checked."""
    if all(type(data) is list for data in datas):
        return np.array([np.frombuffer(array("d", data), dtype=np.float64) for data in datas])
    return np.array(datas)


def holds_a_boolean(datas: list[Any], values: npt.NDArray[np.float64]) -> bool:
    """Whether a JSON list among `datas` holds a boolean, which numpy read as 1.0 or 0.0 into
    `values` (the same rows as floats): a JSON boolean is not a number. Only the items that read
    as 0 or 1 are looked at, where a type check of every item cost as much as the conversion."""
    suspect = (values == 0) | (values == 1)
    for index in np.flatnonzero(suspect.any(axis=1)).tolist():
        data = datas[index]
        if type(data) is not list:  # binary tensors and gRPC contents hold no JSON booleans
            continue
        at = np.flatnonzero(suspect[index]).tolist()
        items = data if 4 * len(at) > len(data) else map(data.__getitem__, at)
        if bool in set(map(type, items)):
            return True
    return False
