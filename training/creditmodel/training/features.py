"""Validate a raw frame and turn it into model inputs plus the bundle's feature schema.

Pure logic: every problem becomes a `BadInputError` naming the column and the first offending row
(1-based data row, as a spreadsheet shows it), before any model is fitted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import ValidationError

from creditmodel.core.errors import first_error
from creditmodel.core.schema import Feature, FeatureKind, Schema
from creditmodel.training import evaluation
from creditmodel.training.config import FeatureSpec, TrainingConfig
from creditmodel.training.errors import BadInputError

MAX_CATEGORIES = 100
# Longer values are free text or an identifier, not a category (and would bloat the schema).
MAX_CATEGORY_LENGTH = 256
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names inside the exported graph: skl2onnx's (export.py names them cm_*, and the quantizer
# derives its own from those) and the ones export.py adds. A feature so named would clash.
_GRAPH_NAMES = frozenset(
    ["label", "probability", "probabilities", "positive_column", "positive_column_start",
     "positive_column_end", "class_axis"]
)  # fmt: skip
_GRAPH_PREFIX = "cm_"


@dataclass(frozen=True)
class PreparedData:
    schema: Schema
    # Model inputs in schema order: numeric as float64 holding float32-exact values (what the ONNX
    # graph receives), categorical as str.
    inputs: pd.DataFrame
    # 1 = positive label (default / bad), 0 otherwise.
    labels: np.ndarray
    # Audit-only columns (never model inputs), as str or float.
    audit: pd.DataFrame
    negative_label: str


def _row(index: int) -> str:
    return f"row {index + 1}"


def duplicate_columns(names: list[str]) -> str | None:
    """`duplicate column 'x' (columns 3 and 7)` for every name that occurs more than once
    (1-based positions, as a spreadsheet shows them), or None."""
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(names, start=1):
        positions.setdefault(name, []).append(position)
    problems = []
    for name, where in positions.items():
        if len(where) > 1:
            listed = ", ".join(map(str, where[:-1])) + f" and {where[-1]}"
            problems.append(f"duplicate column {name!r} (columns {listed})")
    return "; ".join(problems) or None


def _labels(frame: pd.DataFrame, config: TrainingConfig) -> tuple[np.ndarray, str]:
    target = config.target
    if target not in frame.columns:
        raise BadInputError(
            f"target column {target!r} not found; the data has columns"
            f" {_some(list(map(str, frame.columns)))}"
        )
    column = frame[target]
    missing = column.isna().to_numpy()
    if missing.any():
        raise BadInputError(
            f"target column {target!r}: {int(missing.sum())} missing value(s), first at"
            f" {_row(int(np.argmax(missing)))}"
        )
    if pd.api.types.is_float_dtype(column):
        finite = np.isfinite(column.to_numpy(dtype=np.float64))
        if not finite.all():
            raise BadInputError(
                f"target column {target!r}: non-finite value at {_row(int(np.argmin(finite)))}"
            )
        # Whole numbers read as floats (a column with gaps elsewhere) are labels 0 and 1; only
        # where int64 holds them exactly (1e19 and 1e20 both became -2**63, one class).
        if (column == column.round()).all() and (column.abs() <= 2**53).all():
            column = column.astype(np.int64)
    values = column.astype(str)
    classes = sorted(values.unique())
    if len(classes) == 1:
        raise BadInputError(
            f"target column {target!r} has a single class ({classes[0]!r}); training needs both"
            f" positive ({config.positive_label!r}) and negative rows"
        )
    if config.positive_label not in classes:
        raise BadInputError(
            f"positive label {config.positive_label!r} does not occur in target column"
            f" {target!r} (its values are {', '.join(map(repr, classes[:10]))})"
        )
    if len(classes) > 2:
        raise BadInputError(
            f"target column {target!r} has {len(classes)} classes"
            f" ({', '.join(map(repr, classes[:10]))}); a credit model needs exactly two"
        )
    negative = next(c for c in classes if c != config.positive_label)
    return (values == config.positive_label).to_numpy(dtype=np.int8), negative


def _numeric(name: str, column: pd.Series, spec: FeatureSpec | None) -> pd.Series:
    if pd.api.types.is_bool_dtype(column):
        raise BadInputError(f"column {name!r}: booleans cannot be a numeric feature")
    parsed = _as_numbers(f"column {name!r}", column)
    missing = parsed.isna().to_numpy()
    if missing.any():
        raise BadInputError(
            f"column {name!r}: {int(missing.sum())} missing value(s), first at"
            f" {_row(int(np.argmax(missing)))}; impute or drop them before training"
        )
    as_float = parsed.to_numpy(dtype=np.float64)
    infinite = ~np.isfinite(as_float)
    if infinite.any():
        raise BadInputError(
            f"column {name!r}: non-finite value at {_row(int(np.argmax(infinite)))}"
        )
    with np.errstate(over="ignore"):
        single = as_float.astype(np.float32).astype(np.float64)
    beyond = ~np.isfinite(single)  # finite as float64, beyond the model's FP32 input
    if beyond.any():
        first = int(np.argmax(beyond))
        raise BadInputError(
            f"column {name!r}: {_row(first)} has {float(as_float[first])!r}, beyond what the model's"
            " FP32 input holds (about +-3.4e38)"
        )
    if spec is not None:
        for bound, outside in (
            ("minimum", None if spec.minimum is None else single < spec.minimum),
            ("maximum", None if spec.maximum is None else single > spec.maximum),
        ):
            if outside is not None and outside.any():
                first = int(np.argmax(outside))
                raise BadInputError(
                    f"column {name!r}: {_row(first)} has {single[first]:g}, outside the declared"
                    f" {bound} {getattr(spec, bound):g}"
                )
    return pd.Series(single, index=column.index, name=name)


def _looks_numeric(column: pd.Series) -> bool:
    """An object column whose values are mostly numbers is a numeric column with typos in it."""
    present = column.dropna()
    if present.empty:
        return False
    parsed = pd.to_numeric(present, errors="coerce")
    return bool(parsed.notna().mean() >= 0.5)


def _categorical(name: str, column: pd.Series, spec: FeatureSpec | None) -> pd.Series:
    missing = column.isna().to_numpy()
    if missing.any():
        raise BadInputError(
            f"column {name!r}: {int(missing.sum())} missing value(s), first at"
            f" {_row(int(np.argmax(missing)))}; impute or drop them before training"
        )
    values = column.astype(str)
    lengths = values.str.len().to_numpy()
    too_long = lengths > MAX_CATEGORY_LENGTH
    if too_long.any():
        first = int(np.argmax(too_long))
        raise BadInputError(
            f"column {name!r}: {_row(first)} has a value of {int(lengths[first])} characters"
            f" ({values.iloc[first][:20] + '…'!r}); category values are limited to"
            f" {MAX_CATEGORY_LENGTH} characters ({int(too_long.sum())} such value(s)); exclude"
            " the column if it is free text or an identifier"
        )
    if spec is not None and spec.categories is not None:
        unknown = ~values.isin(spec.categories).to_numpy()
        if unknown.any():
            first = int(np.argmax(unknown))
            raise BadInputError(
                f"column {name!r}: {_row(first)} has {values.iloc[first]!r}, not one of the"
                f" declared categories {spec.categories}"
            )
    distinct = values.nunique()
    if distinct > MAX_CATEGORIES:
        raise BadInputError(
            f"column {name!r}: {distinct} distinct values, more than {MAX_CATEGORIES} for a"
            " categorical feature (an identifier?); exclude it or declare it numeric"
        )
    return values


def infer_kind(column: pd.Series) -> FeatureKind:
    if pd.api.types.is_bool_dtype(column):
        return "categorical"
    if pd.api.types.is_numeric_dtype(column) or _looks_numeric(column):
        return "numeric"
    return "categorical"


def describe(name: str) -> str:
    """A readable fallback description from a column name: `credit_amount` -> `Credit amount`."""
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _reason_codes(names: list[str], specs: dict[str, FeatureSpec]) -> dict[str, str]:
    pinned = {n: specs[n].reason_code for n in names if n in specs and specs[n].reason_code}
    owners: dict[str | None, str] = {}
    for name, code in pinned.items():
        if code in owners:
            raise BadInputError(
                f"reason code {code!r} is pinned for both {owners[code]!r} and {name!r}; reason"
                " codes must be unique"
            )
        owners[code] = name
    used = set(pinned.values())
    codes: dict[str, str] = {}
    counter = 1
    for name in names:
        code = pinned.get(name)
        if code is None:
            while f"R{counter:02d}" in used:
                counter += 1
            code = f"R{counter:02d}"
            used.add(code)
        codes[name] = code
    return codes


_PLAIN = (str, int, float, bool, np.integer, np.floating, np.bool_)


def _plain_values(name: str, column: pd.Series) -> None:
    """A feature holds numbers, text or booleans. Parquet can hold more: a date became a
    numeric feature in nanoseconds and a list a category named by its repr."""
    dtype = column.dtype
    if (
        pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
        or pd.api.types.is_complex_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype | pd.IntervalDtype)
    ):
        raise BadInputError(
            f"column {name!r}: {dtype} values cannot be a feature; convert them to numbers or"
            " text, or exclude the column"
        )
    if pd.api.types.is_object_dtype(dtype):
        odd = column.map(lambda v: v is not None and not isinstance(v, _PLAIN)).to_numpy(bool)
        if odd.any():
            first = int(np.argmax(odd))
            raise BadInputError(
                f"column {name!r}: {_row(first)} holds a {type(column.iloc[first]).__name__},"
                " not a number or text; convert it, or exclude the column"
            )


def _feature(
    name: str, column: pd.Series, spec: FeatureSpec | None, code: str
) -> tuple[Feature, pd.Series]:
    _plain_values(name, column)
    kind = (spec.kind if spec else None) or infer_kind(column)
    description = (spec.description if spec else None) or describe(name)
    if kind == "numeric":
        values = _numeric(name, column, spec)
        minimum = spec.minimum if spec and spec.minimum is not None else None
        if minimum is None and float(values.min()) >= 0:
            minimum = 0.0
        feature = Feature(
            name=name,
            kind="numeric",
            datatype="FP32",
            description=description,
            reason_code=code,
            minimum=minimum,
            maximum=spec.maximum if spec else None,
        )
        return feature, values
    values = _categorical(name, column, spec)
    categories = (
        list(spec.categories) if spec and spec.categories else sorted(values.unique().tolist())
    )
    feature = Feature(
        name=name,
        kind="categorical",
        datatype="BYTES",
        description=description,
        reason_code=code,
        categories=categories,
    )
    return feature, values


def _audited(name: str, column: pd.Series) -> pd.Series:
    """An audit-only column as the audit groups it: text with blanks as their own group (they
    were the group 'nan'), or numbers, where text among them is refused, not made a blank."""
    if infer_kind(column) == "categorical":
        return evaluation.as_groups(column)
    return _as_numbers(f"audit-only column {name!r}", column)


def _as_numbers(what: str, column: pd.Series) -> pd.Series:
    """`column` as numbers, blanks as NaN; text among them is refused, never made a blank."""
    parsed = pd.to_numeric(column, errors="coerce")
    bad_text = (parsed.isna() & column.notna()).to_numpy()
    if bad_text.any():
        first = int(np.argmax(bad_text))
        raise BadInputError(
            f"{what} is numeric but {_row(first)} has the non-numeric value"
            f" {column.iloc[first]!r} ({int(bad_text.sum())} such value(s))"
        )
    return parsed


def _some(names: list[str]) -> str:
    """A list of column names as a message quotes it: the first ten (a file may have thousands)."""
    shown = ", ".join(map(repr, names[:10]))
    return shown if len(names) <= 10 else f"{shown} and {len(names) - 10} more"


def prepare(frame: pd.DataFrame, config: TrainingConfig) -> PreparedData:
    """Check `frame` against `config` and build the schema, inputs, labels and audit columns."""
    if frame.shape[1] == 0:
        raise BadInputError("the data has no columns")
    if frame.shape[0] == 0:
        raise BadInputError("the data has a header but no rows")
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    duplicates = duplicate_columns(list(frame.columns))
    if duplicates:
        raise BadInputError(duplicates)
    labels, negative = _labels(frame, config)
    specs = {spec.name: spec for spec in config.features}
    for what, names in (
        ("feature spec", list(specs)),
        ("audit_only", config.audit_only),
        ("exclude", config.exclude),
    ):
        absent = [n for n in names if n not in frame.columns]
        if absent:
            raise BadInputError(f"{what} names column(s) {absent} that the data does not have")
    skipped = {config.target, *config.audit_only, *config.exclude}
    names = [c for c in frame.columns if c not in skipped]
    if not names:
        raise BadInputError(
            "no feature columns left after the target, audit-only and excluded ones"
        )
    invalid = [n for n in names if not _NAME.match(n)]
    if invalid:
        raise BadInputError(
            f"column name(s) {_some(invalid)} are not valid feature names (letters, digits and _"
            " only, not starting with a digit); rename them or exclude them"
        )
    taken = [n for n in names if n in _GRAPH_NAMES or n.startswith(_GRAPH_PREFIX)]
    if taken:
        raise BadInputError(
            f"column name(s) {_some(taken)} are names inside the model graph (the output"
            f" {', '.join(sorted(_GRAPH_NAMES))} and every name starting {_GRAPH_PREFIX!r});"
            " rename them or exclude them"
        )
    codes = _reason_codes(names, specs)
    columns: dict[str, pd.Series] = {}
    features: list[Feature] = []
    for name in names:
        try:
            feature, columns[name] = _feature(name, frame[name], specs.get(name), codes[name])
        except ValidationError as exc:
            raise BadInputError(f"feature {name!r}: {first_error(exc)}") from None
        features.append(feature)
    audit = pd.DataFrame(
        {name: _audited(name, frame[name]) for name in config.audit_only}, index=frame.index
    )
    for name, column in (*columns.items(), *audit.items()):
        problem = evaluation.implausible_age(str(name), column)
        if problem:
            raise BadInputError(problem)
    try:
        schema = Schema(
            features=features, target=config.target, positive_label=config.positive_label
        )
    except ValidationError as exc:
        raise BadInputError(f"feature schema: {first_error(exc)}") from None
    return PreparedData(
        schema=schema,
        inputs=pd.DataFrame(columns, index=frame.index),
        labels=labels,
        audit=audit,
        negative_label=negative,
    )
