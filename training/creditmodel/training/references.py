"""`reference.json`: the frozen training distribution monitoring and explanations compare against."""

from __future__ import annotations

import numpy as np
import pandas as pd

from creditmodel.core.drift import bin_indices
from creditmodel.core.reference import (
    Bins,
    CategoricalReference,
    FeatureReference,
    NumericReference,
    Reference,
)
from creditmodel.core.schema import Schema

DECILES = np.linspace(0.1, 0.9, 9)


def decile_bins(values: np.ndarray) -> Bins:
    """Decile cut points (duplicates merged, so discrete features get fewer bins) and the share
    of `values` in each bin under the `searchsorted(edges, v, side="right")` rule."""
    values = np.asarray(values, dtype=np.float64)
    # "higher": every edge is an observed value, so a discrete feature (1-4 bands, counts) gets
    # one bin per value instead of empty bins between interpolated cut points.
    edges = np.unique(np.quantile(values, DECILES, method="higher"))
    counts = np.bincount(bin_indices(edges.tolist(), values), minlength=len(edges) + 1)
    # Rounded so the file reads well; the sum stays within the contract's 1e-6 of 1.
    fractions = np.round(counts / counts.sum(), 12)
    return Bins(edges=[float(e) for e in edges], fractions=[float(f) for f in fractions])


def build(
    schema: Schema, inputs: pd.DataFrame, probability: np.ndarray, score: np.ndarray
) -> Reference:
    features: dict[str, FeatureReference] = {}
    for feature in schema.features:
        column = inputs[feature.name]
        if feature.kind == "numeric":
            values = column.to_numpy(dtype=np.float64)
            features[feature.name] = NumericReference(
                bins=decile_bins(values), baseline=float(np.median(values))
            )
        else:
            counts = column.astype(str).value_counts()
            total = int(counts.sum())
            frequencies = {
                c: round(int(counts.get(c, 0)) / total, 12) for c in feature.categories or []
            }
            # The most common category is the baseline (ties: the first in schema order).
            baseline = max(
                feature.categories or [],
                key=lambda c: (counts.get(c, 0), -(feature.categories or []).index(c)),
            )
            features[feature.name] = CategoricalReference(
                frequencies=frequencies, baseline=baseline
            )
    return Reference(
        features=features,
        score=decile_bins(score.astype(np.float64)),
        probability=decile_bins(probability.astype(np.float64)),
    )
