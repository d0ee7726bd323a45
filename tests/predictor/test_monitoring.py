"""Drift bookkeeping: bins, sliding window, PSI, and the multiprocess sum of windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from creditmodel.core import drift
from creditmodel.predictor.metrics import BucketCounts, DriftWindow, Telemetry
from creditmodel.predictor.monitoring import DriftLayout, SlidingCounts
from creditmodel.predictor.validation import Tensor, Validator
from tests.predictor.test_scoring import REFERENCE, SCHEMA

pytestmark = pytest.mark.unit


def batch(n: int, debt: float = 30.0, housing: str = "own"):  # type: ignore[no-untyped-def]
    values = {
        "debt": debt,
        "late_payments": 0.0,
        "age": 40.0,
        "housing": housing,
        "inquiries": 10.0,
    }
    return Validator(SCHEMA, 10_000).validate(
        [Tensor(f.name, f.datatype, [n], [values[f.name]] * n) for f in SCHEMA.features]
    )


def test_bin_counts_follow_reference_edges_and_category_order() -> None:
    layout = DriftLayout(SCHEMA, REFERENCE)
    b = batch(3, debt=45.0, housing="rent")
    counts = layout.bin_counts(b.numeric, b.codes, np.array([550, 650, 650]))
    by_name = {n: counts[layout.offsets[i] : layout.offsets[i + 1]].tolist()
               for i, n in enumerate(layout.names)}  # fmt: skip
    assert by_name["score"] == [1, 2]
    assert by_name["debt"] == [0, 0, 3, 0, 0]  # 45 is in [40, 60)
    assert by_name["housing"] == [0, 3, 0]  # schema order: own, rent, free


def test_psi_matches_the_shared_drift_maths() -> None:
    layout = DriftLayout(SCHEMA, REFERENCE)
    b = batch(10, debt=90.0)
    counts = layout.bin_counts(b.numeric, b.codes, np.full(10, 700))
    psi = layout.psi(counts)
    assert psi["debt"] == pytest.approx(drift.psi([0.2] * 5, [0, 0, 0, 0, 10]))
    assert psi["debt"] > drift.ACT


def test_sliding_window_forgets_old_slots() -> None:
    counts = np.zeros((10, 2), dtype=np.int64)
    epochs = np.full(10, -1, dtype=np.int64)
    window = SlidingCounts(counts, epochs, window_seconds=100.0)
    window.add(1_000.0, np.array([1, 0]))
    window.add(1_050.0, np.array([0, 2]))
    assert window.window(1_050.0).tolist() == [1, 2]
    assert window.window(1_105.0).tolist() == [0, 2]  # the slot of t=1000 fell out
    assert window.window(1_200.0).tolist() == [0, 0]


def test_windows_of_several_processes_are_summed(tmp_path: Path) -> None:
    layout = DriftLayout(SCHEMA, REFERENCE)
    first = DriftWindow(layout, "demo__v1__int8", 600.0, tmp_path, process_id=101)
    second = DriftWindow(layout, "demo__v1__int8", 600.0, tmp_path, process_id=102)
    other_key = DriftWindow(layout, "demo__v1__fp32", 600.0, tmp_path, process_id=101)
    first.add(batch(4), np.full(4, 650))
    second.add(batch(3), np.full(3, 550))
    other_key.add(batch(5), np.full(5, 550))
    for window in (first, second, other_key):
        window.flush(now=10_000.0)
    score_bins = first.window_counts(10_000.0)[: len(layout.expected[0])]
    assert score_bins.tolist() == [3, 4]
    assert second.window_counts(10_000.0 + 601)[:2].tolist() == [0, 0]


def test_bulk_bucket_counts_equal_observing_one_by_one() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    registry = CollectorRegistry()
    bounds = (1.0, 5.0, 10.0)
    bulk = Histogram("bulk", "x", buckets=bounds, registry=registry)
    single = Histogram("single", "x", buckets=bounds, registry=registry)
    values = np.array([0.5, 1.0, 3.0, 5.0, 7.5, 10.0, 11.0, 99.0])
    counts = BucketCounts(bounds)
    counts.observe_array(values[:4])
    for value in values[4:]:
        counts.observe(float(value))
    counts.push(bulk)
    for value in values:
        single.observe(float(value))
    samples = {
        (s.name.replace("bulk", "h").replace("single", "h"), tuple(sorted(s.labels.items()))): []
        for m in registry.collect() for s in m.samples
    }  # fmt: skip
    for metric in registry.collect():
        for s in metric.samples:
            key = (
                s.name.replace("bulk", "h").replace("single", "h"),
                tuple(sorted(s.labels.items())),
            )
            samples[key].append(s.value)
    for key, got in samples.items():
        if not key[0].endswith("_created"):
            assert got[0] == got[1], key


def test_telemetry_exposes_psi_gauges_in_single_process_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    telemetry = Telemetry("demo-psi", 600.0, min_rows=50)
    telemetry.track("v9", "int8", DriftLayout(SCHEMA, REFERENCE))
    b = batch(50, debt=95.0)
    telemetry.scored("v9", "int8", b, np.full(50, 650, dtype=np.int32), 0.0001)
    text = telemetry.exposition()[0].decode()
    line = next(
        ln for ln in text.splitlines()
        if ln.startswith("creditmodel_feature_psi{") and 'feature="debt"' in ln and 'model="demo-psi"' in ln
    )  # fmt: skip
    assert float(line.rsplit(" ", 1)[1]) > drift.ACT
    assert (
        'creditmodel_drift_window_rows{model="demo-psi",variant="int8",version="v9"} 50.0' in text
    )


def samples(text: str, name: str, model: str) -> dict[str, float]:
    """`name`'s samples of `model` in an exposition, by their label text."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            head, value = line.rsplit(" ", 1)
            found[head[len(name) :]] = float(value)
    return found


def test_psi_gauges_wait_for_the_minimum_rows_and_the_row_count_is_always_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 15: after two requests /metrics showed a score PSI of 8.30, a PSI over two rows.
    Below `min_rows` in a (version, variant)'s window its PSI gauges are absent (no sample, so no
    alert or retrain can fire on it); `creditmodel_drift_window_rows` is exported throughout."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    telemetry = Telemetry("demo-min", 600.0, min_rows=100)
    layout = DriftLayout(SCHEMA, REFERENCE)
    telemetry.track("v1", "int8", layout)
    telemetry.track("v1", "fp32", layout)
    text = telemetry.exposition()[0].decode()
    assert samples(text, "creditmodel_drift_window_rows", "demo-min") == {
        '{model="demo-min",variant="int8",version="v1"}': 0.0,
        '{model="demo-min",variant="fp32",version="v1"}': 0.0,
    }
    assert not samples(text, "creditmodel_score_psi", "demo-min")
    assert "# TYPE creditmodel_score_psi gauge" in text  # the family is still described

    telemetry.scored("v1", "int8", batch(2, debt=95.0), np.full(2, 650, dtype=np.int32), 1e-4)
    text = telemetry.exposition()[0].decode()
    assert (
        samples(text, "creditmodel_drift_window_rows", "demo-min")[
            '{model="demo-min",variant="int8",version="v1"}'
        ]
        == 2.0
    )
    assert not samples(text, "creditmodel_score_psi", "demo-min")
    assert not samples(text, "creditmodel_feature_psi", "demo-min")

    telemetry.scored("v1", "int8", batch(98, debt=95.0), np.full(98, 650, dtype=np.int32), 1e-4)
    text = telemetry.exposition()[0].decode()
    score = samples(text, "creditmodel_score_psi", "demo-min")
    assert list(score) == ['{model="demo-min",variant="int8",version="v1"}']  # fp32: no rows
    assert score['{model="demo-min",variant="int8",version="v1"}'] > drift.ACT
    features = samples(text, "creditmodel_feature_psi", "demo-min")
    assert len(features) == len(SCHEMA.features)
    assert all('variant="int8"' in labels for labels in features)


def test_the_minimum_is_a_setting_and_a_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from creditmodel.predictor import __main__ as cli
    from creditmodel.predictor.settings import PredictorSettings

    assert PredictorSettings().drift_min_rows == 500
    monkeypatch.setenv("CREDITMODEL_PREDICTOR_DRIFT_MIN_ROWS", "40")
    parse = cli.build_parser().parse_args
    assert cli.settings_from(parse([])).drift_min_rows == 40
    assert cli.settings_from(parse(["--drift_min_rows", "7"])).drift_min_rows == 7
    with pytest.raises(ValueError, match="drift_min_rows"):
        PredictorSettings(drift_min_rows=0)


ACCEPT_HEADERS = [
    "application/openmetrics-text; version=abc",
    "application/openmetrics-text; version=1.0.0; charset=utf-8",
    "application/openmetrics-text; version=",
    "text/plain;q=x",
]
TELEMETRY = Telemetry("demo-accept", 600.0, min_rows=50)


@settings(max_examples=200, deadline=None)
@given(accept=st.text(max_size=80) | st.sampled_from(ACCEPT_HEADERS))
def test_any_accept_header_gets_metrics_never_an_error(accept: str) -> None:
    """`Accept: application/openmetrics-text; version=abc` made prometheus_client raise inside
    /metrics (a 500 with a traceback); a header it cannot read now gets the text format."""
    content, content_type = TELEMETRY.exposition(accept)
    assert content_type.startswith(("text/plain", "application/openmetrics-text"))
    assert content
