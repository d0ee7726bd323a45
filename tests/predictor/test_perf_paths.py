"""The single-row fast paths (one_row.OneRowValidator, the one-row branches of ReasonTable.reasons
and PointsScale.score) give exactly what the array paths give: the same columns, dtypes and bits,
the same reason codes, the same scores; and they refuse nothing themselves (a row they do not
take goes down the array path, which names the problem)."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from creditmodel.predictor.engine import LoadedBundle
from creditmodel.predictor.errors import RequestError
from creditmodel.predictor.one_row import OneRowValidator
from creditmodel.predictor.scoring import PointsScale
from creditmodel.predictor.settings import PointsScaling
from creditmodel.predictor.validation import Tensor, Validator
from tests.predictor.conftest import TrainedBundle

pytestmark = pytest.mark.unit


def _array_path(validator: Validator, tensors: list[Tensor]) -> Any:
    """Validator.validate without its one-row shortcut."""
    shortcut = validator._one_row
    validator._one_row = OneRowValidator.__new__(OneRowValidator)
    validator._one_row.enabled = False
    try:
        return validator.validate(tensors)
    finally:
        validator._one_row = shortcut


def _odd_value(rng: random.Random, feature: Any) -> Any:
    low = feature.minimum if feature.minimum is not None else -1e6
    high = feature.maximum if feature.maximum is not None else 1e6
    return rng.choice(
        [low, high, low - 1, high + 1, math.nan, math.inf, True, "3", 2**60, -0.0, 7, 1e39]
    )


def _row(rng: random.Random, champion: TrainedBundle) -> list[Tensor]:
    index = rng.randrange(len(champion.applicants))
    rows = champion.rows(1, index)
    tensors = []
    for feature in champion.bundle.schema.features:
        value = rows[feature.name][0]
        if rng.random() < 0.08:
            value = (
                _odd_value(rng, feature)
                if feature.kind == "numeric"
                else rng.choice(["nope", b"x", 3, None])
            )
        shape: list[Any] = (
            rng.choice([[1], [1, 1]])
            if rng.random() > 0.03
            else rng.choice([[True], [1, True], [1, 1.0]])
        )
        data = [value] if rng.random() > 0.01 else rng.choice([[[value]], [[[value]]]])
        tensors.append(Tensor(feature.name, feature.datatype, shape, data))
    if rng.random() < 0.3:
        rng.shuffle(tensors)
    if rng.random() < 0.03:
        tensors.append(tensors[0])
    elif rng.random() < 0.03:  # a name twice, another missing: as many inputs as features
        tensors[-1] = tensors[0]
    if rng.random() < 0.02:  # a name that is no string (JSON can carry any value there)
        spoiled = rng.randrange(len(tensors))
        tensors[spoiled] = Tensor(rng.choice([["x"], 3, None]), *_parts(tensors[spoiled]))
    return tensors


def _parts(tensor: Tensor) -> tuple[Any, Any, Any]:
    return tensor.datatype, tensor.shape, tensor.data


def test_one_row_validation_is_the_array_path_value_for_value(champion: TrainedBundle) -> None:
    validator = Validator(champion.bundle.schema, 100)
    one = OneRowValidator(champion.bundle.schema)
    rng = random.Random(14)
    taken = 0
    for _ in range(1500):
        tensors = _row(rng, champion)
        row = one.validate(tensors)
        try:
            expected = _array_path(validator, tensors)
        except RequestError:
            assert row is None, tensors
            continue
        if row is None:
            continue
        taken += 1
        columns, numeric, codes = row
        assert list(columns) == list(expected.columns)
        for name, column in columns.items():
            want = expected.columns[name]
            assert (column.dtype, column.shape) == (want.dtype, want.shape), name
            assert column.tolist() == want.tolist(), name
            assert column.tobytes() == want.tobytes() or column.dtype == object, name
        assert numeric.dtype == expected.numeric.dtype
        assert numeric.tobytes() == expected.numeric.tobytes()
        assert codes.dtype == expected.codes.dtype
        assert codes.tobytes() == expected.codes.tobytes()
    assert taken > 400


def test_one_row_reasons_and_scores_are_the_array_paths(champion: TrainedBundle) -> None:
    loaded = LoadedBundle(champion.bundle, 5000)
    batch = loaded.validator.validate(
        [Tensor(t["name"], t["datatype"], t["shape"], t["data"]) for t in champion.v2_inputs(1000)]
    )
    for model in loaded.variants.values():
        table = model.reason_table
        rng = np.random.default_rng(14)
        # the applicants, then values off every grid point and outside every range
        numeric = np.concatenate(
            [batch.numeric, batch.numeric + rng.normal(0, 50, batch.numeric.shape)]
        )
        codes = np.concatenate([batch.codes, batch.codes])
        together = table.reasons(numeric, codes)
        for index in range(numeric.shape[0]):
            alone = table.reasons(numeric[index : index + 1], codes[index : index + 1])
            assert alone.dtype == object
            assert alone.shape == (1, 4)
            assert alone[0].tolist() == together[index].tolist()
        probability = model.probability(batch.columns, batch.codes)
        for scaling in (PointsScaling(), PointsScaling(base_score=512.3, base_odds=7.7)):
            scale = PointsScale.from_scaling(scaling)
            scores = scale.score(probability)
            alone_scores = [scale.score(probability[i : i + 1]) for i in range(len(probability))]
            assert all(s.dtype == np.int32 for s in alone_scores)
            assert np.concatenate(alone_scores).tolist() == scores.tolist()
