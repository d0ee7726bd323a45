from __future__ import annotations

import pytest
from pydantic import ValidationError

from creditmodel.core.schema import Feature, Schema

pytestmark = pytest.mark.unit


def numeric(name: str, code: str, **extra: object) -> Feature:
    return Feature(
        name=name, kind="numeric", datatype="FP32", description=name, reason_code=code, **extra
    )


def test_schema_looks_up_features_by_name() -> None:
    schema = Schema(
        features=[numeric("age", "R01"), numeric("amount", "R02")],
        target="default",
        positive_label="bad",
    )
    assert schema.feature("amount").reason_code == "R02"
    with pytest.raises(KeyError):
        schema.feature("income")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "categorical", "datatype": "FP32", "categories": ["a"]}, "use datatype BYTES"),
        ({"kind": "categorical", "datatype": "BYTES"}, "needs categories"),
        (
            {"kind": "categorical", "datatype": "BYTES", "categories": ["a", "a"]},
            "duplicate categories",
        ),
        ({"kind": "numeric", "datatype": "BYTES"}, "use FP32 or INT64"),
        ({"kind": "numeric", "datatype": "FP32", "categories": ["a"]}, "cannot have categories"),
        (
            {"kind": "numeric", "datatype": "FP32", "minimum": 2, "maximum": 1},
            "minimum is above maximum",
        ),
        ({"kind": "numeric", "datatype": "FP32", "name": "1bad"}, "should match pattern"),
    ],
)
def test_inconsistent_features_are_rejected(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"name": "x", "description": "x", "reason_code": "R01"}
    with pytest.raises(ValidationError, match=message):
        Feature.model_validate({**base, **fields})


@pytest.mark.parametrize(
    ("features", "target", "message"),
    [
        ([], "default", "no features"),
        ([numeric("a", "R01"), numeric("a", "R02")], "default", "names must be unique"),
        ([numeric("a", "R01"), numeric("b", "R01")], "default", "reason codes must be unique"),
        ([numeric("a", "R01")], "a", "also a feature"),
    ],
)
def test_inconsistent_schemas_are_rejected(
    features: list[Feature], target: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Schema(features=features, target=target, positive_label="bad")
