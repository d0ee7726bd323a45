"""Bad input through the library API: a BadInputError naming the column or file and the problem,
raised before any training, with nothing published."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from creditmodel.training import pipeline, synthetic
from creditmodel.training.errors import BadInputError
from tests.training.conftest import quick_config

pytestmark = pytest.mark.unit


def _frame(rows: int = 200) -> pd.DataFrame:
    return synthetic.generate(rows, seed=3)


def _expect(tmp_path: Path, frame: pd.DataFrame | None, match: str, **overrides: object) -> None:
    output = tmp_path / "bundle"
    with pytest.raises(BadInputError, match=match):
        pipeline.train(quick_config(output, **overrides), frame)
    assert not output.exists() or not any(output.iterdir()), "something was published"


def test_missing_target_column(tmp_path: Path) -> None:
    _expect(
        tmp_path,
        _frame().drop(columns="default"),
        r"target column 'default' not found; the data has columns 'age', ",
    )


def test_target_with_one_class(tmp_path: Path) -> None:
    _expect(
        tmp_path, _frame().assign(default=0), r"target column 'default' has a single class \('0'\)"
    )


def test_positive_label_absent(tmp_path: Path) -> None:
    _expect(
        tmp_path,
        _frame(),
        r"positive label 'yes' does not occur in target column 'default'",
        positive_label="yes",
    )


def test_header_only_data(tmp_path: Path) -> None:
    _expect(tmp_path, _frame().iloc[:0], r"header but no rows")


def test_non_numeric_text_in_a_numeric_column(tmp_path: Path) -> None:
    frame = _frame().astype({"annual_income": object})
    frame.loc[41, "annual_income"] = "forty thousand"
    _expect(
        tmp_path,
        frame,
        r"column 'annual_income' is numeric but row 42 has the non-numeric value 'forty thousand'",
    )


def test_missing_values(tmp_path: Path) -> None:
    frame = _frame()
    frame.loc[[5, 9], "age"] = None
    _expect(tmp_path, frame, r"column 'age': 2 missing value\(s\), first at row 6")


def test_value_outside_a_declared_range(tmp_path: Path) -> None:
    frame = _frame()
    frame.loc[7, "age"] = 7
    _expect(
        tmp_path,
        frame,
        r"column 'age': row 8 has 7, outside the declared minimum 18",
        features=[{"name": "age", "minimum": 18}],
    )


def test_identifier_like_categorical_column(tmp_path: Path) -> None:
    frame = _frame().assign(applicant_id=[f"A{i:05d}" for i in range(200)])
    _expect(tmp_path, frame, r"column 'applicant_id': 200 distinct values")


def test_too_few_rows_for_cross_validation(tmp_path: Path) -> None:
    frame = _frame(40)
    frame["default"] = [1] * 4 + [0] * 36
    _expect(
        tmp_path,
        frame,
        r"too few rows for 3-fold cross-validation: 40 rows, the minority class has 4; need at least 6",
    )


def test_unknown_audit_column(tmp_path: Path) -> None:
    _expect(tmp_path, _frame(), r"audit_only names column\(s\) \['sex'\]", audit_only=["sex"])


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.csv", b"", r"data file .*empty\.csv: is empty"),
        ("blank.csv", b"\n\n  \n", r"data file .*blank\.csv: is empty"),
        ("binary.csv", b"\xff\xfe\x00\x81garbage\x00", r"data file .*binary\.csv: not UTF-8 text"),
        (
            "broken.parquet",
            b"PAR1 this is not parquet",
            r"data file .*broken\.parquet: not a readable Parquet file",
        ),
        ("ragged.csv", b'a,b\n1,2\n3,"4\n', r"data file .*ragged\.csv: not a readable CSV file"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    _expect(tmp_path, None, match, data=str(path))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _expect(
        tmp_path, None, r"data file .*nope\.csv: does not exist", data=str(tmp_path / "nope.csv")
    )
    (tmp_path / "dir.csv").mkdir()
    _expect(tmp_path, None, r"data file .*dir\.csv: is a directory", data=str(tmp_path / "dir.csv"))


def test_invalid_reason_code_in_the_feature_spec(tmp_path: Path) -> None:
    _expect(
        tmp_path,
        _frame(),
        r"feature 'age': reason_code: String should match pattern",
        features=[{"name": "age", "reason_code": "not a code"}],
    )


def test_duplicate_reason_codes_in_the_feature_spec(tmp_path: Path) -> None:
    _expect(
        tmp_path,
        _frame(),
        r"reason code 'R09' is pinned for both 'age' and 'housing'",
        features=[{"name": "age", "reason_code": "R09"}, {"name": "housing", "reason_code": "R09"}],
    )


def _with_duplicate(frame: pd.DataFrame) -> pd.DataFrame:
    """duration_months as column 3 and again as column 7."""
    columns = ["age", "annual_income", "duration_months", "loan_amount", "housing", "purpose"]
    duplicated = frame[columns].copy()
    duplicated.insert(6, "duration_months", frame["duration_months"], allow_duplicates=True)
    duplicated["default"] = frame["default"]
    return duplicated


def test_duplicate_column_in_a_csv_header(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    _with_duplicate(_frame()).to_csv(path, index=False)
    _expect(
        tmp_path,
        None,
        r"data file .*dup\.csv: duplicate column 'duration_months' \(columns 3 and 7\)$",
        data=str(path),
    )


def test_duplicate_columns_named_in_one_message(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("a,b, a,c,b,a,default\n1,2,3,4,5,6,1\n")
    _expect(
        tmp_path,
        None,
        r"duplicate column 'a' \(columns 1, 3 and 6\); duplicate column 'b' \(columns 2 and 5\)$",
        data=str(path),
    )


def test_duplicate_column_in_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "dup.parquet"
    frame = _with_duplicate(_frame()).astype({"housing": str, "purpose": str})
    table = pa.Table.from_arrays(
        [pa.array(frame.iloc[:, i]) for i in range(frame.shape[1])], names=list(frame.columns)
    )
    pq.write_table(table, path)
    _expect(
        tmp_path,
        None,
        r"data file .*dup\.parquet: duplicate column 'duration_months' \(columns 3 and 7\)$",
        data=str(path),
    )


def test_duplicate_column_in_a_dataframe(tmp_path: Path) -> None:
    _expect(
        tmp_path,
        _with_duplicate(_frame()),
        r"^duplicate column 'duration_months' \(columns 3 and 7\)$",
    )


def test_overlong_category_value(tmp_path: Path) -> None:
    frame = _frame().astype({"purpose": object})
    frame.loc[12, "purpose"] = "x" * 1_000_000
    _expect(
        tmp_path,
        frame,
        r"^column 'purpose': row 13 has a value of 1000000 characters \('xxxxxxxx.*…'\); category"
        r" values are limited to 256 characters",
    )


def test_category_value_at_the_limit_is_accepted() -> None:
    from creditmodel.training import features

    frame = _frame().astype({"purpose": object})
    frame.loc[12, "purpose"] = "y" * features.MAX_CATEGORY_LENGTH
    prepared = features.prepare(frame, quick_config(None))
    assert "y" * features.MAX_CATEGORY_LENGTH in (
        prepared.schema.feature("purpose").categories or []
    )


@pytest.mark.parametrize(
    ("target", "positive", "match"),
    [
        ([0.0, 1.0, float("inf")], "1", r"target column 'default': non-finite value at row 3"),
        # both became int64's -2**63: two labels merged into one "negative" class
        ([1.0, 1e19, 1e20], "1.0", r"target column 'default' has 3 classes"),
    ],
)
def test_a_target_int64_cannot_hold_is_refused_not_cast(
    tmp_path: Path, target: list[float], positive: str, match: str
) -> None:
    frame = _frame()
    frame["default"] = (target * len(frame))[: len(frame)]
    _expect(tmp_path, frame, match, positive_label=positive)


@pytest.mark.parametrize("value", [1e308, 3.5e38, -1e308])
def test_a_numeric_value_beyond_float32_is_refused(tmp_path: Path, value: float) -> None:
    """Finite as float64, infinite as the FP32 the model reads: sklearn failed mid-fit."""
    frame = _frame()
    frame.loc[7, "annual_income"] = value
    _expect(
        tmp_path,
        frame,
        r"column 'annual_income': row 8 has -?[0-9.e+]+, beyond what the model's FP32",
    )


@pytest.mark.parametrize(
    "name", ["probability", "probabilities", "label", "class_axis", "positive_column", "cm_x"]
)
def test_a_feature_named_like_a_graph_tensor_is_refused(tmp_path: Path, name: str) -> None:
    _expect(tmp_path, _frame().rename(columns={"age": name}), r"names inside the model graph")


def test_a_long_list_of_bad_names_is_bounded(tmp_path: Path) -> None:
    frame = _frame().drop(columns="default")
    frame = pd.concat(
        [frame, pd.DataFrame(0, index=frame.index, columns=[f"extra_{i}" for i in range(2_000)])],
        axis=1,
    )
    with pytest.raises(BadInputError) as caught:
        pipeline.train(quick_config(tmp_path / "bundle"), frame)
    assert len(str(caught.value)) < 1_000
    assert str(caught.value).endswith("and 2001 more")


def test_rows_longer_than_the_header_are_refused_not_shifted(tmp_path: Path) -> None:
    """pandas took the first field of rows one longer than the header for an index: every
    column moved under its neighbour's name and the bundle was published."""
    path = tmp_path / "short-header.csv"
    frame = _frame()
    text = frame.to_csv(index=False).splitlines()
    header = text[0].split(",")[1:]  # one name short
    path.write_text("\n".join([",".join(header), *text[1:]]) + "\n")
    _expect(tmp_path, None, r"rows hold more fields than the header names \(11\)", data=str(path))


def test_a_trailing_comma_on_every_row_keeps_the_columns_in_place() -> None:
    from creditmodel.training import data

    frame = data.parse("x.csv", b"a,b,c\n1,2,3,\n4,5,6,\n")
    assert list(frame.columns) == ["a", "b", "c"]
    assert frame.to_numpy().tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"search": {"hidden_units": [16], "alphas": [float("inf")]}}, "alphas"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"output": ""}, "output"),
        ({"features": [{"name": "age", "minimum": float("nan")}]}, "minimum"),
        ({"features": [{"name": "age", "maximum": float("inf")}]}, "maximum"),
        ({"features": [{"name": "age"}, {"name": "age", "reason_code": "R09"}]}, "features"),
    ],
)
def test_settings_that_failed_mid_run_or_were_dropped_are_refused(
    overrides: dict[str, object], field: str
) -> None:
    """Each was accepted: an infinite alpha or a seed outside numpy's range failed mid-search
    with a traceback, "" as output published nothing with exit 0, a NaN bound was published as
    no bound, and a column pinned twice kept only its last entry."""
    from pydantic import ValidationError

    from creditmodel.training.config import TrainingConfig

    base = {"target": "default", "positive_label": "1", "model_name": "demo"}
    with pytest.raises(ValidationError) as caught:
        TrainingConfig.model_validate({**base, **overrides})
    assert field in str(caught.value)


def test_a_nul_byte_in_a_csv_is_refused_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    text = _frame().to_csv(index=False).replace(",rent,", ",re\x00nt,", 1)
    path.write_bytes(text.encode())
    _expect(
        tmp_path, None, r"nul\.csv: a NUL byte at byte \d+; CSV text holds none", data=str(path)
    )


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (pd.date_range("2020-01-01", periods=200, freq="D"), r"datetime64\[ns\] values cannot be"),
        (pd.to_timedelta(range(200), unit="s"), r"timedelta64\[ns\] values cannot be"),
        # a Parquet list column reads back as numpy arrays
        ([[1, 2]] * 200, r"row 1 holds a ndarray, not a number or text"),
    ],
)
def test_values_that_are_no_number_or_text_are_refused(
    tmp_path: Path, values: object, match: str
) -> None:
    """Parquet holds such columns: a date became a numeric feature in nanoseconds, a list the
    category '[1 2]'."""
    frame = _frame()
    frame["opened"] = list(values) if isinstance(values, list) else values
    path = tmp_path / "typed.parquet"
    frame.to_parquet(path)
    _expect(tmp_path, None, rf"column 'opened': {match}", data=str(path))
    if isinstance(values, list):  # the library API hashes an in-memory frame first
        _expect(tmp_path, frame, r"data frame holds lists or other unhashable values")


@pytest.mark.timeout(60)  # without the check, the read waits forever
def test_a_fifo_as_data_is_refused_not_waited_on(tmp_path: Path) -> None:
    """Reading a FIFO waited for a writer that never came: the run hung."""
    import os

    fifo = tmp_path / "applicants.csv"
    os.mkfifo(fifo)
    _expect(tmp_path, None, r"applicants\.csv: is not a regular file", data=str(fifo))


def test_an_age_in_months_is_refused_before_training(tmp_path: Path) -> None:
    """Every applicant fell in "65+", one group, and the fairness gate passed comparing nothing."""
    frame = _frame().assign(age=lambda f: f["age"] * 12)
    _expect(tmp_path, frame, r"column 'age': row 1 has \d+, not an age in years")


def test_text_in_a_numeric_audit_only_column_is_refused_not_blanked(tmp_path: Path) -> None:
    frame = _frame().assign(seniority=lambda f: f["age"].astype(object))
    frame.loc[7, "seniority"] = "forty"
    _expect(
        tmp_path,
        frame,
        r"audit-only column 'seniority' is numeric but row 8 has the non-numeric value 'forty'",
        audit_only=["seniority"],
    )
