"""Calibration, fairness and the points scale: pure numpy/pandas on labels and probabilities."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from creditmodel.core.points import PROBABILITY_FLOOR
from creditmodel.training.config import Scoring

AGE_BANDS = ((18, 25), (25, 35), (35, 50), (50, 65), (65, 200))
_SENSITIVE = re.compile(
    r"(sex|gender|foreign|nationality|national_origin|race|ethnic|religion|marital|personal_status)",
    re.IGNORECASE,
)
_AGE = re.compile(r"^(age|age_years|age_in_years|applicant_age)$", re.IGNORECASE)
MAX_AGE = 130  # years; an age column beyond it is in other units, and every row one band
MISSING_GROUP = "(missing)"


def is_age(name: str) -> bool:
    """A column the audit reads as an applicant's age in years, and bands."""
    return bool(_AGE.match(name))


def brier(labels: np.ndarray, probability: np.ndarray) -> float:
    return float(np.mean((np.asarray(probability, dtype=np.float64) - labels) ** 2))


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    rows: int
    mean_predicted: float
    observed_rate: float


def reliability(
    labels: np.ndarray, probability: np.ndarray, bins: int = 10
) -> list[ReliabilityBin]:
    """Predicted vs observed default rate in equal-width probability bins (empty bins omitted)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            table.append(
                ReliabilityBin(
                    lower=float(edges[b]),
                    upper=float(edges[b + 1]),
                    rows=int(mask.sum()),
                    mean_predicted=float(np.mean(probability[mask])),
                    observed_rate=float(np.mean(labels[mask])),
                )
            )
    return table


def expected_calibration_error(table: list[ReliabilityBin]) -> float:
    total = sum(row.rows for row in table)
    return float(
        sum(row.rows * abs(row.mean_predicted - row.observed_rate) for row in table) / total
    )


@dataclass(frozen=True)
class GroupRate:
    group: str
    rows: int
    approval_rate: float
    default_rate: float


@dataclass(frozen=True)
class FairnessCheck:
    attribute: str
    groups: tuple[GroupRate, ...]
    # Lowest / highest approval rate among groups with at least `min_group` rows.
    approval_ratio: float
    gated_groups: tuple[str, ...]


def implausible_age(name: str, column: pd.Series) -> str | None:
    """Why an age column cannot be banded in years (ages in months put every applicant in
    "65+", one group, so the gate compared nothing), or None."""
    if not is_age(name) or not pd.api.types.is_numeric_dtype(column):
        return None
    beyond = (column > MAX_AGE).to_numpy()
    if not beyond.any():
        return None
    first = int(np.argmax(beyond))
    return (
        f"column {name!r}: row {first + 1} has {column.iloc[first]:g}, not an age in years (the"
        f" fairness audit bands {name!r} in years, up to {MAX_AGE}); convert it, or rename the"
        " column if it is not the applicant's age"
    )


def as_groups(column: pd.Series) -> pd.Series:
    """A column of group labels: its values as text, a blank its own group `(missing)` (it was
    the group 'nan')."""
    return column.astype(str).mask(column.isna(), MISSING_GROUP)


def age_band(age: float) -> str:
    if math.isnan(age):  # an audit-only age left blank: it fell through every band to "<18"
        return MISSING_GROUP
    for low, high in AGE_BANDS:
        if low <= age < high:
            return f"{low}+" if high >= 200 else f"{low}-{high - 1}"
    return f"<{AGE_BANDS[0][0]}"


def audited_columns(frame: pd.DataFrame, audit_only: list[str]) -> dict[str, pd.Series]:
    """The attributes to audit: an age column (in bands), the audit-only columns, and any feature
    whose name marks it as a sensitive attribute."""
    out: dict[str, pd.Series] = {}
    for name in frame.columns:
        column = frame[name]
        if is_age(name) and pd.api.types.is_numeric_dtype(column):
            out[f"{name} (band)"] = column.map(age_band).astype(str)
        elif name in audit_only or _SENSITIVE.search(name):
            out[name] = as_groups(column)
    return out


def fairness(
    groups: pd.Series, labels: np.ndarray, probability: np.ndarray, cutoff: float, min_group: int
) -> FairnessCheck:
    approved = np.asarray(probability) < cutoff
    rates = []
    for group in sorted(groups.unique()):
        mask = (groups == group).to_numpy()
        rates.append(
            GroupRate(
                group=str(group),
                rows=int(mask.sum()),
                approval_rate=float(approved[mask].mean()),
                default_rate=float(labels[mask].mean()),
            )
        )
    gated = [r for r in rates if r.rows >= min_group]
    highest = max((r.approval_rate for r in gated), default=0.0)
    ratio = (
        min(r.approval_rate for r in gated) / highest if len(gated) >= 2 and highest > 0 else 1.0
    )
    return FairnessCheck(
        attribute=str(groups.name),
        groups=tuple(rates),
        approval_ratio=float(ratio),
        gated_groups=tuple(r.group for r in gated),
    )


def points(probability: np.ndarray, scoring: Scoring) -> np.ndarray:
    """Integer points: `base_score` at `base_odds` good:bad, `points_to_double_odds` per doubling
    (the scaling's own factor and offset). Probabilities are clipped to the predictor's floor so
    the score stays finite."""
    p = np.clip(np.asarray(probability, dtype=np.float64), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    log_odds = np.log((1 - p) / p)
    scores: np.ndarray = np.rint(scoring.offset + scoring.factor * log_odds).astype(np.int32)
    return scores
