from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from creditmodel.core import drift

pytestmark = pytest.mark.unit


def test_identical_distribution_has_zero_psi() -> None:
    assert drift.psi([0.25, 0.25, 0.5], [25, 25, 50]) == pytest.approx(0.0)


def test_psi_matches_hand_computation() -> None:
    expected, counts = [0.5, 0.5], [80, 20]
    by_hand = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert drift.psi(expected, counts) == pytest.approx(by_hand)


def test_empty_bins_are_floored_not_infinite() -> None:
    value = drift.psi([0.5, 0.5], [100, 0])
    assert math.isfinite(value)
    assert value > drift.ACT


def test_no_observations_is_not_a_number() -> None:
    assert math.isnan(drift.psi([0.5, 0.5], [0, 0]))
    assert drift.status(float("nan")) == "no-data"


def test_bin_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected 2 bins, got 3"):
        drift.psi([0.5, 0.5], [1, 2, 3])


def test_bins_follow_the_right_closed_edges() -> None:
    assert drift.bin_indices([1.0, 2.0], np.array([0.5, 1.0, 1.5, 2.0, 9.0])).tolist() == [
        0,
        1,
        1,
        2,
        2,
    ]


@pytest.mark.parametrize(
    ("value", "verdict"), [(0.05, "stable"), (0.1, "watch"), (0.25, "watch"), (0.3, "act")]
)
def test_credit_convention_thresholds(value: float, verdict: str) -> None:
    assert drift.status(value) == verdict


_REPORT = {
    "model": "german",
    "bundle_version": "v1",
    "window_start": "2026-01-01T00:00:00Z",
    "window_end": "2026-01-02T00:00:00Z",
    "created_at": "2026-01-02T00:00:01Z",
    "rows": 10,
    "files_read": 1,
    "score_psi": 0.05,
    "score_status": "stable",
}


def test_summary_from_a_newer_drift_job_is_still_read() -> None:
    """A field added by a newer creditmodel-drift image must not make the report unreadable."""
    written = {
        **_REPORT,
        "features": [{"name": "age", "kind": "numeric", "psi": 0.01, "status": "stable", "x": 1}],
        "a_field_from_the_future": {"nested": True},
    }
    summary = drift.DriftSummary.model_validate(written)
    assert (summary.score_psi, summary.features[0].name) == (0.05, "age")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rows", 2**70),  # no JSON encoder of the CreditModel's status takes it
        ("rows", -1),
        ("other_version_rows", 2**64),
        ("message", "x" * 2_000_000),  # copied into status and an Event
        ("top_drifting_features", [f"f{i}" for i in range(100)]),
        ("top_drifting_features", ["f" * 100_000]),
        ("bundle_version", "v" * 1_000),
    ],
)
def test_a_planted_report_beyond_any_drift_jobs_output_is_not_a_summary(
    field: str, value: object
) -> None:
    """Anyone holding the log store's credentials can write latest.json; the operator copies it
    into status. What no drift job writes is refused, and reported unreadable."""
    with pytest.raises(ValidationError):
        drift.DriftSummary.model_validate({**_REPORT, field: value})
    assert drift.DriftSummary.model_validate(_REPORT).rows == 10
