"""Points scaling and reason codes on constructed cases: a hand-built additive 'model' whose
per-feature log-odds contributions are known, so the expected codes follow by reasoning."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pydantic import ValidationError

from creditmodel.core.points import INT32_MAX, PROBABILITY_FLOOR, PointsScaling
from creditmodel.core.reference import Bins, CategoricalReference, NumericReference, Reference
from creditmodel.core.schema import Feature, Schema
from creditmodel.predictor import __main__ as cli
from creditmodel.predictor.scoring import (
    MIN_EFFECT,
    REASONS_PER_ROW,
    PointsScale,
    ReasonTable,
    probe_plan,
    strongest,
)
from creditmodel.predictor.validation import Tensor, Validator

pytestmark = pytest.mark.unit


def numeric(name: str, code: str, lo: float = 0, hi: float = 100) -> Feature:
    return Feature(name=name, kind="numeric", datatype="FP32", description=name.title(),
                   reason_code=code, minimum=lo, maximum=hi)  # fmt: skip


SCHEMA = Schema(
    features=[
        numeric("debt", "R01"),
        numeric("late_payments", "R02"),
        numeric("age", "R03"),
        Feature(name="housing", kind="categorical", datatype="BYTES", description="Housing",
                reason_code="R04", categories=["own", "rent", "free"]),
        numeric("inquiries", "R05"),
    ],
    target="default",
    positive_label="1",
)  # fmt: skip
BINS = Bins(edges=[20.0, 40.0, 60.0, 80.0], fractions=[0.2] * 5)
REFERENCE = Reference(
    features={
        "debt": NumericReference(bins=BINS, baseline=20.0),
        "late_payments": NumericReference(bins=BINS, baseline=0.0),
        "age": NumericReference(bins=BINS, baseline=40.0),
        "housing": CategoricalReference(frequencies={"own": 0.6, "rent": 0.3, "free": 0.1},
                                        baseline="own"),
        "inquiries": NumericReference(bins=BINS, baseline=10.0),
    },
    score=Bins(edges=[600.0], fractions=[0.5, 0.5]),
    probability=Bins(edges=[0.1], fractions=[0.5, 0.5]),
)  # fmt: skip
HOUSING_RISK = {"own": 0.0, "rent": 0.8, "free": -0.2}


def additive_model(columns: dict[str, npt.NDArray[np.object_]]) -> npt.NDArray[np.float64]:
    """log-odds = 0.05 debt + 0.3 late - 0.02 age + housing risk + 0.01 inquiries - 3."""
    flat = {name: column.reshape(-1) for name, column in columns.items()}
    logit = (
        0.05 * flat["debt"].astype(float)
        + 0.3 * flat["late_payments"].astype(float)
        - 0.02 * flat["age"].astype(float)
        + np.array([HOUSING_RISK[h] for h in flat["housing"]])
        + 0.01 * flat["inquiries"].astype(float)
        - 3
    )
    return 1 / (1 + np.exp(-logit))


@pytest.fixture(scope="module")
def table() -> ReasonTable:
    plan = probe_plan(SCHEMA, REFERENCE)
    return ReasonTable(SCHEMA, plan, additive_model(plan.columns))


def reasons(table: ReasonTable, **rows: list[object]) -> list[list[str]]:
    n = len(next(iter(rows.values())))
    base = {"debt": 20.0, "late_payments": 0.0, "age": 40.0, "housing": "own", "inquiries": 10.0}
    items = [
        Tensor(f.name, f.datatype, [n], rows.get(f.name, [base[f.name]] * n))
        for f in SCHEMA.features
    ]
    batch = Validator(SCHEMA, 100).validate(items)
    return [
        [code.split(":")[0] for code in row]
        for row in table.reasons(batch.numeric, batch.codes).tolist()
    ]


def test_the_baseline_applicant_has_no_adverse_reasons(table: ReasonTable) -> None:
    assert reasons(table, debt=[20.0]) == [["", "", "", ""]]


def test_strongest_risk_first_at_most_four(table: ReasonTable) -> None:
    # debt 60: +2.0; late 3: +0.9; rent: +0.8; inquiries 50: +0.4; age 20: +0.4 (tie, later)
    got = reasons(table, debt=[60.0], late_payments=[3.0], housing=["rent"],
                  inquiries=[50.0], age=[20.0])  # fmt: skip
    assert got == [["R01", "R02", "R04", "R03"]]


def test_ties_keep_schema_order(table: ReasonTable) -> None:
    # age 20 (+0.4) and inquiries 50 (+0.4) are equal: schema order puts age (R03) first.
    assert reasons(table, age=[20.0], inquiries=[50.0]) == [["R03", "R05", "", ""]]


def test_features_lowering_risk_are_never_reasons(table: ReasonTable) -> None:
    assert reasons(table, age=[80.0], housing=["free"], debt=[0.0]) == [["", "", "", ""]]


def test_a_row_gets_the_same_codes_alone_or_in_a_batch(table: ReasonTable) -> None:
    alone = reasons(table, debt=[55.0], late_payments=[2.0])
    batch = reasons(table, debt=[10.0, 55.0, 90.0], late_payments=[0.0, 2.0, 7.0])
    assert batch[1] == alone[0]


# Few distinct values, so that rows are full of ties, straddling MIN_EFFECT, with NaN.
_EFFECTS = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
    elements=st.sampled_from([-1.0, 0.0, MIN_EFFECT, 2 * MIN_EFFECT, 0.4, 0.8, 2.0, np.nan]),
)


@given(_EFFECTS)
def test_strongest_is_a_stable_descending_sort_of_the_risk_raising_effects(
    effects: npt.NDArray[np.float64],
) -> None:
    # either memory layout: ReasonTable.effects gives C order, a slice of it may not
    for layout in (effects, np.asfortranarray(effects)):
        for row, picked in zip(effects.tolist(), strongest(layout).tolist(), strict=True):
            order = sorted(range(len(row)), key=lambda i: -row[i] if row[i] == row[i] else np.inf)
            expected = [i + 1 for i in order if row[i] > MIN_EFFECT][:REASONS_PER_ROW]
            assert picked == expected + [0] * (REASONS_PER_ROW - len(expected))


def test_numeric_effects_interpolate_between_grid_points(table: ReasonTable) -> None:
    validator = Validator(SCHEMA, 10)
    n = 1
    items = [Tensor(f.name, f.datatype, [n], [v]) for f, v in
             zip(SCHEMA.features, [33.3, 0.0, 40.0, "own", 10.0], strict=True)]  # fmt: skip
    batch = validator.validate(items)
    effects = table.effects(batch.numeric, batch.codes)
    assert effects[0, 0] == pytest.approx(0.05 * (33.3 - 20), rel=1e-3)
    assert effects[0, 1:].tolist() == pytest.approx([0, 0, 0, 0], abs=1e-9)


def test_points_scaling_matches_the_definition() -> None:
    scale = PointsScale.from_scaling(
        PointsScaling(base_score=600, base_odds=50, points_to_double_odds=20)
    )
    p_at_base_odds = 1 / 51  # good:bad = 50:1
    p_double_odds = 1 / 101  # good:bad = 100:1
    got = scale.score(np.array([p_at_base_odds, p_double_odds, 0.5], dtype=np.float32))
    assert got.dtype == np.int32
    assert got.tolist() == [600, 620, round(600 - 20 * math.log2(50))]


def test_scores_stay_finite_at_probability_zero_and_one() -> None:
    scale = PointsScale.from_scaling(PointsScaling())
    got = scale.score(np.array([0.0, 1.0], dtype=np.float32))
    assert got[0] > got[1]


@pytest.mark.parametrize(
    "scaling",
    [
        {"base_score": 3e9},
        {"base_score": -3e9},
        {"points_to_double_odds": 2e8},
        {"base_score": math.nan},
        {"base_odds": math.inf},
    ],
)
def test_a_scaling_that_would_score_outside_int32_is_refused(scaling: dict[str, float]) -> None:
    """`--base_score 3e9` started, and every score came back -2147483648 (numpy's cast)."""
    with pytest.raises(ValidationError, match=r"the score output is INT32 \(-2147483648 to"):
        PointsScaling(**scaling)


def test_the_scaling_flags_are_refused_at_start_up() -> None:
    flags = ["--base_score", "3e9", "--base_odds", "50", "--points_to_double_odds", "20"]
    with pytest.raises(ValidationError, match="gives scores from 2999999289 to 3000000485"):
        cli.settings_from(cli.build_parser().parse_args(flags))


def test_the_widest_scaling_accepted_scores_every_probability_within_int32() -> None:
    """The check is no stricter than scoring: a scaling whose top score (a probability of
    default at or below the floor) is one point under INT32's maximum is served as such."""
    factor = 20 / math.log(2)
    top = math.log((1 - PROBABILITY_FLOOR) / PROBABILITY_FLOOR)
    base_score = INT32_MAX - 1 - factor * top + factor * math.log(50)
    scale = PointsScale.from_scaling(PointsScaling(base_score=base_score))
    probability = np.array([0.0, 1e-12, 0.5, 1.0], dtype=np.float32)
    scores = scale.score(probability)
    assert scores.tolist()[:2] == [INT32_MAX - 1, INT32_MAX - 1]
    assert [scale.score(probability[i : i + 1])[0] for i in range(4)] == scores.tolist()
    with pytest.raises(ValidationError):
        PointsScaling(base_score=base_score + 2)
