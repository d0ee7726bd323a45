"""Validation of a single-row request, value by value in plain Python. Pure.

Why: one row is the common request, and for it the array path of validation.Validator (a dozen
numpy calls over [features, 1] arrays, each a few microseconds of dispatch for one value) costs
more than the checks themselves. This path accepts only what the array path accepts, and builds
the same Batch, value for value; anything else (a problem to name, numpy arrays from binary or raw
tensors, nested rows, integers beyond 2**53 - 1) returns None and goes down the array path, which
finds and names the problem, so refusals and their messages are the array path's alone."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from creditmodel.core.schema import Schema
from creditmodel.predictor.numeric import (
    EXACT_INT,
    FP32_ROUNDS_FINITE,
    model_dtype,
    representable,
)

if TYPE_CHECKING:
    from creditmodel.predictor.validation import Tensor

# A validated row: its columns in schema order, numeric [1, numeric] and codes [1, categorical]
# as in validation.Batch.
Row = tuple["RowColumns", npt.NDArray[np.float64], npt.NDArray[np.intp]]
# Per feature in schema order: (model dtype, index among its kind, the categories' columns or
# None for a numeric feature).
_ColumnsPlan = dict[str, tuple[Any, int, list[npt.NDArray[Any]] | None]]

# Per feature: (datatype, index among its kind, low, high, integral, categories or None); a
# tuple, as unpacking one is the cheapest way to read several fields.
_Spec = tuple[str, int, float, float, bool, dict[str, int] | None]
_ONE_ROW_SHAPES = ([1], [1, 1])


def _category_column(category: str) -> npt.NDArray[Any]:
    """A read-only [1, 1] column holding `category`, shared by every request that names it."""
    column = np.empty((1, 1), dtype=object)
    column[0, 0] = category
    column.flags.writeable = False
    return column


class OneRowValidator:
    """`validate` returns the parts of the Batch of a well-formed single-row request, else None."""

    def __init__(self, schema: Schema) -> None:
        self.names = [f.name for f in schema.features]
        numeric = [f for f in schema.features if f.kind == "numeric"]
        categorical = [f for f in schema.features if f.kind == "categorical"]
        self._specs: dict[str, _Spec] = {}
        for index, feature in enumerate(numeric):
            # outside: the array path names the field. An FP32 value is judged once rounded
            # (below); before that it must only round to a finite float32.
            integral = feature.datatype == "INT64"
            low, high = (
                representable(feature) if integral else (-FP32_ROUNDS_FINITE, FP32_ROUNDS_FINITE)
            )
            self._specs[feature.name] = (feature.datatype, index, low, high, integral, None)
        category_columns: dict[str, list[npt.NDArray[Any]]] = {}
        for index, feature in enumerate(categorical):
            categories = list(feature.categories or ())
            known = {category: code for code, category in enumerate(categories)}
            category_columns[feature.name] = [_category_column(c) for c in categories]
            self._specs[feature.name] = (feature.datatype, index, 0.0, 0.0, False, known)
        self._numeric_count, self._categorical_count = len(numeric), len(categorical)
        self._names_set = frozenset(self.names)
        self._ordered = [self._specs[name] for name in self.names]
        # The array path gives FP32 features float32 columns and INT64 ones int64; a schema with
        # another numeric datatype keeps the array path.
        self.enabled = all(f.datatype in ("FP32", "INT64") for f in numeric)
        self._fp32_index = [i for i, f in enumerate(numeric) if f.datatype == "FP32"]
        self._fp32_bounds = [representable(numeric[i]) for i in self._fp32_index]
        self._columns_plan: _ColumnsPlan = {
            f.name: (model_dtype(f.datatype), self._specs[f.name][1], category_columns.get(f.name))
            for f in schema.features
        }

    def validate(self, tensors: Sequence[Tensor]) -> Row | None:
        if not self.enabled or len(tensors) != len(self.names):
            return None
        names = [tensor.name for tensor in tensors]
        if names == self.names:  # the schema's order, as clients built from it send
            specs = self._ordered
        else:  # as many names as features and all of them: each once, in another order
            try:
                if self._names_set != set(names):
                    return None
            except TypeError:  # an unhashable name
                return None
            specs = [self._specs[name] for name in names]
        raw: list[float] = [0.0] * self._numeric_count
        codes: list[int] = [0] * self._categorical_count
        for tensor, spec in zip(tensors, specs, strict=True):
            shape, data = tensor.shape, tensor.data
            if (
                tensor.datatype != spec[0]
                # [1] or [1, 1] as the array path reads shapes (true or 1.0 is no dimension)
                or type(shape) is not list
                or shape not in _ONE_ROW_SHAPES
                or type(shape[0]) is not int
                or type(shape[-1]) is not int
                or type(data) is not list
                or len(data) != 1
            ):
                return None
            _, index, low, high, integral, known = spec
            value = data[0]
            if known is None:
                x = _number(value)
                if x is None or not low <= x <= high:
                    return None
                if integral and (x != math.floor(x) or not -EXACT_INT <= x <= EXACT_INT):
                    return None
                raw[index] = x
            else:
                code = known.get(value) if type(value) is str else None
                if code is None:
                    return None
                codes[index] = code
        if self._fp32_index:
            # The model sees float32, and reasons and drift the same float32 values: array("f")
            # rounds as numpy's astype(float32) does (the C conversion, to nearest).
            rounded = array("f", [raw[i] for i in self._fp32_index])
            for i, value, (low, high) in zip(
                self._fp32_index, rounded, self._fp32_bounds, strict=True
            ):
                if not low <= value <= high:
                    return None
                raw[i] = value
        return (
            RowColumns(self._columns_plan, raw, codes),
            np.array([raw], dtype=np.float64),
            np.array([codes], dtype=np.intp),
        )


class RowColumns(Mapping[str, "npt.NDArray[Any]"]):
    """The [1, 1] model-dtype columns of one validated row, each built when first read.

    Why: the one-row model run (bound_run.py) reads the numeric and code matrices, not these;
    only a model without that path, the prediction log and the shadow read them. Built eagerly
    they were a tenth of a single-row request's instructions. A column is what the array path
    builds: FP32 values are already float32-rounded in `raw` (exact as float32 again), INT64
    ones integral within 2**53 (exact as int64), categories the schema's shared string columns."""

    __slots__ = ("_built", "_codes", "_plan", "_raw")

    def __init__(self, plan: _ColumnsPlan, raw: list[float], codes: list[int]) -> None:
        self._plan, self._raw, self._codes = plan, raw, codes
        self._built: dict[str, npt.NDArray[Any]] = {}

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        column = self._built.get(name)
        if column is None:
            dtype, index, category_columns = self._plan[name]
            if category_columns is None:
                column = np.array([[self._raw[index]]], dtype=dtype)
            else:
                column = category_columns[self._codes[index]]
            self._built[name] = column
        return column

    def __contains__(self, name: object) -> bool:
        return name in self._plan

    def __iter__(self) -> Iterator[str]:
        return iter(self._plan)

    def __len__(self) -> int:
        return len(self._plan)


def _number(value: Any) -> float | None:
    """A JSON number as the array path reads it (float64), None for anything it would refuse or
    should look at itself: booleans, strings, non-finite values, integers beyond 2**53 - 1."""
    kind = type(value)
    if kind is float:
        return value if value - value == 0.0 else None  # inf - inf and nan - nan are nan
    if kind is int and -EXACT_INT <= value <= EXACT_INT:
        return float(value)
    return None
