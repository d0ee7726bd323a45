"""Builders of CreditModel views for the pure unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from creditmodel.operator.model import Spec, Status
from creditmodel.operator.rollout import CreditModel, Plan, timestamp

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BUNDLE_V1 = "s3://bundles/german/v1"
BUNDLE_V2 = "s3://bundles/german/v2"


def spec(**overrides: Any) -> Spec:
    document: dict[str, Any] = {
        "model": {"bundleURI": BUNDLE_V1},
        "rollout": {
            "gateway": {"name": "gw", "namespace": "gateway-system"},
            "steps": [10, 50],
            "intervalSeconds": 60,
            "analysis": {"maxFailedChecks": 2},
        },
        "storage": {"endpoint": "http://minio:9000", "secretName": "s3"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    return Spec.model_validate(document).with_default_images("predictor:test", "training:test")


def model(
    the_spec: Spec | None = None,
    status: Status | None = None,
    action: str | None = None,
    generation: int = 1,
) -> CreditModel:
    return CreditModel(
        name="german",
        namespace="risk",
        uid="uid-1",
        generation=generation,
        created_at=timestamp(T0),
        spec=the_spec or spec(),
        status=status or Status(),
        action=action,
    )


def after(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def advance(current: CreditModel, plan: Plan, **changes: Any) -> CreditModel:
    """The object as the next step sees it: the plan's status written back."""
    values = {
        "name": current.name,
        "namespace": current.namespace,
        "uid": current.uid,
        "generation": current.generation,
        "created_at": current.created_at,
        "spec": current.spec,
        "status": plan.status,
        "action": current.action,
    }
    values.update(changes)
    return CreditModel(**values)
