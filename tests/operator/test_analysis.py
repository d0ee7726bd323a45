"""Canary analysis maths: verdicts from Prometheus answers, PSI from histogram buckets, PromQL."""

from __future__ import annotations

import math

import pytest

from creditmodel.operator import analysis
from creditmodel.operator.model import AnalysisSpec

pytestmark = pytest.mark.unit

THRESHOLDS = AnalysisSpec(min_requests=20, success_rate=0.99, p99_latency_seconds=0.1)
BOUNDS = [400.0, 500.0, 600.0, 700.0, math.inf]


def cumulative(counts: list[float]) -> dict[float, float]:
    total, result = 0.0, {}
    for bound, count in zip(BOUNDS, counts, strict=True):
        total += count
        result[bound] = total
    return result


SAME = cumulative([10, 40, 40, 10, 0])


def measured(**overrides: object) -> analysis.Measurements:
    values: dict[str, object] = {
        "requests": 100.0,
        "successes": 100.0,
        "p99_latency_seconds": 0.01,
        "canary_scores": SAME,
        "stable_scores": SAME,
    }
    values.update(overrides)
    return analysis.Measurements(**values)  # type: ignore[arg-type]


def test_healthy_canary_passes() -> None:
    result = analysis.evaluate(measured(), THRESHOLDS)
    assert result.verdict == "passed"
    assert "success rate 1.0000" in result.message


@pytest.mark.parametrize("requests", [None, 0.0, 19.0])
def test_too_little_traffic_is_inconclusive_not_passed(requests: float | None) -> None:
    result = analysis.evaluate(measured(requests=requests), THRESHOLDS)
    assert result.verdict == "inconclusive"
    assert "need 20" in result.message


def test_low_success_rate_fails() -> None:
    result = analysis.evaluate(measured(successes=90.0), THRESHOLDS)
    assert result.verdict == "failed"
    assert "success rate 0.9000 (min 0.99)" in result.message


def test_slow_p99_fails() -> None:
    result = analysis.evaluate(measured(p99_latency_seconds=0.25), THRESHOLDS)
    assert result.verdict == "failed"
    assert "p99 latency 250.0ms (max 100ms)" in result.message


def test_unknown_latency_is_inconclusive() -> None:
    assert analysis.evaluate(measured(p99_latency_seconds=math.nan), THRESHOLDS).verdict == (
        "inconclusive"
    )


def test_shifted_scores_fail_on_psi() -> None:
    shifted = cumulative([0, 0, 10, 40, 50])
    result = analysis.evaluate(measured(canary_scores=shifted), THRESHOLDS)
    assert result.verdict == "failed"
    assert "score PSI" in result.message


def test_psi_without_stable_traffic_is_inconclusive() -> None:
    result = analysis.evaluate(measured(stable_scores=cumulative([1, 1, 1, 0, 0])), THRESHOLDS)
    assert result.verdict == "inconclusive"
    assert "3 stable scores" in result.message


def test_failure_wins_over_inconclusive() -> None:
    result = analysis.evaluate(measured(successes=50.0, p99_latency_seconds=None), THRESHOLDS)
    assert result.verdict == "failed"


def test_bucket_counts_undo_prometheus_cumulation() -> None:
    assert analysis.bucket_counts({1.0: 2.0, math.inf: 5.0, 2.0: 4.0}) == [2.0, 2.0, 1.0]


def test_score_psi_of_identical_distributions_is_zero() -> None:
    assert analysis.score_psi(SAME, SAME) == pytest.approx(0.0)


def test_score_psi_needs_matching_buckets() -> None:
    assert math.isnan(analysis.score_psi({1.0: 1.0}, SAME))
    assert math.isnan(analysis.score_psi(SAME, cumulative([0, 0, 0, 0, 0])))


def test_queries_select_the_versions_and_exclude_the_shadow() -> None:
    queries = analysis.Queries.build("german", "v2", "v1", 60)
    assert 'version="v2"' in queries.requests
    assert 'variant!="shadow"' in queries.requests
    assert 'outcome="success"' in queries.successes
    assert "[60s]" in queries.p99_latency
    assert 'version="v1"' in queries.stable_scores
    assert queries.stable_score_psi == (
        'max(creditmodel_score_psi{model="german",version="v1",variant!="shadow"})'
    )


def test_queries_escape_label_values() -> None:
    assert 'model="a\\"b"' in analysis.Queries.build('a"b', "v2", "v1", 60).requests


def test_queries_can_be_scoped_to_a_namespace() -> None:
    queries = analysis.Queries.build("german", "v2", "v1", 60, {"namespace": "risk"})
    assert 'version="v2",variant!="shadow",namespace="risk"}' in queries.requests
    assert 'namespace="risk",outcome="success"' in queries.successes
    assert 'namespace="risk"' in queries.stable_scores
