"""Reading a CSV keeps a category's text as written: the bundle's categories are what a client
sends back, the data's own spelling."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas._libs.parsers import STR_NA_VALUES

from creditmodel.training import data, features, pipeline, synthetic
from creditmodel.training.config import FeatureSpec, TrainingConfig
from tests.training.conftest import quick_config

# Text pandas would read as a number or a boolean: zero-padded codes, trailing zeros, exponents,
# signs, and every spelling of true and false it knows.
_NUMBER_LIKE = st.from_regex(r"[+-]?0*[0-9]{1,4}(\.[0-9]{0,3}0*)?(e[+-]?[0-9])?", fullmatch=True)
_WORDS = st.sampled_from(["true", "True", "TRUE", "false", "False", "FALSE"])
_VALUES = (_NUMBER_LIKE | _WORDS).filter(lambda v: v not in STR_NA_VALUES)


def _csv(columns: dict[str, list[str]]) -> bytes:
    frame = pd.DataFrame(columns)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


@pytest.mark.unit
@settings(max_examples=60, deadline=None)
@given(st.lists(_VALUES, min_size=2, max_size=12))
def test_a_declared_categorical_column_keeps_its_text(values: list[str]) -> None:
    raw = _csv(
        {"code": values, "y": ["good", "bad"] * (len(values) // 2) + ["good"] * (len(values) % 2)}
    )
    frame = data.parse("x.csv", raw, categorical=["code"], target="y")
    assert list(frame["code"]) == values
    config = TrainingConfig.model_validate(
        {
            "target": "y",
            "positive_label": "bad",
            "model_name": "m",
            "features": [FeatureSpec(name="code", kind="categorical")],
        }
    )
    (code,) = features.prepare(frame, config).schema.features
    assert code.categories == sorted(set(values))


@pytest.mark.unit
@settings(max_examples=40, deadline=None)
@given(st.lists(_WORDS, min_size=1, max_size=12))
def test_true_and_false_words_keep_their_spelling(words: list[str]) -> None:
    """Undeclared: pandas made them booleans, published as the categories 'True' and 'False'."""
    raw = _csv({"flag": words, "y": (["true", "false"] * len(words))[: len(words)]})
    frame = data.parse("x.csv", raw, target="y")
    assert list(frame["flag"]) == words


@pytest.mark.unit
def test_the_target_keeps_pandas_reading() -> None:
    frame = data.parse("x.csv", b"f,y\ntrue,true\nfalse,false\n", target="y")
    assert (list(frame["f"]), list(frame["y"])) == (["true", "false"], [True, False])


@pytest.mark.integration
def test_training_from_a_file_publishes_the_written_codes(tmp_path: Path) -> None:
    """End to end through pipeline.train: the declared column is read as text from the file."""
    frame = synthetic.generate(400, seed=11)
    frame["branch"] = [f"{i % 3:03d}" for i in range(len(frame))]
    csv = tmp_path / "applicants.csv"
    frame.to_csv(csv, index=False)
    config = quick_config(
        None, data=str(csv), features=[FeatureSpec(name="branch", kind="categorical")]
    )
    result = pipeline.train(config.model_copy(update={"enforce_gates": False}))
    branch = next(f for f in result.schema.features if f.name == "branch")
    assert branch.categories == ["000", "001", "002"]


@pytest.mark.unit
@pytest.mark.parametrize("uri", ["file://otherhost/tmp/applicants.csv", "file://nas/data.csv"])
def test_a_file_uri_naming_another_host_is_refused(uri: str) -> None:
    """It was read as the local path, whatever the host named."""
    from creditmodel.training.errors import BadInputError

    with pytest.raises(BadInputError, match="a file URI names no other host"):
        data.read_bytes(uri)


@pytest.mark.unit
def test_an_output_with_an_unknown_scheme_is_bad_input_like_the_data(tmp_path: Path) -> None:
    """It exited 4, a storage error, where the same mistake in --data exits 2."""
    from creditmodel.core.jobs import ExitCode
    from creditmodel.training import cli

    csv = tmp_path / "applicants.csv"
    synthetic.generate(200, seed=2).to_csv(csv, index=False)
    argv = [
        "--data", str(csv), "--target", synthetic.TARGET,
        "--positive-label", str(synthetic.POSITIVE_LABEL), "--model-name", "demo",
        "--output", "gs://bucket/models",
    ]  # fmt: skip
    assert cli.run(argv) == ExitCode.BAD_INPUT
