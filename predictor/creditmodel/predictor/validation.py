"""Validation of V2 input tensors against a bundle schema: one tensor per feature, shape [N] or
[N, 1], the schema's datatype, finite in-range numbers, known categories. Pure: it turns decoded
tensors into model-ready columns or raises a `RequestError` naming the input and the problem."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from creditmodel.core.schema import Feature, Schema
from creditmodel.predictor.errors import RequestError
from creditmodel.predictor.numeric import (
    checked_column,
    flat,
    holds_a_boolean,
    model_dtype,
    number_array,
    representable,
    shown,
)
from creditmodel.predictor.one_row import OneRowValidator

Column = npt.NDArray[Any]


@dataclass(slots=True)
class Tensor:
    """One V2 input as a transport decoded it: JSON `data` (a list) or a numpy array (binary
    tensors, gRPC contents). Not frozen: a frozen dataclass's __init__ costs three times as much,
    twenty times per request; nothing changes a Tensor once built."""

    name: str
    datatype: str
    shape: Sequence[int]
    data: Any


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~3x, on every request
class Batch:
    """Validated rows: one [N, 1] column per feature in schema order, in the model's dtype, plus
    the same values as one float matrix of the numeric features [N, numeric] and one matrix of
    category indices (position in the schema's category list) [N, categorical], which reason
    codes and drift use without touching strings again. A batch of several rows may build its
    categorical columns when they are first read (CategoryColumns)."""

    rows: int
    columns: Mapping[str, Column]
    numeric: npt.NDArray[np.float64]
    codes: npt.NDArray[np.intp]


class CategoryColumns(Mapping[str, Column]):
    """A batch's columns where the categorical ones are built from their codes when first read.

    Why: a model that takes category codes (coded_inputs.py) never reads them, and building 11
    object columns of 1,000 strings was 4% of a 1,000-row request's instructions. The prediction
    log and the shadow read them all, and get what an eager build gave: the schema's own string
    objects, [N, 1], in schema order."""

    __slots__ = ("_built", "_names", "_pending")

    def __init__(
        self,
        built: dict[str, Column],
        names: Sequence[str],
        pending: dict[str, tuple[npt.NDArray[np.object_], npt.NDArray[np.intp]]],
    ) -> None:
        self._built = built
        self._names = names
        self._pending = pending  # name -> (its category list as an array, the batch's codes)

    def __getitem__(self, name: str) -> Column:
        column = self._built.get(name)
        if column is None:
            categories, codes = self._pending[name]
            column = categories[codes].reshape(-1, 1)
            self._built[name] = column
        return column

    def __contains__(self, name: object) -> bool:
        return name in self._built or name in self._pending

    @property
    def unread(self) -> frozenset[str]:
        """The categorical columns nobody has read yet (so none has been built)."""
        return frozenset(self._pending) - frozenset(self._built)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class Validator:
    def __init__(self, schema: Schema, max_rows: int) -> None:
        self.schema = schema
        self.max_rows = max_rows
        self._features = {feature.name: feature for feature in schema.features}
        self._categories = {
            feature.name: {c: i for i, c in enumerate(feature.categories or ())}
            for feature in schema.features
        }
        # Each category list as an object array: a validated column is this indexed by its codes
        # (the schema's own string objects), a tenth of the cost of building it from the request.
        self._category_arrays = {
            feature.name: np.array(list(feature.categories or ()), dtype=object)
            for feature in schema.features
        }
        # Each category's position as bytes, one width per feature (_categorical_fast).
        self._code_bytes = [
            _code_bytes(f.categories or ()) for f in schema.features if f.kind == "categorical"
        ]
        self._expected = ", ".join(self._features)
        self._names = tuple(self._features)
        self.numeric_names = [f.name for f in schema.features if f.kind == "numeric"]
        self.categorical_names = [f.name for f in schema.features if f.kind == "categorical"]
        numeric = [self._features[name] for name in self.numeric_names]
        self._low = np.array([[representable(f)[0]] for f in numeric])
        self._high = np.array([[representable(f)[1]] for f in numeric])
        self._integral = np.array([f.datatype == "INT64" for f in numeric], dtype=bool)
        self._any_integral = bool(self._integral.any())
        self._fp32_rows = np.flatnonzero(~self._integral)  # numeric datatypes: FP32, INT64
        # Each numeric datatype's rows of the numeric array, cast to the model's dtype apart (an
        # FP32 value beyond int64's range warned when every row was cast to int64 too), and each
        # input's place among them.
        groups: dict[Any, list[int]] = {}
        for index, feature in enumerate(numeric):
            groups.setdefault(model_dtype(feature.datatype), []).append(index)
        self._by_dtype = [(dtype, np.array(indices)) for dtype, indices in groups.items()]
        self._place = {
            numeric[index].name: (dtype, position)
            for dtype, indices in groups.items()
            for position, index in enumerate(indices)
        }
        self._dtypes = {f.name: model_dtype(f.datatype) for f in schema.features}
        self._one_row = OneRowValidator(schema)

    def validate(self, tensors: Sequence[Tensor]) -> Batch:
        row = self._one_row.validate(tensors)  # the common single-row request, in Python
        if row is not None:
            return Batch(1, *row)
        by_name: dict[str, Tensor] = {}
        for tensor in tensors:
            if not isinstance(tensor.name, str) or tensor.name not in self._features:
                raise RequestError(
                    "unknown_input",
                    f"input {tensor.name!r}: not an input of this model (inputs: {self._expected})",
                )
            if tensor.name in by_name:
                raise RequestError("invalid_request", f"input {tensor.name!r}: given twice")
            by_name[tensor.name] = tensor
        missing = [name for name in self._features if name not in by_name]
        if missing:
            raise RequestError(
                "missing_input", "missing input(s) " + ", ".join(repr(m) for m in missing)
            )
        rows = self._rows(by_name)
        numeric = self._numeric_fast(by_name, rows)
        if numeric is None:  # something is off: find and name it, one input at a time
            numeric = np.stack(
                [
                    checked_column(self._features[n], by_name[n].shape, by_name[n].data, rows)
                    for n in self.numeric_names
                ]
            )
        codes = np.empty((len(self.categorical_names), rows), dtype=np.intp)
        columns: dict[str, Column] = {}
        pending: dict[str, tuple[npt.NDArray[np.object_], npt.NDArray[np.intp]]] = {}
        if self._categorical_fast(by_name, rows, codes):
            pending = {
                name: (self._category_arrays[name], codes[index])
                for index, name in enumerate(self.categorical_names)
            }
        else:
            for index, name in enumerate(self.categorical_names):
                tensor = by_name[name]
                columns[name] = self._categorical(
                    self._features[name], flat(name, tensor.shape, tensor.data, rows), codes[index]
                )
        return self._batch(rows, numeric, codes, columns, pending)

    def concatenate(self, batches: Sequence[Batch]) -> Batch:
        """One batch of the rows of several this validator made, in order (shadow micro-batches):
        built from their numeric and code matrices as `validate` builds a batch, so no row's
        columns are read (a single row's are built when read, a microsecond each)."""
        if len(batches) == 1:
            return batches[0]
        numeric = np.ascontiguousarray(np.concatenate([b.numeric for b in batches]).T)
        codes = np.ascontiguousarray(np.concatenate([b.codes for b in batches]).T)
        pending = {
            name: (self._category_arrays[name], codes[index])
            for index, name in enumerate(self.categorical_names)
        }
        return self._batch(sum(b.rows for b in batches), numeric, codes, {}, pending)

    def _batch(
        self,
        rows: int,
        numeric: npt.NDArray[np.float64],
        codes: npt.NDArray[np.intp],
        columns: dict[str, Column],
        pending: dict[str, tuple[npt.NDArray[np.object_], npt.NDArray[np.intp]]],
    ) -> Batch:
        """The batch of `numeric` [numeric, N] and `codes` [categorical, N], with the categorical
        `columns` already built or `pending` (built from their codes when read)."""
        # One conversion per dtype, shaped [inputs, N, 1] once: each feature's column is then a
        # contiguous [N, 1] view of it (a reshape per feature costs more than the conversion).
        # `numeric` holds the values the model is given (FP32 ones rounded to float32, so that
        # reasons and drift see them too), so each cast is exact.
        as_model = {
            dtype: (numeric if len(indices) == len(numeric) else numeric[indices])
            .astype(dtype)
            .reshape(-1, rows, 1)
            for dtype, indices in self._by_dtype
        }
        for name, (dtype, position) in self._place.items():
            columns[name] = as_model[dtype][position]
        return Batch(
            rows=rows,
            columns=CategoryColumns(columns, self._names, pending)
            if pending
            else {name: columns[name] for name in self._features},
            numeric=np.ascontiguousarray(numeric.T),
            codes=np.ascontiguousarray(codes.T),
        )

    def _categorical_fast(
        self, by_name: dict[str, Tensor], rows: int, codes: npt.NDArray[np.intp]
    ) -> bool:
        """Whether every categorical value is a known category string, each row of `codes` then
        filled with their positions; False (an unknown string, bytes, a number, an unhashable
        list) sends the request down the careful per-input path, which names it. Each value
        maps to its position's bytes, joined and read back as one array: numpy packing the
        positions one Python int at a time (np.fromiter) cost a third of the lookup."""
        datas = [by_name[name].data for name in self.categorical_names]
        if any(not isinstance(d, list) or len(d) != rows for d in datas):
            return False
        try:
            for index, (data, (table, dtype)) in enumerate(
                zip(datas, self._code_bytes, strict=True)
            ):
                codes[index] = np.frombuffer(b"".join(map(table.__getitem__, data)), dtype=dtype)
        except (KeyError, TypeError):  # not a known category string; unhashable
            return False
        return True

    def _numeric_fast(
        self, by_name: dict[str, Tensor], rows: int
    ) -> npt.NDArray[np.float64] | None:
        """All numeric inputs checked at once with a handful of array operations; None when any
        check fails, so the slow path can name the input and row."""
        datas = [by_name[name].data for name in self.numeric_names]
        if not datas:
            return np.empty((0, rows))
        for data in datas:
            if type(data) is list:
                if len(data) != rows:
                    return None
            elif (
                not isinstance(data, np.ndarray)
                or len(data) != rows
                or data.dtype.kind not in "iuf"
            ):
                return None
        try:
            values = number_array(datas)
        except (ValueError, TypeError, OverflowError):
            return None
        if values.shape != (len(datas), rows) or values.dtype.kind not in "iuf":
            return None
        if not np.isfinite(values).all():  # before widening (which keeps finiteness): widening
            return None  # a signalling NaN among raw FP16/FP32 bytes warns
        values = values.astype(np.float64, copy=False)
        if holds_a_boolean(datas, values):
            return None
        if self._any_integral:
            integral = values[self._integral]
            if not (integral == np.floor(integral)).all():
                return None
        if self._fp32_rows.size:  # judged as the model is given them (numeric.representable)
            with np.errstate(over="ignore"):  # beyond float32: infinity, refused just below
                if self._fp32_rows.size == len(values):
                    values = values.astype(np.float32).astype(np.float64)
                else:
                    values[self._fp32_rows] = values[self._fp32_rows].astype(np.float32)
        if ((values < self._low) | (values > self._high)).any():
            return None
        return values

    def _rows(self, by_name: dict[str, Tensor]) -> int:
        rows: int | None = None
        first = ""
        for name, feature in self._features.items():
            tensor = by_name[name]
            if tensor.datatype != feature.datatype:
                raise RequestError(
                    "wrong_datatype",
                    f"input {name!r}: datatype {tensor.datatype!r}, but this input is"
                    f" {feature.datatype}",
                )
            shape = tensor.shape
            if not isinstance(shape, list | tuple):
                raise RequestError("wrong_shape", f"input {name!r}: 'shape' must be a list")
            if not (
                (len(shape) == 1 or (len(shape) == 2 and type(shape[1]) is int and shape[1] == 1))
                and type(shape[0]) is int  # JSON true is no 1, 1.0 no dimension
                and shape[0] >= 0
            ):
                dims = ", ".join(map(shown, shape))  # JSON integers have no length limit
                raise RequestError(
                    "wrong_shape", f"input {name!r}: shape [{dims}]; expected [N] or [N, 1]"
                )
            if type(tensor.data) is not list and not isinstance(tensor.data, np.ndarray):
                raise RequestError(
                    "wrong_datatype",
                    f"input {name!r}: data must be a JSON array of"
                    f" {'strings' if feature.kind == 'categorical' else 'numbers'} (V2 tensor"
                    f" data), got {_json_value(tensor.data)}",
                )
            if rows is None:
                rows, first = shape[0], name
            elif shape[0] != rows:
                raise RequestError(
                    "length_mismatch",
                    f"input {name!r}: {shown(shape[0])} rows, but input {first!r} has"
                    f" {shown(rows)}",
                )
        assert rows is not None
        if rows == 0:
            raise RequestError("empty_batch", f"input {first!r}: empty batch (0 rows)")
        if rows > self.max_rows:
            raise RequestError(
                "batch_too_large",
                f"input {first!r}: {shown(rows)} rows exceed the limit of {self.max_rows} per"
                " request",
            )
        return rows

    def _categorical(
        self, feature: Feature, data: list[Any] | npt.NDArray[Any], codes: npt.NDArray[np.intp]
    ) -> Column:
        """One categorical input's flat values (numeric.flat) as a column, or the first value
        that is no known category string refused by row."""
        name = feature.name
        raw = data.tolist() if isinstance(data, np.ndarray) else data
        rows = len(raw)
        index_of = self._categories[name]
        column = np.empty((rows, 1), dtype=object)
        values: list[str] = []
        indices: list[int] = []
        for row, item in enumerate(raw):
            value = item
            if isinstance(item, bytes):
                try:
                    value = item.decode()
                except UnicodeDecodeError:
                    raise RequestError(
                        "wrong_datatype", f"input {name!r}: row {row} is not valid UTF-8"
                    ) from None
            if not isinstance(value, str):
                raise RequestError(
                    "wrong_datatype",
                    f"input {name!r}: row {row} is {shown(value)}; values must be strings",
                )
            code = index_of.get(value)
            if code is None:
                raise RequestError(
                    "unknown_category",
                    f"input {name!r}: row {row} is {shown(value)}, not a known category"
                    f" (known: {', '.join(feature.categories or ())})",
                )
            values.append(value)
            indices.append(code)
        codes[:] = indices
        column[:, 0] = values
        return column


def _code_bytes(categories: Sequence[str]) -> tuple[dict[str, bytes], np.dtype[Any]]:
    """(each category's position as unsigned little-endian bytes, their dtype), the narrowest
    width that holds every position."""
    width = next(w for w in (1, 2, 4, 8) if len(categories) <= 256**w)
    table = {c: i.to_bytes(width, "little") for i, c in enumerate(categories)}
    return table, np.dtype(f"<u{width}")


def _json_value(value: Any) -> str:
    """A `data` that is no array, as a refusal names it (an object or a string quoted whole
    could be megabytes)."""
    if type(value) is bool:
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return f"the number {shown(value)}"
    return "a string" if isinstance(value, str) else "an object"
