"""reference.json statistics agree with the shared PSI binning rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from creditmodel.core.drift import bin_indices, psi
from creditmodel.core.schema import Feature, Schema
from creditmodel.training import references

pytestmark = pytest.mark.unit


def test_decile_bins_hold_a_tenth_each_on_continuous_data() -> None:
    values = np.random.default_rng(0).normal(size=10_000)
    bins = references.decile_bins(values)
    assert len(bins.edges) == 9
    assert np.allclose(bins.fractions, 0.1, atol=1e-3)
    # the training data itself has PSI ~0 against its own reference
    counts = np.bincount(bin_indices(bins.edges, values), minlength=10)
    assert psi(bins.fractions, counts) < 1e-6


def test_discrete_values_merge_duplicate_edges() -> None:
    values = np.array([1] * 50 + [2] * 30 + [3] * 20, dtype=float)
    bins = references.decile_bins(values)
    assert bins.edges == [1.0, 2.0, 3.0]
    assert bins.fractions == [0.0, 0.5, 0.3, 0.2]


def test_build_gives_medians_modes_and_frequencies() -> None:
    schema = Schema(
        features=[
            Feature(name="x", kind="numeric", datatype="FP32", description="x", reason_code="R01"),
            Feature(
                name="c",
                kind="categorical",
                datatype="BYTES",
                description="c",
                reason_code="R02",
                categories=["a", "b", "z"],
            ),
        ],
        target="y",
        positive_label="1",
    )
    inputs = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 100.0], "c": ["b", "a", "b", "b", "a"]})
    probability = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    reference = references.build(schema, inputs, probability, np.array([640, 620, 600, 590, 580]))
    assert reference.features["x"].baseline == 3.0
    categorical = reference.features["c"]
    assert categorical.baseline == "b"
    assert categorical.frequencies == {"a": 0.4, "b": 0.6, "z": 0.0}
    assert reference.probability.edges[0] == pytest.approx(0.2)
