"""The CRD's status schema is structural and strict (no x-kubernetes-preserve-unknown-fields): a
status field the operator writes but the schema lacks is pruned by the API server without a word,
and the state machine would start every pass from a status that lost it. So every field of the
typed status must be in the schema, at every depth."""

from __future__ import annotations

import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from creditmodel.operator.model import Status
from tests.operator.running import CRD_DIR
from tests.support.kube import load_yaml_documents

pytestmark = pytest.mark.unit


def status_schema() -> dict[str, Any]:
    (crd,) = [
        d
        for d in load_yaml_documents(CRD_DIR / "scoring.creditmodel.io_creditmodels.yaml")
        if d.get("kind") == "CustomResourceDefinition"
    ]
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    return schema


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field's type (X, X | None, list[X])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list):
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]
    return []


def missing(model: type[BaseModel], schema: dict[str, Any], path: str) -> list[str]:
    assert not schema.get("x-kubernetes-preserve-unknown-fields"), path
    if schema.get("type") == "array":
        schema = schema["items"]
    properties = schema.get("properties", {})
    found = []
    for name, field in model.model_fields.items():
        key = field.serialization_alias or field.alias or name
        if key not in properties:
            found.append(f"{path}.{key}")
            continue
        for inner in models_in(field.annotation):
            found += missing(inner, properties[key], f"{path}.{key}")
    return found


def test_every_status_field_is_in_the_crd_status_schema() -> None:
    assert missing(Status, status_schema(), "status") == []
