"""Synthetic credit applicants at any size, with a drift knob, for scale tests and drift demos.

The population is loosely modelled on retail loan books: right-skewed incomes and amounts, ages
18-80, a handful of categorical attributes, and a default flag drawn from a logistic risk model of
debt burden, history and stability (about 12 % defaults at drift 0). `drift` in [0, 1] shifts the
applicant mix towards younger, lower-income, higher-amount applicants with weaker histories and
raises the default rate, so score and feature PSI move the way they do when a market turns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET = "default"
POSITIVE_LABEL = "1"

_HOUSING = ("own", "rent", "mortgage", "with_family")
_PURPOSE = ("car", "home_improvement", "debt_consolidation", "education", "business", "other")
_HISTORY = ("no_credits", "all_paid", "existing_paid", "past_delays", "critical")
_EMPLOYMENT = ("salaried", "self_employed", "public_sector", "retired", "unemployed")
_HISTORY_RISK = np.array([0.3, -0.4, 0.0, 0.9, 1.4])
_EMPLOYMENT_RISK = np.array([0.0, 0.35, -0.3, 0.1, 1.1])
_HOUSING_RISK = np.array([-0.3, 0.25, -0.15, 0.2])
_PURPOSE_RISK = np.array([0.0, -0.1, 0.35, 0.2, 0.45, 0.1])


def _mix(base: np.ndarray, shifted: np.ndarray, drift: float) -> np.ndarray:
    weights = (1.0 - drift) * base + drift * shifted
    return np.asarray(weights / weights.sum(), dtype=np.float64)


def generate(n: int, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """`n` applicants with a `default` column (1 = defaulted); deterministic in (n, seed, drift)."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be in [0, 1], got {drift}")
    rng = np.random.default_rng(seed)
    age = np.clip(np.round(rng.gamma(4.0, 5.5 - 1.5 * drift, n) + 18), 18, 80).astype(np.int64)
    income = np.round(
        np.exp(rng.normal(10.6 - 0.35 * drift + 0.006 * (age - 40), 0.45, n)), -2
    ).clip(6_000, 500_000)
    amount = np.round(np.exp(rng.normal(8.9 + 0.4 * drift, 0.75, n)), -1).clip(250, 100_000)
    duration = rng.choice(
        [6, 12, 18, 24, 36, 48, 60], size=n, p=[0.08, 0.22, 0.15, 0.22, 0.18, 0.1, 0.05]
    )
    employment_years = np.round(
        np.minimum(rng.exponential(6.0 - 3.0 * drift, n), np.maximum(age - 18, 0)), 1
    )
    existing_credits = rng.poisson(0.8 + 0.6 * drift, n).clip(0, 12)
    dependents = rng.poisson(0.7, n).clip(0, 8)
    housing = rng.choice(
        len(_HOUSING),
        n,
        p=_mix(np.array([0.35, 0.3, 0.25, 0.1]), np.array([0.15, 0.45, 0.15, 0.25]), drift),
    )
    purpose = rng.choice(
        len(_PURPOSE),
        n,
        p=_mix(
            np.array([0.3, 0.2, 0.25, 0.08, 0.07, 0.1]),
            np.array([0.15, 0.1, 0.45, 0.1, 0.1, 0.1]),
            drift,
        ),
    )
    history = rng.choice(
        len(_HISTORY),
        n,
        p=_mix(
            np.array([0.05, 0.3, 0.45, 0.12, 0.08]), np.array([0.1, 0.15, 0.4, 0.2, 0.15]), drift
        ),
    )
    employment = rng.choice(
        len(_EMPLOYMENT),
        n,
        p=_mix(
            np.array([0.6, 0.12, 0.15, 0.08, 0.05]), np.array([0.5, 0.15, 0.08, 0.07, 0.2]), drift
        ),
    )
    monthly_payment = amount / duration
    burden = 12 * monthly_payment / income
    logit = (
        -3.8
        + 6.0 * burden
        + 0.25 * existing_credits
        - 0.02 * (age - 40)
        - 0.05 * np.minimum(employment_years, 15)
        + 0.12 * dependents
        + 0.01 * (duration - 24)
        + _HISTORY_RISK[history]
        + _EMPLOYMENT_RISK[employment]
        + _HOUSING_RISK[housing]
        + _PURPOSE_RISK[purpose]
        + 0.2 * drift
    )
    default = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame(
        {
            "age": age,
            "annual_income": income.astype(np.float64),
            "loan_amount": amount.astype(np.float64),
            "duration_months": duration.astype(np.int64),
            "employment_years": employment_years,
            "existing_credits": existing_credits.astype(np.int64),
            "dependents": dependents.astype(np.int64),
            "housing": pd.Categorical.from_codes(housing, categories=_HOUSING),
            "purpose": pd.Categorical.from_codes(purpose, categories=_PURPOSE),
            "credit_history": pd.Categorical.from_codes(history, categories=_HISTORY),
            "employment_type": pd.Categorical.from_codes(employment, categories=_EMPLOYMENT),
            TARGET: default,
        }
    )
