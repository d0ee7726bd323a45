"""Canary analysis maths: the PromQL the operator asks, and the verdict from the answers.

Pure: the Prometheus adapter runs the queries and hands the numbers in. Metric names and labels are
the predictor's contract (creditmodel.core.metrics, which the predictor registers). A check with too little data is
"inconclusive", never "passed": no traffic proves nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from creditmodel.core import metrics as names
from creditmodel.core.drift import psi
from creditmodel.operator.model import AnalysisSpec

Verdict = Literal["passed", "failed", "inconclusive"]


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _selector(model: str, version: str, scope: Mapping[str, str], *extra: str) -> str:
    matchers = [
        f'{names.MODEL}="{_quoted(model)}"',
        f'{names.VERSION}="{_quoted(version)}"',
        f'{names.VARIANT}!="{names.SHADOW}"',
        *(f'{label}="{_quoted(value)}"' for label, value in sorted(scope.items())),
        *extra,
    ]
    return "{" + ",".join(matchers) + "}"


@dataclass(frozen=True)
class Queries:
    """The instant queries for one check of `canary` against `stable` over `window_seconds`."""

    requests: str
    successes: str
    p99_latency: str
    canary_scores: str
    stable_scores: str
    stable_score_psi: str

    @classmethod
    def build(
        cls,
        model: str,
        canary: str,
        stable: str,
        window_seconds: int,
        scope: Mapping[str, str] | None = None,
    ) -> Queries:
        """`scope`: extra label matchers, e.g. {"namespace": ns} so that same-named models in
        other namespaces never mix into the analysis."""
        window = f"[{window_seconds}s]"
        scope = scope or {}
        canary_sel = _selector(model, canary, scope)
        stable_sel = _selector(model, stable, scope)
        success_sel = _selector(model, canary, scope, f'{names.OUTCOME}="{names.SUCCESS}"')
        requests, le = names.total(names.REQUESTS), names.BUCKET_BOUND
        latency, score = names.bucket(names.REQUEST_DURATION), names.bucket(names.SCORE)
        return cls(
            requests=f"sum(increase({requests}{canary_sel}{window}))",
            successes=f"sum(increase({requests}{success_sel}{window}))",
            p99_latency=(
                f"histogram_quantile(0.99, sum by ({le}) (rate({latency}{canary_sel}{window})))"
            ),
            canary_scores=f"sum by ({le}) (increase({score}{canary_sel}{window}))",
            stable_scores=f"sum by ({le}) (increase({score}{stable_sel}{window}))",
            stable_score_psi=f"max({names.SCORE_PSI}{stable_sel})",
        )


@dataclass(frozen=True)
class Measurements:
    """What Prometheus answered; None where a query returned no sample."""

    requests: float | None
    successes: float | None
    p99_latency_seconds: float | None
    canary_scores: Mapping[float, float]
    """Cumulative bucket counts by upper bound (`le`, +Inf as math.inf)."""
    stable_scores: Mapping[float, float]


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    value: float | None = None
    """The measured number (None: unknown), under `name` in Result.numbers."""


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    message: str
    checks: tuple[Check, ...] = ()
    requests: float | None = None
    """Canary requests in the window (None: not measured, e.g. Prometheus unavailable)."""

    @property
    def numbers(self) -> dict[str, float]:
        """requests, successRate, p99LatencySeconds, scorePSI: what the rollout history keeps."""
        found = {"requests": self.requests} if self.requests is not None else {}
        return found | {c.name: c.value for c in self.checks if c.value is not None}


def bucket_counts(cumulative: Mapping[float, float]) -> list[float]:
    """Per-bucket counts from Prometheus's cumulative `le` buckets (negative noise clipped)."""
    counts: list[float] = []
    previous = 0.0
    for bound in sorted(cumulative):
        value = cumulative[bound]
        counts.append(max(value - previous, 0.0))
        previous = max(value, previous)
    return counts


def score_psi(canary: Mapping[float, float], stable: Mapping[float, float]) -> float:
    """PSI of the canary's score distribution against the stable's, on the shared fixed buckets.
    NaN when either side has no scored rows or the bucket layouts differ."""
    if set(canary) != set(stable) or not canary:
        return math.nan
    expected = bucket_counts(stable)
    total = sum(expected)
    if total <= 0:
        return math.nan
    return psi([count / total for count in expected], bucket_counts(canary))


def _total(cumulative: Mapping[float, float]) -> float:
    return max(cumulative.values(), default=0.0)


def evaluate(measured: Measurements, thresholds: AnalysisSpec) -> Result:
    """Success rate, p99 latency and canary-vs-stable score PSI against the spec's thresholds."""
    requests = measured.requests or 0.0
    if requests < thresholds.min_requests:
        return Result(
            "inconclusive",
            f"{requests:.0f} canary requests in the last {thresholds.window_seconds}s, need"
            f" {thresholds.min_requests}",
            requests=requests,
        )
    checks = (
        _success_rate(measured, requests, thresholds),
        _latency(measured, thresholds),
        _psi(measured, thresholds),
    )
    failed = [check for check in checks if check.verdict == "failed"]
    unknown = [check for check in checks if check.verdict == "inconclusive"]
    details = "; ".join(check.detail for check in checks)
    if failed:
        return Result("failed", details, checks, requests)
    if unknown:
        return Result("inconclusive", details, checks, requests)
    return Result("passed", details, checks, requests)


def _success_rate(measured: Measurements, requests: float, thresholds: AnalysisSpec) -> Check:
    rate = min((measured.successes or 0.0) / requests, 1.0)
    verdict: Verdict = "passed" if rate >= thresholds.success_rate else "failed"
    return Check(
        "successRate", verdict, f"success rate {rate:.4f} (min {thresholds.success_rate:g})", rate
    )


def _latency(measured: Measurements, thresholds: AnalysisSpec) -> Check:
    p99 = measured.p99_latency_seconds
    if p99 is None or math.isnan(p99):
        return Check(
            "p99LatencySeconds", "inconclusive", "p99 latency unknown (no histogram samples)"
        )
    verdict: Verdict = "passed" if p99 <= thresholds.p99_latency_seconds else "failed"
    return Check(
        "p99LatencySeconds",
        verdict,
        f"p99 latency {p99 * 1000:.1f}ms (max {thresholds.p99_latency_seconds * 1000:g}ms)",
        p99,
    )


def _psi(measured: Measurements, thresholds: AnalysisSpec) -> Check:
    stable_rows = _total(measured.stable_scores)
    if stable_rows < thresholds.min_requests:
        return Check(
            "scorePSI",
            "inconclusive",
            f"score PSI unknown ({stable_rows:.0f} stable scores in the window, need"
            f" {thresholds.min_requests})",
        )
    value = score_psi(measured.canary_scores, measured.stable_scores)
    if math.isnan(value):
        return Check("scorePSI", "inconclusive", "score PSI unknown (no canary score histogram)")
    verdict: Verdict = "passed" if value <= thresholds.max_score_psi else "failed"
    return Check(
        "scorePSI",
        verdict,
        f"score PSI {value:.3f} vs stable (max {thresholds.max_score_psi:g})",
        value,
    )
