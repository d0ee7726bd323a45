"""The predictor's Prometheus metric names and labels, which the operator's canary analysis (and the
chart's alerts and dashboard) query: named once here, so that a rename on one side cannot leave
the other asking for a series that no longer exists, which the analysis would read as "no traffic".

Names are the ones registered with prometheus_client: a counter is exposed with `_total`, a
histogram as `_bucket` (with the `le` bound), `_sum` and `_count`; `total` and `bucket` spell those.
Every series carries `model`, `version` and `variant`, and nothing of higher cardinality.
"""

from __future__ import annotations

from typing import Final

# --- labels -------------------------------------------------------------------------------------
MODEL: Final = "model"
VERSION: Final = "version"
VARIANT: Final = "variant"
LABELS: Final = (MODEL, VERSION, VARIANT)
OUTCOME: Final = "outcome"
"""On REQUESTS: SUCCESS or ERROR."""
REASON: Final = "reason"
"""On REQUEST_ERRORS: why a request was refused (a bounded set, the predictor's errors.py)."""
FEATURE: Final = "feature"
"""On FEATURE_PSI: a schema feature name."""
BUCKET_BOUND: Final = "le"
"""Prometheus's histogram bucket label."""

# --- label values -------------------------------------------------------------------------------
SUCCESS: Final = "success"
ERROR: Final = "error"
SHADOW: Final = "shadow"
"""The `variant` of a shadow challenger's series; the canary analysis leaves them out."""

# --- metrics ------------------------------------------------------------------------------------
REQUESTS: Final = "creditmodel_requests"
"""Counter of inference requests by OUTCOME."""
REQUEST_ERRORS: Final = "creditmodel_request_errors"
"""Counter of refused requests by REASON."""
PREDICTIONS: Final = "creditmodel_predictions"
"""Counter of rows scored."""
REQUEST_DURATION: Final = "creditmodel_request_duration_seconds"
"""Histogram of whole-request latency, parse to encode."""
INFERENCE_DURATION: Final = "creditmodel_inference_duration_seconds"
"""Histogram of the model run plus reason codes."""
SCORE: Final = "creditmodel_score"
"""Histogram of scores (points) on fixed buckets shared by every version, so that the canary's
and the stable's bucket rates give their score PSI."""
SCORE_PSI: Final = "creditmodel_score_psi"
"""Gauge: score PSI against the bundle's reference deciles over the sliding window."""
FEATURE_PSI: Final = "creditmodel_feature_psi"
"""Gauge: the same per FEATURE."""
DRIFT_WINDOW_ROWS: Final = "creditmodel_drift_window_rows"
"""Gauge: rows in the PSI window."""
SHADOW_PROBABILITY_DELTA: Final = "creditmodel_shadow_probability_delta"
"""Histogram of |challenger - champion| probability per row."""
SHADOW_DROPPED_ROWS: Final = "creditmodel_shadow_dropped_rows"
"""Counter of rows not shadow-scored (queue full)."""
SHADOW_FAILURES: Final = "creditmodel_shadow_failures"
"""Counter of challenger scoring failures."""
LOG_WRITTEN_ROWS: Final = "creditmodel_prediction_log_written_rows"
"""Counter of scored rows written to the prediction log (label MODEL only)."""
LOG_DROPPED_ROWS: Final = "creditmodel_prediction_log_dropped_rows"
"""Counter of scored rows the prediction log's bounded queue dropped (label MODEL only)."""
LOG_WRITE_ERRORS: Final = "creditmodel_prediction_log_write_errors"
"""Counter of prediction-log parts lost to the store (label MODEL only)."""


def total(counter: str) -> str:
    """The exposed sample name of a counter."""
    return f"{counter}_total"


def bucket(histogram: str) -> str:
    """The exposed bucket sample name of a histogram."""
    return f"{histogram}_bucket"
