"""Every bad-input case of the inference contract, at the validator (transport-independent)."""

from __future__ import annotations

import functools
import json
import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditmodel.core.schema import Feature, Schema
from creditmodel.predictor.codec import decode_request
from creditmodel.predictor.errors import RequestError
from creditmodel.predictor.validation import CategoryColumns, Tensor, Validator

pytestmark = pytest.mark.unit

SCHEMA = Schema(
    features=[
        Feature(name="age", kind="numeric", datatype="INT64", description="Age",
                reason_code="R01", minimum=18, maximum=100),
        Feature(name="income", kind="numeric", datatype="FP32", description="Income",
                reason_code="R02", minimum=0),
        Feature(name="housing", kind="categorical", datatype="BYTES", description="Housing",
                reason_code="R03", categories=["own", "rent"]),
    ],
    target="default",
    positive_label="1",
)  # fmt: skip


LAID_OUT = "data is not laid out as its shape"
FLAT = "expected a flat array of 2 values"


def tensors(n: int = 2, **override: Any) -> list[Tensor]:
    data = {"age": [30, 45][:n] * (n // 2 or 1), "income": [1e4, 2.5e4][:n] * (n // 2 or 1),
            "housing": ["own", "rent"][:n] * (n // 2 or 1)}  # fmt: skip
    types = {"age": "INT64", "income": "FP32", "housing": "BYTES"}
    result = []
    for name in ("age", "income", "housing"):
        spec = {"name": name, "datatype": types[name], "shape": [n], "data": data[name]}
        spec.update(override.get(name, {}))
        if spec is not None:
            result.append(Tensor(spec["name"], spec["datatype"], spec["shape"], spec["data"]))
    return result


def refused(items: list[Tensor], max_rows: int = 100) -> RequestError:
    with pytest.raises(RequestError) as caught:
        Validator(SCHEMA, max_rows).validate(items)
    return caught.value


def test_valid_rows_become_model_columns() -> None:
    batch = Validator(SCHEMA, 100).validate(tensors())
    assert batch.rows == 2
    assert list(batch.columns) == ["age", "income", "housing"]
    assert batch.columns["age"].dtype == np.int64
    assert batch.columns["age"].shape == (2, 1)
    assert batch.columns["income"].dtype == np.float32
    assert batch.columns["housing"].tolist() == [["own"], ["rent"]]
    assert batch.numeric.tolist() == [[30.0, 1e4], [45.0, 2.5e4]]
    assert batch.codes.tolist() == [[0], [1]]


def test_categorical_columns_are_built_when_first_read_as_the_careful_path_builds_them() -> None:
    validator = Validator(SCHEMA, 100)
    batch = validator.validate(tensors(4))  # known strings: the fast path, columns on demand
    as_bytes = {"data": [b"own", b"rent", b"own", b"rent"]}
    careful = validator.validate(tensors(4, housing=as_bytes))  # bytes: the careful path
    assert isinstance(batch.columns, CategoryColumns)
    assert batch.columns.unread == {"housing"}
    assert "housing" in batch.columns
    assert "nope" not in batch.columns
    assert batch.columns.unread == {"housing"}  # asking is not reading
    assert list(batch.columns) == list(careful.columns) == ["age", "income", "housing"]
    assert len(batch.columns) == 3
    for name in careful.columns:
        got, want = batch.columns[name], careful.columns[name]
        assert (got.dtype, got.shape, got.tolist()) == (want.dtype, want.shape, want.tolist())
    assert batch.columns.unread == frozenset()
    assert batch.columns["housing"] is batch.columns["housing"]  # built once
    with pytest.raises(KeyError):
        batch.columns["nope"]


def test_shape_n_by_1_nested_data_and_integral_floats_are_accepted() -> None:
    batch = Validator(SCHEMA, 100).validate(
        tensors(
            age={"shape": [2, 1], "data": [[30.0], [45.0]]},
            housing={"shape": [2, 1], "data": [["own"], ["rent"]]},
        )
    )
    assert batch.columns["age"].reshape(-1).tolist() == [30, 45]
    assert batch.codes.reshape(-1).tolist() == [0, 1]
    nested_array = Validator(SCHEMA, 100).validate(
        tensors(income={"shape": [2, 1], "data": np.array([[1.0], [2.0]])})
    )
    assert nested_array.columns["income"].reshape(-1).tolist() == [1.0, 2.0]


def test_bytes_values_from_binary_transports_are_decoded() -> None:
    batch = Validator(SCHEMA, 100).validate(
        tensors(housing={"data": np.array([b"own", b"rent"], dtype=object)})
    )
    assert batch.columns["housing"].reshape(-1).tolist() == ["own", "rent"]


@pytest.mark.parametrize(
    ("items", "reason", "needle"),
    [
        (tensors()[:2], "missing_input", "'housing'"),
        ([*tensors(), Tensor("colour", "BYTES", [2], ["a", "b"])], "unknown_input", "'colour'"),
        ([*tensors(), tensors()[0]], "invalid_request", "'age': given twice"),
        (tensors(age={"datatype": "FP32"}), "wrong_datatype", "'age': datatype 'FP32'"),
        (tensors(age={"data": ["30", "45"]}), "wrong_datatype", "'age': row 0 is '30'; values of"),
        # the string is quoted, not the number before it (numpy had made the column strings)
        (tensors(age={"data": [30, "forty"]}), "wrong_datatype", "'age': row 1 is 'forty';"),
        (tensors(age={"data": [True, False]}), "wrong_datatype", "'age'"),
        (tensors(income={"data": [2.0, True]}), "wrong_datatype", "'income': row 1 is a boolean"),
        (tensors(income={"shape": [2, 1], "data": [[2.0], [False]]}), "wrong_datatype", "'income'"),
        (tensors(age={"data": [30, True]}), "wrong_datatype", "'age'"),
        (tensors(age={"data": [30.5, 45]}), "wrong_datatype", "'age': row 0 is 30.5, not an integer"),
        (tensors(income={"data": np.array([False, True])}), "wrong_datatype",
         "'income': row 0 is a boolean"),
        (tensors(housing={"data": ["own", 3]}), "wrong_datatype", "'housing': row 1"),
        (tensors(age={"shape": [2, 2]}), "wrong_shape", "'age': shape [2, 2]"),
        (tensors(age={"shape": [1, 2, 1]}), "wrong_shape", "'age'"),
        (tensors(age={"data": [30, 45, 50]}), "wrong_shape", "'age': shape says 2 values, data holds 3"),
        (tensors(age={"data": [[30], [45, 1]]}), "wrong_shape", "'age'"),
        # data is flat, or nested exactly as the shape: nothing deeper, nothing ragged
        (tensors(age={"data": [[30, 45]]}), "wrong_shape", f"'age': {LAID_OUT} [2]: {FLAT}"),
        (tensors(age={"data": [[30], [45]]}), "wrong_shape", f"'age': {LAID_OUT} [2]"),
        (tensors(age={"shape": [2, 1], "data": [[[30]], [[45]]]}), "wrong_shape",
         f"'age': {LAID_OUT} [2, 1]: {FLAT}, or 2 arrays of one value"),
        (tensors(n=1, income={"data": [[[[[[[[[[1.0]]]]]]]]]]}), "wrong_shape",
         f"'income': {LAID_OUT} [1]: expected a flat array of 1 value"),
        (tensors(n=1, income={"shape": [1, 1], "data": [[[1.0]]]}), "wrong_shape", "'income'"),
        (tensors(housing={"data": [["own", "rent"], []]}), "wrong_shape", f"'housing': {LAID_OUT}"),
        (tensors(housing={"shape": [2, 1], "data": [["own"], "rent"]}), "wrong_shape", "'housing'"),
        (tensors(housing={"shape": [2, 1], "data": [["own", "rent"], []]}), "wrong_shape",
         "'housing'"),
        (tensors(income={"shape": [2, 1], "data": np.array([[1.0, 2.0]])}), "wrong_shape",
         f"'income': {LAID_OUT} [2, 1]"),
        # a dimension is an integer: JSON true is no 1, nor is 1.0
        (tensors(age={"shape": [2, True]}), "wrong_shape", "'age': shape [2, True]"),
        (tensors(age={"shape": [2, 1.0]}), "wrong_shape", "'age': shape [2, 1.0]"),
        (tensors(n=1, age={"shape": [1, True]}), "wrong_shape", "'age': shape [1, True]"),
        (tensors(n=1, housing={"shape": [1, 1.0]}), "wrong_shape", "'housing': shape [1, 1.0]"),
        (tensors(housing={"shape": [3], "data": ["own"] * 3}), "length_mismatch", "'housing': 3 rows"),
        (tensors(income={"data": [math.nan, 1.0]}), "non_finite", "'income': row 0 is nan"),
        (tensors(income={"data": [1.0, math.inf]}), "non_finite", "'income': row 1 is inf"),
        (tensors(age={"data": [30, 101]}), "out_of_range", "'age': row 1 is 101, above the maximum 100"),
        (tensors(age={"data": [17, 30]}), "out_of_range", "'age': row 0 is 17, below the minimum 18"),
        (tensors(income={"data": [-1.0, 1.0]}), "out_of_range", "'income': row 0"),
        (tensors(housing={"data": ["own", "castle"]}), "unknown_category", "'housing': row 1 is 'castle'"),
        (tensors(n=0, age={"shape": [0], "data": []}, income={"shape": [0], "data": []},
                 housing={"shape": [0], "data": []}), "empty_batch", "empty batch"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_naming_the_input(
    items: list[Tensor], reason: str, needle: str
) -> None:
    error = refused(items)
    assert error.reason == reason
    assert needle in error.message
    assert error.http_status == 400


@pytest.mark.parametrize("rows", [1, 2])  # the single-row path and the array path
@pytest.mark.parametrize(
    ("name", "body", "got"),
    [
        ("income", "true", "a boolean"),
        ("income", "false", "a boolean"),
        ("age", "48", "the number 48"),
        ("age", "null", "null"),
        ("income", '{"a": [1]}', "an object"),
        ("housing", '"own"', "a string"),
        ("housing", "true", "a boolean"),
    ],
)
def test_data_that_is_no_json_array_is_refused_naming_the_input(
    name: str, body: str, got: str, rows: int
) -> None:
    """`"data": true` was scored as 1.0 and `"data": 48` as one row, while `"data": "own"` was
    refused: V2 tensor data is an array, whatever the input's kind."""
    document = {"inputs": [
        {"name": t.name, "datatype": t.datatype, "shape": [rows],
         "data": "DATA" if t.name == name else t.data}
        for t in tensors(rows)
    ]}  # fmt: skip
    decoded = decode_request(json.dumps(document).replace('"DATA"', body).encode())
    error = refused(decoded.tensors)
    kind = "strings" if name == "housing" else "numbers"
    assert (error.reason, error.message) == (
        "wrong_datatype",
        f"input {name!r}: data must be a JSON array of {kind} (V2 tensor data), got {got}",
    )


def test_batch_over_the_limit_is_refused() -> None:
    error = refused(tensors(n=4), max_rows=3)
    assert error.reason == "batch_too_large"
    assert "4 rows exceed the limit of 3" in error.message


def test_numeric_arrays_from_grpc_take_the_same_checks() -> None:
    error = refused(tensors(income={"data": np.array([1.0, np.nan], dtype=np.float32)}))
    assert error.reason == "non_finite"
    assert "'income': row 1" in error.message


def _one_kind(kind: str, n: int) -> Schema:
    return Schema(
        features=[
            Feature(name=f"f{i}", kind=kind, datatype="FP32" if kind == "numeric" else "BYTES",
                    description=f"F{i}", reason_code=f"R{i:02d}",
                    categories=None if kind == "numeric" else ["a", "b"])
            for i in range(n)
        ],
        target="default",
        positive_label="1",
    )  # fmt: skip


@pytest.mark.parametrize("nested", [False, True], ids=["[N]", "[N,1]"])
@pytest.mark.parametrize("kind", ["numeric", "categorical"])
@pytest.mark.parametrize("n", [1, 3])
def test_a_schema_with_one_kind_of_feature_validates(kind: str, n: int, nested: bool) -> None:
    """A numeric-only bundle answered every request with a 500 (a broadcast of zero categorical
    columns); a categorical-only one must not fail the other way."""
    values = [1.5, 2.5] if kind == "numeric" else ["a", "b"]
    data: list[Any] = [[v] for v in values] if nested else values
    shape = [2, 1] if nested else [2]
    datatype = "FP32" if kind == "numeric" else "BYTES"
    batch = Validator(_one_kind(kind, n), 10).validate(
        [Tensor(f"f{i}", datatype, shape, data) for i in range(n)]
    )
    assert batch.rows == 2
    assert batch.numeric.shape == (2, n if kind == "numeric" else 0)
    assert batch.codes.shape == (2, 0 if kind == "numeric" else n)
    assert batch.columns["f0"].shape == (2, 1)


def test_reason_inputs_are_the_float32_values_the_model_sees() -> None:
    """A JSON number (float64) and the same value sent as binary float32 must give the same
    reason-code inputs, or near-tied reasons swap places between transports."""
    validator = Validator(SCHEMA, 10)
    as_json = validator.validate(tensors(income={"data": [0.1, 12345.678]}))
    as_binary = validator.validate(
        tensors(income={"data": np.array([0.1, 12345.678], dtype=np.float32)})
    )
    np.testing.assert_array_equal(as_json.numeric, as_binary.numeric)
    assert as_json.numeric[0, 1] == float(np.float32(0.1))
    assert as_json.numeric[:, 0].tolist() == [30.0, 45.0]  # INT64 values untouched


UNBOUNDED = Schema(
    features=[
        Feature(name="count", kind="numeric", datatype="INT64", description="Count",
                reason_code="R01"),
        Feature(name="amount", kind="numeric", datatype="FP32", description="Amount",
                reason_code="R02"),
    ],
    target="default",
    positive_label="1",
)  # fmt: skip


@pytest.mark.parametrize("rows", [1, 3])  # the single-row path and the array path
@pytest.mark.parametrize(
    ("count", "amount", "named", "holds"),
    [
        (1, 1e39, "'amount'", "FP32 input holds"),  # float32 would make it infinity
        (1, -3.5e38, "'amount'", "FP32 input holds"),
        (2**60, 1.0, "'count'", "INT64 input holds"),  # beyond what float64 keeps exact
        (2**53 + 1, 1.0, "'count'", "INT64 input holds"),  # float64 reads it as 2**53
        (2**53, 1.0, "'count'", "INT64 input holds"),  # which then stands for two integers
        (-(2**53) - 1, 1.0, "'count'", "INT64 input holds"),
    ],
)
def test_values_the_models_input_cannot_hold_are_refused_not_coerced(
    rows: int, count: int, amount: float, named: str, holds: str
) -> None:
    """A schema without bounds still has the model's: float32's range for FP32 inputs (the cast
    would give infinity) and +-(2**53 - 1) for INT64 ones (the float64 path would round them:
    2**53 + 1 was served as 2**53)."""
    items = [
        Tensor("count", "INT64", [rows], [count] * rows),
        Tensor("amount", "FP32", [rows], [amount] * rows),
    ]
    with pytest.raises(RequestError) as caught:
        Validator(UNBOUNDED, 100).validate(items)
    assert caught.value.reason == "out_of_range"
    assert caught.value.http_status == 400
    assert named in str(caught.value)
    assert holds in str(caught.value)
    largest = [Tensor("count", "INT64", [rows], [2**53 - 1] * rows),
               Tensor("amount", "FP32", [rows], [3.4e38] * rows)]  # fmt: skip
    batch = Validator(UNBOUNDED, 100).validate(largest)  # the largest that fit are served as sent
    assert batch.numeric[:, 0].tolist() == [float(2**53 - 1)] * rows


_SUSPECTS = [0.0, 1.0, 0, 1, True, False]  # what reads as 0 or 1
_OTHERS = [2.5, 5000.0, 77, 3.25, 42, 8.0, 9, 10.5, 11, 12.0, 13, 14.5, 15, 16.0, 17, 18.5, 19, 20]


@given(
    st.lists(st.sampled_from(_SUSPECTS + _OTHERS[:2]), min_size=2, max_size=60)  # most suspect
    | st.lists(st.sampled_from(_SUSPECTS + _OTHERS), min_size=2, max_size=60)  # a few
)
def test_a_json_boolean_among_numbers_is_refused_wherever_it_hides(income: list[Any]) -> None:
    """numpy reads true as 1.0: the fast path looks only at items that read as 0 or 1, all of
    them when they are many, some when few. Any boolean, among ones or among other numbers, is
    refused by row as the careful path names it; without one the batch validates unchanged."""
    n = len(income)
    items = tensors(n, age={"data": [30] * n}, income={"data": income},
                    housing={"data": ["own"] * n})  # fmt: skip
    booleans = [row for row, value in enumerate(income) if type(value) is bool]
    if booleans:
        with pytest.raises(RequestError) as caught:
            Validator(SCHEMA, 100).validate(items)
        assert caught.value.reason == "wrong_datatype"
        assert f"'income': row {booleans[0]} is a boolean" in caught.value.message
    else:
        batch = Validator(SCHEMA, 100).validate(items)
        assert batch.columns["income"].reshape(-1).tolist() == [float(v) for v in income]


@functools.cache
def _many_categories(count: int) -> Validator:
    categories = [f"c{i}" for i in range(count)]
    schema = Schema(
        features=[Feature(name="kind", kind="categorical", datatype="BYTES", description="Kind",
                          reason_code="R01", categories=categories)],
        target="default", positive_label="1",
    )  # fmt: skip
    return Validator(schema, 100)


@pytest.mark.parametrize("count", [2, 256, 257, 65_536, 65_537])  # each side of a code width
@given(data=st.data())
def test_category_codes_are_positions_whatever_the_number_of_categories(
    count: int, data: st.DataObject
) -> None:
    """The array path reads each value's position as bytes one to eight wide: every category,
    first and last included, gets its own position; anything else (an unknown string, a number, null) at any row is refused
    by row, as the careful path names it."""
    validator = _many_categories(count)
    position = st.sampled_from([0, count - 1]) | st.integers(0, count - 1)
    positions = data.draw(st.lists(position, min_size=2, max_size=20))
    values: list[Any] = [f"c{p}" for p in positions]
    batch = validator.validate([Tensor("kind", "BYTES", [len(values)], values)])
    assert batch.codes[:, 0].tolist() == positions
    assert batch.columns["kind"].reshape(-1).tolist() == values
    row = data.draw(st.integers(0, len(values) - 1))
    values[row] = data.draw(st.sampled_from([f"c{count}", "", "C0", 0, 1.0, None]))
    with pytest.raises(RequestError) as caught:
        validator.validate([Tensor("kind", "BYTES", [len(values)], values)])
    assert caught.value.reason in ("unknown_category", "wrong_datatype")
    assert f"row {row}" in caught.value.message


def _fp32_schema(minimum: float | None, maximum: float | None) -> Schema:
    return Schema(
        features=[Feature(name="amount", kind="numeric", datatype="FP32", description="Amount",
                          reason_code="R01", minimum=minimum, maximum=maximum)],
        target="default", positive_label="1",
    )  # fmt: skip


def _near(bound: float) -> st.SearchStrategy[float]:
    """The bound, its float32 rounding, and their float64 and float32 neighbours."""
    f32 = float(np.float32(bound))
    return st.sampled_from(
        [bound, f32, float(np.nextafter(bound, np.inf)), float(np.nextafter(bound, -np.inf)),
         float(np.nextafter(np.float32(bound), np.float32(np.inf))),
         float(np.nextafter(np.float32(bound), np.float32(-np.inf)))]
    )  # fmt: skip


_BOUNDS = st.floats(-1e30, 1e30, allow_nan=False) | st.sampled_from([0.1, 16777217.0, -0.3])


@given(data=st.data(), minimum=_BOUNDS | st.none(), maximum=_BOUNDS | st.none())
def test_an_fp32_value_gets_one_decision_on_every_transport(
    data: st.DataObject, minimum: float | None, maximum: float | None
) -> None:
    """An FP32 value is judged as the model is given it, rounded to float32, against the bounds
    rounded alike: a JSON number (one row or in a batch), binary float32 and gRPC fp32_contents
    (float32 widened) of the same value are all served as that float32 or all refused. Before,
    0.1 under a maximum of 0.1 was served as JSON and refused as gRPC float32."""
    if minimum is not None and maximum is not None and minimum > maximum:
        minimum, maximum = maximum, minimum
    validator = Validator(_fp32_schema(minimum, maximum), 100)
    near = [_near(b) for b in (minimum, maximum) if b is not None]
    value = data.draw(st.one_of(*near) if near else st.floats(-1e30, 1e30))
    f32 = float(np.float32(value))
    low = -np.inf if minimum is None else float(np.float32(minimum))
    high = np.inf if maximum is None else float(np.float32(maximum))
    served = low <= f32 <= high
    ways: dict[str, tuple[list[int], Any]] = {
        "json, one row": ([1], [value]),
        "json, in a batch": ([2], [value, value]),
        "json, nested rows (the careful path)": ([2, 1], [[value], [value]]),
        "binary float32": ([1], np.array([value], dtype=np.float32)),
        "grpc fp32_contents": ([1], [f32]),
    }
    for way, (shape, values) in ways.items():
        tensor = Tensor("amount", "FP32", shape, values)
        if served:
            batch = validator.validate([tensor])
            assert batch.numeric[:, 0].tolist() == [f32] * shape[0], way
            assert batch.columns["amount"].reshape(-1).tolist() == [f32] * shape[0], way
        else:
            with pytest.raises(RequestError) as caught:
                validator.validate([tensor])
            assert caught.value.reason == "out_of_range", way


@pytest.mark.parametrize("literal", ["3.4028235e+38", "-3.4028235e+38", "3.4028235677973362e+38"])
def test_what_float32_rounds_to_its_largest_value_is_served(literal: str) -> None:
    """float32's maximum as it prints (3.4028235e+38) lies above its exact value, and was
    refused as JSON while served as binary float32; beyond the rounding edge is refused."""
    validator = Validator(UNBOUNDED, 100)
    for rows in (1, 2):
        items = [Tensor("count", "INT64", [rows], [1] * rows),
                 Tensor("amount", "FP32", [rows], [float(literal)] * rows)]  # fmt: skip
        batch = validator.validate(items)
        assert batch.numeric[0, 1] == float(np.float32(float(literal)))
        beyond = [Tensor("count", "INT64", [rows], [1] * rows),
                  Tensor("amount", "FP32", [rows], [float(literal) * 1.0000001] * rows)]  # fmt: skip
        with pytest.raises(RequestError) as caught:
            validator.validate(beyond)
        assert caught.value.reason == "out_of_range"
        assert "3.4028234663852886e+38" in caught.value.message


@pytest.mark.parametrize("amount", [1e19, -1e30, 2**63])
@pytest.mark.parametrize("nested", [False, True])
def test_a_large_fp32_value_beside_an_int64_input_is_served_without_a_warning(
    amount: float, nested: bool
) -> None:
    """Every numeric row was cast to int64 as well as float32, so an FP32 value beyond int64's
    range printed numpy's "invalid value encountered in cast" (a warning is an error here)."""
    data: list[Any] = [[amount], [amount]] if nested else [amount, amount]
    items = [Tensor("count", "INT64", [2, 1] if nested else [2], [[1], [2]] if nested else [1, 2]),
             Tensor("amount", "FP32", [2, 1] if nested else [2], data)]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = Validator(UNBOUNDED, 100).validate(items)
    assert batch.numeric[:, 1].tolist() == [float(np.float32(amount))] * 2


@pytest.mark.parametrize(
    ("data", "reason", "needle"),
    [
        ([math.nan, 10**400], "non_finite", "row 0 is nan"),  # the first problem by row
        ([math.inf, 10**400], "non_finite", "row 0 is inf"),  # not "an integer beyond"
        ([1.5, 10**400], "out_of_range", "row 1 is an integer beyond"),
    ],
)
def test_a_huge_integer_beside_other_problems_is_named_in_row_order(
    data: list[Any], reason: str, needle: str
) -> None:
    items = [Tensor("count", "INT64", [2], [1, 2]), Tensor("amount", "FP32", [2], data)]
    with pytest.raises(RequestError) as caught:
        Validator(UNBOUNDED, 100).validate(items)
    assert (caught.value.reason, needle in caught.value.message) == (reason, True)


def test_a_bound_is_quoted_exactly() -> None:
    """%g printed a maximum of 1000000.5 as 1e+06, so "1000001 is above the maximum 1e+06"."""
    schema = _fp32_schema(None, 1000000.5)
    with pytest.raises(RequestError) as caught:
        Validator(schema, 100).validate([Tensor("amount", "FP32", [2], [1000001, 1.0])])
    assert caught.value.message.endswith("row 0 is 1000001, above the maximum 1000000.5")


@st.composite
def _schema_and_rows(draw: st.DrawFn) -> tuple[Schema, dict[str, list[Any]], list[int]]:
    """A schema of 1-6 features of any kind, request sizes (1-4 rows each), and valid values."""
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=6))
    total = sum(sizes)
    features, values = [], {}
    for i, datatype in enumerate(draw(st.lists(st.sampled_from(["FP32", "INT64", "BYTES"]),
                                               min_size=1, max_size=6))):  # fmt: skip
        name, code = f"f{i}", f"R{i:02d}"
        if datatype == "BYTES":
            levels = draw(st.lists(st.text("abcxyz", min_size=1, max_size=3), min_size=1,
                                   max_size=5, unique=True))  # fmt: skip
            features.append(Feature(name=name, kind="categorical", datatype="BYTES",
                                    description=name, reason_code=code, categories=levels))  # fmt: skip
            value: st.SearchStrategy[Any] = st.sampled_from(levels)
        else:
            features.append(Feature(name=name, kind="numeric", datatype=datatype,
                                    description=name, reason_code=code))  # fmt: skip
            value = (
                st.integers(-(2**53) + 1, 2**53 - 1)
                if datatype == "INT64"
                else st.floats(-1e30, 1e30, allow_nan=False)  # rounded to float32 on the way
            )
        values[name] = draw(st.lists(value, min_size=total, max_size=total))
    schema = Schema(features=features, target="default", positive_label="1")
    return schema, values, sizes


@given(case=_schema_and_rows())
def test_concatenated_batches_hold_what_validating_all_their_rows_gives(
    case: tuple[Schema, dict[str, list[Any]], list[int]],
) -> None:
    """Shadow micro-batches (Validator.concatenate) are built from the batches' numeric and code
    matrices, not their columns: every column, matrix and code must still be what validating all
    the rows as one request gives, bit for bit, for single-row and multi-row batches alike."""
    schema, values, sizes = case
    validator = Validator(schema, 1_000)

    def request(start: int, stop: int) -> list[Tensor]:
        return [Tensor(f.name, f.datatype, [stop - start], values[f.name][start:stop])
                for f in schema.features]  # fmt: skip

    parts, start = [], 0
    for size in sizes:
        parts.append(validator.validate(request(start, start + size)))
        start += size
    merged, whole = validator.concatenate(parts), validator.validate(request(0, start))
    assert merged.rows == whole.rows == start
    for got, want in ((merged.numeric, whole.numeric), (merged.codes, whole.codes)):
        assert (got.dtype, got.shape, got.tobytes()) == (want.dtype, want.shape, want.tobytes())
    assert list(merged.columns) == list(whole.columns)
    for name, want in whole.columns.items():
        got = merged.columns[name]
        assert (got.dtype, got.shape) == (want.dtype, want.shape), name
        if want.dtype == object:
            assert got.tolist() == want.tolist(), name
        else:
            assert got.tobytes() == want.tobytes(), name
