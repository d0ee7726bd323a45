"""Prometheus metrics of the predictor, correct with any number of worker processes.

Every series carries the labels `model`, `version` and `variant` (int8, fp32, or `shadow` for the
challenger, whose `version` is the challenger's). Two bounded extra labels exist: `outcome` and
`reason` on request counters, `feature` on the feature PSI gauge. The operator's canary analysis
relies on these names; they are a contract, named once in creditmodel.core.metrics:

  creditmodel_requests_total{model,version,variant,outcome}      counter; outcome=success|error
  creditmodel_request_errors_total{model,version,variant,reason} counter; reason as in errors.py
  creditmodel_predictions_total{model,version,variant}           counter; rows scored
  creditmodel_request_duration_seconds{model,version,variant}    histogram; whole request,
        parse to encode; buckets from 50 us (p99: histogram_quantile(0.99, rate(..._bucket[1m])))
  creditmodel_inference_duration_seconds{model,version,variant}  histogram; model run + reasons
  creditmodel_score{model,version,variant}                       histogram of scores (points);
        fixed buckets every 20 points from 300 to 900, the same for every version, so the
        canary-vs-stable PSI can be computed from the two versions' bucket rates
  creditmodel_score_psi{model,version,variant}                   gauge; PSI of the score vs the
        bundle's reference deciles over the sliding window; absent (no sample) until that
        window holds --drift_min_rows rows (500): a PSI over a handful of rows is noise
  creditmodel_feature_psi{model,version,variant,feature}         gauge; the same per feature
  creditmodel_drift_window_rows{model,version,variant}           gauge; rows in that window
        (always exported, 0 included)
  creditmodel_shadow_probability_delta{model,version,variant}    histogram; |challenger -
        champion| probability per row (labels of the challenger)
  creditmodel_shadow_dropped_rows_total{model,version,variant}   counter; queue full
  creditmodel_shadow_failures_total{model,version,variant}       counter; challenger errors
  creditmodel_prediction_log_written_rows_total{model}           counter; rows in the log
  creditmodel_prediction_log_dropped_rows_total{model}           counter; queue full
  creditmodel_prediction_log_write_errors_total{model}           counter; parts lost (store
        refused or unreachable); these three from prediction_log.py, labelled by model only

Several workers: prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the
console script before anything imports prometheus_client) aggregates counters and histograms; the
drift windows are memory-mapped count arrays in the same directory, one per process, summed at
scrape time, so PSI is computed over the traffic of all workers (PSI itself does not add up).
"""

from __future__ import annotations

import bisect
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from creditmodel.core import metrics as names
from creditmodel.predictor.monitoring import DriftLayout, SlidingCounts
from creditmodel.predictor.validation import Batch

LABELS = names.LABELS
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
SCORE_BUCKETS = tuple(float(points) for points in range(300, 901, 20))
DELTA_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
DRIFT_SLOTS = 10

REQUESTS = Counter(names.REQUESTS, "Inference requests by outcome.", [*LABELS, names.OUTCOME])
ERRORS = Counter(
    names.REQUEST_ERRORS, "Refused inference requests by reason.", [*LABELS, names.REASON]
)
PREDICTIONS = Counter(names.PREDICTIONS, "Rows scored.", LABELS)
REQUEST_SECONDS = Histogram(
    names.REQUEST_DURATION,
    "Inference request latency, parse to encode.",
    LABELS,
    buckets=LATENCY_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    names.INFERENCE_DURATION,
    "Model run plus reason codes.",
    LABELS,
    buckets=LATENCY_BUCKETS,
)
SCORE = Histogram(names.SCORE, "Scores (points).", LABELS, buckets=SCORE_BUCKETS)
SHADOW_DELTA = Histogram(
    names.SHADOW_PROBABILITY_DELTA,
    "Absolute difference of challenger and champion probability per row.",
    LABELS,
    buckets=DELTA_BUCKETS,
)
SHADOW_DROPPED = Counter(names.SHADOW_DROPPED_ROWS, "Rows not shadow-scored: queue full.", LABELS)
SHADOW_FAILURES = Counter(names.SHADOW_FAILURES, "Challenger scoring failures.", LABELS)


class DriftWindow:
    """This process's sliding bin counts for one (version, variant), memory-mapped when a
    multiprocess directory is set. Scored rows are queued and binned in batches off the request
    path (`flush`)."""

    def __init__(
        self,
        layout: DriftLayout,
        key: str,
        window_seconds: float,
        directory: Path | None,
        process_id: int | None = None,
    ) -> None:
        self.layout = layout
        self.key = key
        self.window_seconds = window_seconds
        self.directory = directory
        shape = (DRIFT_SLOTS, 1 + layout.total_bins)
        if directory is None:
            self._array: npt.NDArray[np.int64] = np.zeros(shape, dtype=np.int64)
        else:
            path = directory / f"drift_{key}_{process_id or os.getpid()}.npy"
            self._array = np.lib.format.open_memmap(path, mode="w+", dtype=np.int64, shape=shape)
        self._array[:, 0] = -1
        self._sliding = SlidingCounts(self._array[:, 1:], self._array[:, 0], window_seconds)
        # add runs on the event loop, in worker threads and on the gRPC thread, flush in the
        # housekeeping task: deque.append and popleft are atomic, so a row added while a flush
        # takes the queue is binned by this flush or the next, never lost (a swapped list could
        # receive an append after it was binned).
        self._pending: deque[tuple[Batch, npt.NDArray[Any]]] = deque()
        self._lock = threading.Lock()

    def add(self, batch: Batch, score: npt.NDArray[Any]) -> None:
        self._pending.append((batch, score))

    def flush(self, now: float | None = None) -> None:
        with self._lock:
            queued = self._pending
            pending = [queued.popleft() for _ in range(len(queued))]
            if not pending:
                return
            counts = self.layout.bin_counts(
                np.concatenate([b.numeric for b, _ in pending]),
                np.concatenate([b.codes for b, _ in pending]),
                np.concatenate([s for _, s in pending]),
            )
            self._sliding.add(time.time() if now is None else now, counts)

    def window_counts(self, now: float) -> npt.NDArray[np.int64]:
        """Counts over the window summed over every process's file for this key."""
        self.flush(now)
        if self.directory is None:
            return self._sliding.window(now)
        total = np.zeros(self.layout.total_bins, dtype=np.int64)
        for path in self.directory.glob(f"drift_{self.key}_*.npy"):
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError):
                continue  # a worker is still creating its file
            total += SlidingCounts(array[:, 1:], array[:, 0], self.window_seconds).window(now)
        return total


class DriftCollector(Collector):
    """PSI gauges computed at scrape time from the summed windows, for the windows that hold at
    least `min_rows` rows; the row count of every window."""

    def __init__(self, min_rows: int = 1) -> None:
        self.windows: dict[tuple[str, str, str], DriftWindow] = {}
        self.min_rows = min_rows

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        score = GaugeMetricFamily(
            names.SCORE_PSI,
            "Score PSI vs the reference deciles, sliding window.",
            labels=LABELS,
        )
        features = GaugeMetricFamily(
            names.FEATURE_PSI,
            "Feature PSI vs the reference bins, sliding window.",
            labels=[*LABELS, names.FEATURE],
        )
        rows = GaugeMetricFamily(names.DRIFT_WINDOW_ROWS, "Rows in the PSI window.", labels=LABELS)
        for labels, window in self.windows.items():
            counts = window.window_counts(now)
            in_window = int(counts[: len(window.layout.expected[0])].sum())
            rows.add_metric(list(labels), float(in_window))
            if in_window < self.min_rows:
                continue
            values = window.layout.psi(counts)
            score.add_metric(list(labels), values.pop("score"))
            for feature, value in values.items():
                features.add_metric([*labels, feature], value)
        yield score
        yield features
        yield rows


_KEY = re.compile(r"[^A-Za-z0-9.-]")


class BucketCounts:
    """Bucket counts gathered locally, pushed to a prometheus_client histogram child in bulk."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def observe_array(self, values: npt.NDArray[Any]) -> None:
        if values.size == 1:
            self.observe(float(values.reshape(-1)[0]))
            return
        indices = np.searchsorted(np.asarray(self.bounds), values.reshape(-1), side="left")
        for index, count in enumerate(np.bincount(indices, minlength=len(self.counts)).tolist()):
            self.counts[index] += count
        self.total += float(values.sum())

    def push(self, child: Any) -> None:
        """Same effect as one `observe` per value (per-bucket counts in `_buckets`, plus `_sum`)."""
        for index, count in enumerate(self.counts):
            if count:
                child._buckets[index].inc(count)
                self.counts[index] = 0
        if self.total:
            child._sum.inc(self.total)
            self.total = 0.0


class _Series:
    """One (version, variant): the request path only touches these plain numbers; `flush`
    moves them into prometheus_client, whose multiprocess values cost a lock and an mmap write
    each (eight of them per request otherwise)."""

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self.children = (
            REQUESTS.labels(*labels, names.SUCCESS),
            PREDICTIONS.labels(*labels),
            REQUEST_SECONDS.labels(*labels),
            INFERENCE_SECONDS.labels(*labels),
            SCORE.labels(*labels),
        )
        self.requests = 0
        self.predictions = 0
        self.request_seconds = BucketCounts(LATENCY_BUCKETS)
        self.inference_seconds = BucketCounts(LATENCY_BUCKETS)
        self.score = BucketCounts(SCORE_BUCKETS)

    def push(self) -> None:
        requests, predictions, request_seconds, inference_seconds, score = self.children
        if self.requests:
            requests.inc(self.requests)
            self.requests = 0
        if self.predictions:
            predictions.inc(self.predictions)
            self.predictions = 0
        self.request_seconds.push(request_seconds)
        self.inference_seconds.push(inference_seconds)
        self.score.push(score)


class Telemetry:
    """Everything the request path records. Request counters and histograms are gathered per
    process and flushed at least every second (the service's housekeeping) and before every
    scrape this process answers, so a scrape lags other workers by at most that second."""

    def __init__(self, model: str, window_seconds: float, min_rows: int = 1) -> None:
        self.model = model
        self.window_seconds = window_seconds
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.directory = Path(directory) if directory else None
        self.drift = DriftCollector(min_rows)
        self._series: dict[tuple[str, str], _Series] = {}
        self._lock = threading.Lock()  # large batches are scored in worker threads

    def track(self, version: str, variant: str, layout: DriftLayout) -> None:
        key = _KEY.sub("_", f"{self.model}__{version}__{variant}")
        self.drift.windows[(self.model, version, variant)] = DriftWindow(
            layout, key, self.window_seconds, self.directory
        )

    def _get(self, version: str, variant: str) -> _Series:
        series = self._series.get((version, variant))
        if series is None:
            series = self._series[(version, variant)] = _Series((self.model, version, variant))
        return series

    def scored(
        self,
        version: str,
        variant: str,
        batch: Batch,
        score: npt.NDArray[Any],
        inference_seconds: float,
    ) -> None:
        with self._lock:
            series = self._get(version, variant)
            series.predictions += score.size
            series.inference_seconds.observe(inference_seconds)
            series.score.observe_array(score)
        window = self.drift.windows.get((self.model, version, variant))
        if window is not None:
            window.add(batch, score)

    def request_done(self, version: str, variant: str, seconds: float) -> None:
        with self._lock:
            series = self._get(version, variant)
            series.requests += 1
            series.request_seconds.observe(seconds)

    def error(self, version: str, variant: str, reason: str) -> None:
        labels = (self.model, version, variant)
        REQUESTS.labels(*labels, names.ERROR).inc()
        ERRORS.labels(*labels, reason).inc()

    def shadow_delta(self, version: str, delta: npt.NDArray[Any]) -> None:
        counts = BucketCounts(DELTA_BUCKETS)
        counts.observe_array(delta)
        counts.push(SHADOW_DELTA.labels(self.model, version, names.SHADOW))

    def shadow_dropped(self, version: str, rows: int) -> None:
        SHADOW_DROPPED.labels(self.model, version, names.SHADOW).inc(rows)

    def shadow_failed(self, version: str) -> None:
        SHADOW_FAILURES.labels(self.model, version, names.SHADOW).inc()

    def flush_counts(self) -> None:
        with self._lock:
            for series in self._series.values():
                series.push()

    def bin_pending(self) -> None:
        """Bin the rows scored since the last call into the PSI windows."""
        for window in self.drift.windows.values():
            window.flush()

    def flush(self) -> None:
        self.flush_counts()
        self.bin_pending()

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The /metrics payload: every process's series when in multiprocess mode."""
        from prometheus_client.exposition import choose_encoder

        try:
            encoder, content_type = choose_encoder(accept or "")
        except (TypeError, ValueError):  # prometheus_client fails on e.g. `version=abc`
            encoder, content_type = choose_encoder("")  # a header it cannot read: plain text
        self.flush_counts()
        registry = CollectorRegistry()
        if self.directory is None:
            registry.register(_ProcessMetrics())
        else:
            multiprocess.MultiProcessCollector(registry, path=str(self.directory))  # type: ignore[no-untyped-call]
        registry.register(self.drift)
        return encoder(registry), content_type


class _ProcessMetrics(Collector):
    """This process's default registry (single-process mode)."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()
