"""Population Stability Index on frozen reference bins, the credit-risk drift convention:
< 0.1 stable, 0.1-0.25 watch, > 0.25 act. Pure numpy, shared by the predictor's live gauges and
the offline drift job so both report the same number for the same data."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

# Empty bins would make PSI infinite; this floor is the usual practical choice.
EPSILON = 1e-4
WATCH = 0.1
ACT = 0.25
MIN_ROWS = 500
"""Rows a window needs before its PSI is a verdict, live (the predictor's --drift_min_rows) and
offline (the drift job's --min-rows) alike: over ten bins, sampling noise alone gives a PSI of
about 9/rows (0.02 at 500 rows). The chart's drift alerts ask for as many
(prometheusRule.psiMinRows)."""


def bin_indices(edges: Sequence[float], values: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Bin of each value for inner cut points `edges` (len(edges) + 1 bins)."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values), side="right")


def psi(expected: Sequence[float] | npt.ArrayLike, observed_counts: npt.ArrayLike) -> float:
    """PSI of observed bin counts against expected bin fractions; NaN when nothing was observed."""
    expected_arr = np.clip(np.asarray(expected, dtype=np.float64), EPSILON, None)
    counts = np.asarray(observed_counts, dtype=np.float64)
    if expected_arr.shape != counts.shape:
        raise ValueError(f"expected {expected_arr.shape[0]} bins, got {counts.shape[0]}")
    total = counts.sum()
    if total <= 0:
        return float("nan")
    actual = np.clip(counts / total, EPSILON, None)
    return float(np.sum((actual - expected_arr) * np.log(actual / expected_arr)))


def status(value: float) -> str:
    """The convention's verdict for a PSI value."""
    if np.isnan(value):
        return "no-data"
    if value < WATCH:
        return "stable"
    if value <= ACT:
        return "watch"
    return "act"


class FeatureDrift(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    kind: str
    psi: float | None
    status: str


SKIPPED_SHOWN_MAX = 50  # parts named in a summary; skipped_files_total counts them all
SKIPPED_REASON_MAX = 500


class SkippedFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: Annotated[str, Field(max_length=SKIPPED_REASON_MAX)]
    reason: Annotated[str, Field(max_length=SKIPPED_REASON_MAX)]


# What the operator copies into a CreditModel's status and Events is bounded: anyone holding the
# log store's credentials (every predictor pod) can write the report, and a 2 MB message or a
# row count beyond 64 bits (which no JSON encoder of the status takes) reached the API server.
_Count = Annotated[int, Field(ge=0, le=2**53 - 1)]
_Name = Annotated[str, Field(max_length=253)]
TOP_FEATURES_MAX = 20


class DriftSummary(BaseModel):
    """What the drift job publishes (`<log>/<model>/reports/latest.json`) and the operator reads.
    Fields it does not know are ignored: a newer drift image must not blind an older operator."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: _Name
    bundle_version: _Name
    window_start: datetime
    window_end: datetime
    created_at: datetime
    rows: _Count
    files_read: _Count
    skipped_files: Annotated[list[SkippedFile], Field(max_length=SKIPPED_SHOWN_MAX)] = []
    skipped_files_total: _Count = 0
    # Rows in the window logged by another version of the model (a canary's), not judged here.
    other_version_rows: _Count = 0
    # None when the window holds no predictions: no verdict, and no retraining on no evidence.
    score_psi: float | None
    score_status: _Name
    features: list[FeatureDrift] = []
    top_drifting_features: Annotated[list[_Name], Field(max_length=TOP_FEATURES_MAX)] = []
    evidently_drifted_columns: _Count | None = None
    evidently_drift_share: float | None = None
    evidently_sample_rows: _Count | None = None
    report_uri: Annotated[str, Field(max_length=2048)] | None = None
    json_uri: Annotated[str, Field(max_length=2048)] | None = None
    message: Annotated[str, Field(max_length=1024)] = ""
