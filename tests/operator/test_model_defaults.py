"""The CRD's defaults and the operator's typed spec (operator/model.py) agree, field by field: the
API server writes the CRD's into every stored CreditModel, the operator's apply to a spec it never
saw (tests, tooling, a field the API server has not defaulted yet), and both must mean the same.

The walk follows the CRD's openAPIV3Schema under `spec` and the pydantic models side by side, so
that a new default on either side is checked without a change here."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from creditmodel.operator.model import Spec
from tests.support.kube import load_yaml_documents
from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.unit

CRD = REPO_ROOT / "manifests" / "crd" / "scoring.creditmodel.io_creditmodels.yaml"
UNSET = object()


@dataclass(frozen=True)
class Pair:
    path: str
    schema: dict[str, Any]
    model: type[BaseModel]
    field: str
    info: FieldInfo


def spec_schema() -> dict[str, Any]:
    (crd,) = load_yaml_documents(CRD)
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def json_name(name: str, info: FieldInfo) -> str:
    alias = info.serialization_alias or info.alias
    return alias if isinstance(alias, str) else to_camel(name)


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model of a field typed `Model` or `Model | None`."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    for candidate in (annotation, *options):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def pairs(schema: dict[str, Any], model: type[BaseModel], path: str = "spec") -> Iterator[Pair]:
    """Every (CRD property, model field) under `schema`, depth first."""
    by_json = {json_name(name, info): (name, info) for name, info in model.model_fields.items()}
    for prop, sub in schema.get("properties", {}).items():
        assert prop in by_json, f"{path}.{prop} is in the CRD but not in {model.__name__}"
        name, info = by_json[prop]
        yield Pair(f"{path}.{prop}", sub, model, name, info)
        inner = nested_model(info.annotation)
        if inner is not None and "properties" in sub:
            yield from pairs(sub, inner, f"{path}.{prop}")
    for json, (name, _) in by_json.items():
        assert json in schema.get("properties", {}), f"{model.__name__}.{name}: not in the CRD"


def dumped(pair: Pair, value: Any) -> Any:
    adapter: TypeAdapter[Any] = TypeAdapter(pair.info.annotation)
    return adapter.dump_python(value, mode="json", by_alias=True, exclude_none=True)


def typed_default(pair: Pair) -> Any:
    if pair.info.is_required():
        return UNSET
    return dumped(pair, pair.info.get_default(call_default_factory=True))


def crd_default(pair: Pair) -> Any:
    if "default" not in pair.schema:
        return UNSET
    adapter: TypeAdapter[Any] = TypeAdapter(pair.info.annotation)
    return dumped(pair, adapter.validate_python(pair.schema["default"]))


def empty(value: Any) -> bool:
    """No value at all: None, an empty list, or an object of empty values (Resources())."""
    if isinstance(value, dict):
        return all(empty(v) for v in value.values())
    return value is UNSET or value is None or value == []


PAIRS = list(pairs(spec_schema(), Spec))


def test_the_walk_covers_the_spec() -> None:
    paths = {pair.path for pair in PAIRS}
    assert {"spec.predictor.resources", "spec.monitoring.resources"} <= paths
    assert "spec.rollout.analysis.maxScorePSI" in paths
    assert sum("default" in pair.schema for pair in PAIRS) >= 25


@pytest.mark.parametrize("pair", [p for p in PAIRS if "default" in p.schema], ids=lambda p: p.path)
def test_every_crd_default_is_the_typed_default(pair: Pair) -> None:
    assert typed_default(pair) == crd_default(pair)


@pytest.mark.parametrize(
    "pair", [p for p in PAIRS if "default" not in p.schema], ids=lambda p: p.path
)
def test_a_typed_default_is_declared_in_the_crd(pair: Pair) -> None:
    """A value the operator assumes when the field is absent is shown to users by the API
    server (`kubectl get -o yaml`), so it must be the CRD's default; only "unset" may differ."""
    assert empty(typed_default(pair)), f"{pair.path}: {typed_default(pair)} but no CRD default"


def typed_pattern(pair: Pair) -> str | None:
    for metadata in pair.info.metadata:
        pattern = getattr(metadata, "pattern", None)
        if isinstance(pattern, str):
            return pattern
    return None


@pytest.mark.parametrize(
    "pair", [p for p in PAIRS if typed_pattern(p) is not None], ids=lambda p: p.path
)
def test_every_typed_pattern_is_the_crds(pair: Pair) -> None:
    """A value the API server admits must be one the operator can read, and the other way round."""
    assert pair.schema.get("pattern") == typed_pattern(pair)
