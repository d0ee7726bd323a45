from __future__ import annotations

import numpy as np
import pytest

from creditmodel.core.reference import Bins, CategoricalReference
from creditmodel.training.drift_analysis import (
    bins_psi,
    categories_psi,
    feature_drift,
    top_drifting,
)
from tests.core.bundles import REFERENCE, SCHEMA

pytestmark = pytest.mark.unit


def test_sample_matching_the_reference_bins_is_stable() -> None:
    bins = Bins(edges=[1.0, 2.0], fractions=[0.2, 0.5, 0.3])
    values = np.repeat([0.5, 1.5, 2.5], [20, 50, 30])
    assert bins_psi(bins, values) == pytest.approx(0.0)


def test_non_finite_values_are_ignored() -> None:
    bins = Bins(edges=[1.0], fractions=[0.5, 0.5])
    assert bins_psi(bins, [0.0, 2.0, np.nan, np.inf]) == pytest.approx(0.0)


def test_unseen_category_counts_as_drift() -> None:
    reference = CategoricalReference(frequencies={"own": 0.5, "rent": 0.5}, baseline="own")
    assert categories_psi(reference, ["own", "rent"] * 50) == pytest.approx(0.0)
    assert categories_psi(reference, ["own", "rent", "squat", "squat"] * 25) > 0.25


def test_features_ranked_worst_first_with_unlogged_last() -> None:
    shifted_age = np.full(100, 60)  # every applicant in the top reference bin (expected 30%)
    result = feature_drift(SCHEMA, REFERENCE, {"age": shifted_age})
    assert [(f.name, f.status) for f in result] == [("age", "act"), ("housing", "not-logged")]
    assert result[0].psi is not None
    assert result[0].psi > 0.25
    assert top_drifting(result) == ["age"]


def test_stable_features_are_not_top_drifting() -> None:
    ages = np.repeat([20, 40, 60], [30, 40, 30])
    housing = np.array(["own"] * 70 + ["rent"] * 30, dtype=object)
    result = feature_drift(SCHEMA, REFERENCE, {"age": ages, "housing": housing})
    assert {f.status for f in result} == {"stable"}
    assert top_drifting(result) == []
