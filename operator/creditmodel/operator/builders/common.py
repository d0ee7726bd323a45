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


@dataclass(frozen=True)
class Claim:
    """What a write may do to an object already under a child's name."""

    adopt: list[dict[str, Any]] | None = None
    """The ownerReferences to write: an orphan of this CreditModel's, adopted."""
    refusal: str = ""
    """Why it is someone else's: left as it is."""


def claim(manifest: dict[str, Any], found: dict[str, Any]) -> Claim:
    """A child's name may already be taken. Ours (our controller reference) is written; an
    orphan with our labels for this CreditModel (its owner deleted with --cascade=orphan) is
    adopted, so deleting the CreditModel deletes it again; anything else is someone else's and
    never written, so a CreditModel cannot take over a route or a Job it did not make."""
    wanted = manifest["metadata"].get("ownerReferences") or ()
    ours = next((ref for ref in wanted if ref.get("controller")), None)
    if ours is None:
        return Claim()
    meta = found.get("metadata") or {}
    refs = list(meta.get("ownerReferences") or ())
    controller = next((ref for ref in refs if ref.get("controller")), None)
    if controller is not None:
        if controller.get("uid") == ours["uid"]:
            return Claim()
        owner = f"{controller.get('kind')} {controller.get('name')} (uid {controller.get('uid')})"
        return Claim(refusal=f"it is controlled by {owner}")
    found_labels = meta.get("labels") or {}
    if (
        found_labels.get(MODEL_LABEL) == ours["name"]
        and found_labels.get("app.kubernetes.io/managed-by") == MANAGED_BY
    ):
        return Claim(adopt=[*refs, dict(ours)])
    return Claim(refusal="the operator did not make it for this CreditModel")


def literal(container: dict[str, Any]) -> dict[str, Any]:
    """`container` with every `$` of its args and env values written `$$`: the kubelet expands
    `$(NAME)` there to the container's variable NAME (the storage Secret's keys among them), so a
    spec string such as a training target `$(AWS_SECRET_ACCESS_KEY)` would reach the command,
    and its error message the CreditModel's status, as the secret. `$$` reaches it as `$`."""

    def escape(text: str) -> str:
        return text.replace("$", "$$")

    escaped = dict(container)
    escaped["args"] = [escape(arg) for arg in container.get("args", [])]
    escaped["env"] = [
        {**var, "value": escape(var["value"])} if "value" in var else var
        for var in container.get("env", [])
    ]
    return escaped


def as_the_command_sees(arg: str) -> str:
    """An argument `literal` wrote, as the kubelet hands it to the command: `$$` is `$`."""
    return arg.replace("$$", "$")


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
