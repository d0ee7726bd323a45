"""The shadow challenger: scored on the champion's validated rows in micro-batches, off the request
path and off the event loop, so a challenger can only drop shadow rows, never fail or delay an
answer."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import numpy as np
import numpy.typing as npt

from creditmodel.predictor.engine import LoadedBundle
from creditmodel.predictor.metrics import Telemetry
from creditmodel.predictor.validation import Batch

log = logging.getLogger("creditmodel.predictor")


class ShadowScorer:
    """Scores the challenger on the champion's validated rows in micro-batches, off the request
    path and off the event loop (`drain` runs in a worker thread): a challenger failure or
    slowness can only drop shadow rows (counted), never fail or delay a response. Each row is
    scored by the challenger's variant that answered it for the champion (int8 or fp32), so the
    disagreement measures the models, not the quantisation."""

    def __init__(self, challenger: LoadedBundle, telemetry: Telemetry, max_rows: int) -> None:
        self.challenger = challenger
        self.telemetry = telemetry
        self.max_rows = max_rows
        self._queue: deque[tuple[Batch, npt.NDArray[np.float32], str]] = deque()
        self._rows = 0
        # submit runs on the event loop or, for a large batch, in a worker thread; drain in
        # another: the queue and its row count are read and written under this lock.
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        return self._rows > 0

    def submit(self, batch: Batch, champion: npt.NDArray[np.float32], variant: str) -> None:
        rows = champion.shape[0]
        with self._lock:
            full = self._rows + rows > self.max_rows
            if not full:
                self._queue.append((batch, champion, variant))
                self._rows += rows
        if full:
            self.telemetry.shadow_dropped(self.challenger.version, rows)

    def drain(self) -> None:
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
            self._rows = 0
        for variant in sorted({v for _, _, v in items}):
            self._score(variant, [(b, p) for b, p, v in items if v == variant])

    def _score(self, variant: str, items: list[tuple[Batch, npt.NDArray[np.float32]]]) -> None:
        version = self.challenger.version
        try:
            batch = self.challenger.validator.concatenate([b for b, _ in items])
            champion = np.concatenate([p for _, p in items])
            started = time.perf_counter()
            scored = self.challenger.variants[variant].score(batch, with_reasons=False)
            elapsed = time.perf_counter() - started
            delta = np.abs(scored.probability - champion)
            self.telemetry.scored(version, "shadow", batch, scored.score, elapsed)
            self.telemetry.shadow_delta(version, delta)
            log.info(
                "shadow scored",
                extra={
                    "event": "shadow",
                    "challenger_version": version,
                    "variant": variant,
                    "rows": int(delta.size),
                    "mean_abs_delta": float(delta.mean()),
                    "max_abs_delta": float(delta.max()),
                },
            )
        except Exception:
            self.telemetry.shadow_failed(version)
            log.exception("shadow challenger failed", extra={"challenger_version": version})
