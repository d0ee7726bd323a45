"""The synthetic applicant generator: deterministic, realistic ranges, drift that shows in PSI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from creditmodel.core.drift import bin_indices, psi
from creditmodel.training import references, synthetic

pytestmark = pytest.mark.unit


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    pd.testing.assert_frame_equal(synthetic.generate(500, seed=4), synthetic.generate(500, seed=4))
    assert not synthetic.generate(500, seed=4).equals(synthetic.generate(500, seed=5))


def test_values_are_plausible() -> None:
    frame = synthetic.generate(50_000, seed=0)
    assert frame["age"].between(18, 80).all()
    assert (frame["employment_years"] <= frame["age"] - 18).all()
    assert 0.08 < frame[synthetic.TARGET].mean() < 0.2
    assert set(frame[synthetic.TARGET].unique()) == {0, 1}


def test_drift_moves_the_population_and_the_default_rate() -> None:
    base = synthetic.generate(50_000, seed=0)
    drifted = synthetic.generate(50_000, seed=1, drift=1.0)
    bins = references.decile_bins(base["annual_income"].to_numpy(float))
    counts = np.bincount(
        bin_indices(bins.edges, drifted["annual_income"].to_numpy(float)),
        minlength=len(bins.fractions),
    )
    assert psi(bins.fractions, counts) > 0.25
    same = synthetic.generate(50_000, seed=2)
    counts = np.bincount(
        bin_indices(bins.edges, same["annual_income"].to_numpy(float)),
        minlength=len(bins.fractions),
    )
    assert psi(bins.fractions, counts) < 0.01
    assert drifted[synthetic.TARGET].mean() > 2 * base[synthetic.TARGET].mean()


@pytest.mark.parametrize(("n", "drift"), [(0, 0.0), (10, 1.5), (10, -0.1)])
def test_rejects_bad_arguments(n: int, drift: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        synthetic.generate(n, drift=drift)
