"""Population Stability Index on frozen reference bins, the credit-risk drift convention:
< 0.1 stable, 0.1-0.25 watch, > 0.25 act. Pure numpy, shared by the predictor's live gauges and
the offline drift job so both report the same number for the same data."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

# Empty bins would make PSI infinite; this floor is the usual practical choice.
EPSILON = 1e-4
WATCH = 0.1
ACT = 0.25


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


class SkippedFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    reason: str


class DriftSummary(BaseModel):
    """What the drift job publishes (`<log>/<model>/reports/latest.json`) and the operator reads.
    Fields it does not know are ignored: a newer drift image must not blind an older operator."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str
    bundle_version: str
    window_start: datetime
    window_end: datetime
    created_at: datetime
    rows: int
    files_read: int
    skipped_files: list[SkippedFile] = []
    # Rows in the window logged by another version of the model (a canary's), not judged here.
    other_version_rows: int = 0
    # None when the window holds no predictions: no verdict, and no retraining on no evidence.
    score_psi: float | None
    score_status: str
    features: list[FeatureDrift] = []
    top_drifting_features: list[str] = []
    evidently_drifted_columns: int | None = None
    evidently_drift_share: float | None = None
    evidently_sample_rows: int | None = None
    report_uri: str | None = None
    json_uri: str | None = None
    message: str = ""
