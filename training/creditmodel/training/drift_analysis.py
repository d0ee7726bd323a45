"""Drift of logged predictions against a bundle's frozen reference (pure: arrays in, numbers out).

PSI is computed on the reference's own decile bins (numeric) and category frequencies
(categorical; CSI), the credit-risk convention, rather than on bins fitted to the new data.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from creditmodel.core import drift
from creditmodel.core.drift import FeatureDrift
from creditmodel.core.reference import Bins, CategoricalReference, NumericReference, Reference
from creditmodel.core.schema import Schema

TOP_FEATURES = 5


def bins_psi(bins: Bins, values: npt.ArrayLike) -> float:
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    counts = np.bincount(drift.bin_indices(bins.edges, array), minlength=len(bins.edges) + 1)
    return drift.psi(bins.fractions, counts)


def categories_psi(reference: CategoricalReference, values: npt.ArrayLike) -> float:
    """CSI; categories the reference never saw share one extra bin with expected share zero
    (floored), so a new category shows up as drift instead of vanishing."""
    known = list(reference.frequencies)
    index = {category: i for i, category in enumerate(known)}
    observed = np.asarray(values, dtype=object)
    codes = np.fromiter(
        (index.get(str(v), len(known)) for v in observed), dtype=np.intp, count=observed.size
    )
    counts = np.bincount(codes, minlength=len(known) + 1)
    expected = [reference.frequencies[c] for c in known] + [0.0]
    return drift.psi(expected, counts)


def feature_drift(
    schema: Schema, reference: Reference, columns: Mapping[str, npt.ArrayLike]
) -> list[FeatureDrift]:
    """PSI per schema feature, most drifted first; features absent from `columns` (not logged,
    e.g. dropped as personal data) are reported as such, last."""
    results = []
    for feature in schema.features:
        ref = reference.features[feature.name]
        if feature.name not in columns:
            results.append(
                FeatureDrift(name=feature.name, kind=feature.kind, psi=None, status="not-logged")
            )
            continue
        values = columns[feature.name]
        if isinstance(ref, NumericReference):
            value = bins_psi(ref.bins, values)
        else:
            value = categories_psi(ref, values)
        results.append(
            FeatureDrift(
                name=feature.name,
                kind=feature.kind,
                psi=None if np.isnan(value) else round(value, 6),
                status=drift.status(value),
            )
        )
    return sorted(results, key=lambda f: (f.psi is None, -(f.psi or 0.0), f.name))


def top_drifting(features: list[FeatureDrift], limit: int = TOP_FEATURES) -> list[str]:
    """Names of the features past the 'watch' line, worst first."""
    return [f.name for f in features if f.psi is not None and f.psi >= drift.WATCH][:limit]
