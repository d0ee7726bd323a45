"""Calibration, fairness and points maths on hand-checked numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from creditmodel.training import evaluation
from creditmodel.training.config import Scoring

pytestmark = pytest.mark.unit


def test_points_follow_the_base_odds_and_doubling_convention() -> None:
    scoring = Scoring(base_score=600, base_odds=50, points_to_double_odds=20)
    # p = 1/51 is 50:1 good:bad -> 600; 100:1 -> 620; 25:1 -> 580
    scores = evaluation.points(np.array([1 / 51, 1 / 101, 1 / 26]), scoring)
    assert scores.tolist() == [600, 620, 580]
    assert scores.dtype == np.int32
    assert np.isfinite(evaluation.points(np.array([0.0, 1.0]), scoring)).all()


def test_a_scaling_the_predictor_could_not_serve_is_refused_before_training() -> None:
    """The predictor's score output is INT32: a bundle trained with base_score 3e9 was published,
    then refused by every predictor (exit 2), and its canary never became Ready."""
    with pytest.raises(ValidationError, match="the score output is INT32"):
        Scoring(base_score=3e9, base_odds=50, points_to_double_odds=20)
    with pytest.raises(ValidationError, match="the score output is INT32"):
        Scoring(base_score=600, base_odds=50, points_to_double_odds=1e9)


def test_brier_and_reliability_table() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    probability = np.array([0.05, 0.15, 0.12, 0.95, 0.91])
    assert evaluation.brier(labels, probability) == pytest.approx(
        np.mean((probability - labels) ** 2)
    )
    table = evaluation.reliability(labels, probability)
    assert [(r.lower, r.rows) for r in table] == [(0.0, 1), (0.1, 2), (0.9, 2)]
    assert table[1].observed_rate == 0.5
    assert table[1].mean_predicted == pytest.approx(0.135)
    assert evaluation.expected_calibration_error(table) == pytest.approx(
        (1 * 0.05 + 2 * abs(0.135 - 0.5) + 2 * abs(0.93 - 1.0)) / 5
    )


def test_approval_ratio_is_lowest_over_highest_among_groups_big_enough() -> None:
    groups = pd.Series(["a"] * 10 + ["b"] * 10 + ["tiny"] * 2, name="sex")
    probability = np.array([0.1] * 8 + [0.9] * 2 + [0.1] * 5 + [0.9] * 5 + [0.9] * 2)
    labels = np.zeros(22, dtype=np.int8)
    check = evaluation.fairness(groups, labels, probability, cutoff=0.5, min_group=5)
    assert check.approval_ratio == pytest.approx(0.5 / 0.8)
    assert check.gated_groups == ("a", "b")
    assert [g.approval_rate for g in check.groups] == [0.8, 0.5, 0.0]


def test_audited_columns_find_age_bands_and_sensitive_attributes() -> None:
    frame = pd.DataFrame(
        {
            "age": [19, 30, 70],
            "gender": ["f", "m", "f"],
            "income": [1.0, 2.0, 3.0],
            "nation": ["x", "y", "z"],
        }
    )
    audited = evaluation.audited_columns(frame, audit_only=["nation"])
    assert list(audited) == ["age (band)", "gender", "nation"]
    assert audited["age (band)"].tolist() == ["18-24", "25-34", "65+"]


def test_a_blank_in_an_audited_column_is_its_own_group() -> None:
    """A blank audit-only age fell through every band into "<18", and blank text became "nan"."""
    frame = pd.DataFrame({"age": [30.0, np.nan], "nation": ["x", None]})
    audited = evaluation.audited_columns(frame, audit_only=["nation"])
    assert audited["age (band)"].tolist() == ["25-34", evaluation.MISSING_GROUP]
    assert audited["nation"].tolist() == ["x", evaluation.MISSING_GROUP]


@pytest.mark.parametrize(("name", "ages", "refused"), [
    ("age", [30, 131], True), ("Applicant_Age", [20.0, 400.0], True),
    ("age", [18, 130], False), ("account_age", [30, 900], False),
])  # fmt: skip
def test_an_age_beyond_any_lifetime_is_named(name: str, ages: list[float], refused: bool) -> None:
    problem = evaluation.implausible_age(name, pd.Series(ages))
    assert (problem is not None) == refused
    if problem:
        assert problem.startswith(f"column {name!r}: row 2 has {ages[1]:g}, not an age in years")
