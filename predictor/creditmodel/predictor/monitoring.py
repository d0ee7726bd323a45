"""Live drift bookkeeping, pure: which reference bin each scored value falls in, a sliding
window of bin counts over time slots, and PSI against the bundle's frozen reference
(creditmodel.core.drift, the same maths the offline drift job uses)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from creditmodel.core import drift
from creditmodel.core.reference import CategoricalReference, Reference
from creditmodel.core.schema import Schema

SCORE = "score"
Counts = npt.NDArray[np.int64]


class DriftLayout:
    """Bins of the score and of every feature laid end to end in one count vector."""

    def __init__(self, schema: Schema, reference: Reference) -> None:
        self.names: list[str] = [SCORE]
        self.expected: list[npt.NDArray[np.float64]] = [np.asarray(reference.score.fractions)]
        self._edges: dict[str, list[float]] = {SCORE: list(reference.score.edges)}
        for feature in schema.features:
            ref = reference.features[feature.name]
            self.names.append(feature.name)
            if isinstance(ref, CategoricalReference):
                # bins in schema category order: a category's code (validation.Batch) is its bin
                ordered = feature.categories or []
                self.expected.append(np.asarray([ref.frequencies.get(c, 0.0) for c in ordered]))
            else:
                self._edges[feature.name] = list(ref.bins.edges)
                self.expected.append(np.asarray(ref.bins.fractions))
        self._numeric = [f.name for f in schema.features if f.kind == "numeric"]
        self._categorical = [f.name for f in schema.features if f.kind == "categorical"]
        sizes = [len(e) for e in self.expected]
        self.offsets = np.cumsum([0, *sizes])
        self.total_bins = int(self.offsets[-1])

    def bin_counts(
        self,
        numeric: npt.NDArray[np.float64],
        codes: npt.NDArray[np.intp],
        score: npt.NDArray[Any],
    ) -> Counts:
        """Counts per bin; `numeric` and `codes` as in validation.Batch."""
        counts = np.zeros(self.total_bins, dtype=np.int64)
        numeric_column = {name: i for i, name in enumerate(self._numeric)}
        code_column = {name: i for i, name in enumerate(self._categorical)}
        for index, name in enumerate(self.names):
            if name in code_column:
                bins = codes[:, code_column[name]]
            else:
                values = score if name == SCORE else numeric[:, numeric_column[name]]
                bins = drift.bin_indices(self._edges[name], values.astype(np.float64))
            start = self.offsets[index]
            counts[start : self.offsets[index + 1]] += np.bincount(
                bins, minlength=len(self.expected[index])
            )[: len(self.expected[index])]
        return counts

    def psi(self, counts: Counts) -> dict[str, float]:
        return {
            name: drift.psi(self.expected[i], counts[self.offsets[i] : self.offsets[i + 1]])
            for i, name in enumerate(self.names)
        }


class SlidingCounts:
    """A ring of time slots over caller-supplied arrays (plain or memory-mapped, so several
    worker processes can each own one and a scrape can sum them all)."""

    def __init__(self, counts: Counts, epochs: Counts, window_seconds: float) -> None:
        self.counts = counts
        self.epochs = epochs
        self.slots = counts.shape[0]
        self.slot_seconds = window_seconds / self.slots

    def _slot(self, now: float) -> int:
        return int(now // self.slot_seconds)

    def add(self, now: float, counts: Counts) -> None:
        slot = self._slot(now)
        index = slot % self.slots
        if self.epochs[index] != slot:
            self.counts[index] = 0
            self.epochs[index] = slot
        self.counts[index] += counts

    def window(self, now: float) -> Counts:
        current = self._slot(now)
        live = (self.epochs > current - self.slots) & (self.epochs <= current)
        return np.asarray(self.counts[live].sum(axis=0), dtype=np.int64)
