"""What every child manifest shares: ownership, labels, and the spec's storage access."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from creditmodel.operator.model import GROUP, Resources, Spec

MANAGED_BY = "creditmodel-operator"
MODEL_LABEL = f"{GROUP}/model"
VERSION_LABEL = f"{GROUP}/version"
COMPONENT_LABEL = f"{GROUP}/component"
"""predictor, training or drift: which of a CreditModel's pods this is."""


@dataclass(frozen=True)
class Owner:
    """The CreditModel the children belong to (ownerReferences make deletion cascade)."""

    name: str
    namespace: str
    uid: str
    api_version: str = f"{GROUP}/v1alpha1"
    kind: str = "CreditModel"

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def labels(owner: Owner, **extra: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "creditmodel",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        MODEL_LABEL: owner.name,
        **extra,
    }


def label_value(text: str) -> str:
    """A label-safe rendering of a version (<= 63 chars, alphanumerics at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("-._")
    return cleaned or "unknown"


def metadata(owner: Owner, name: str, extra_labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, **extra_labels),
        "ownerReferences": [owner.reference()],
    }


def storage_env(spec: Spec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    env: list[dict[str, Any]] = []
    if spec.storage.endpoint:
        env.append({"name": "S3_ENDPOINT_URL", "value": spec.storage.endpoint})
    if spec.storage.region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": spec.storage.region})
    env_from = (
        [{"secretRef": {"name": spec.storage.secret_name}}] if spec.storage.secret_name else []
    )
    return env, env_from


def resources(spec_resources: Resources) -> dict[str, Any]:
    """A container's `resources` from a spec's (empty lists left out)."""
    lists = (("requests", spec_resources.requests), ("limits", spec_resources.limits))
    return {key: dict(value) for key, value in lists if value}
