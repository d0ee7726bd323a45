"""What the operator reads of a CreditModel body: the state machine's typed view of it (or which
part cannot be read, and why), and a digest of its status that tells a watch event of the
operator's own write from someone's edit."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from creditmodel.operator import rollout
from creditmodel.operator.model import ACTION_ANNOTATION, Spec, Status
from creditmodel.operator.settings import OperatorSettings


class UnreadableError(Exception):
    """The spec or the status stored for a CreditModel fails the operator's model."""

    def __init__(self, part: rollout.Part, error: ValidationError) -> None:
        super().__init__(part)
        self.part, self.error = part, error


def view(body: dict[str, Any], config: OperatorSettings) -> rollout.CreditModel:
    meta = body["metadata"]
    action = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
    try:
        spec = Spec.model_validate(body.get("spec") or {}).with_default_images(
            config.predictor_image, config.training_image
        )
    except ValidationError as exc:
        raise UnreadableError("spec", exc) from None
    try:
        status = Status.model_validate(body.get("status") or {})
    except ValidationError as exc:  # a hand edit (kubectl edit --subresource=status)
        raise UnreadableError("status", exc) from None
    return rollout.CreditModel(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        generation=meta.get("generation", 1),
        created_at=meta.get("creationTimestamp") or rollout.timestamp(datetime.now(UTC)),
        spec=spec,
        status=status,
        action=action,
    )


STATUSES_KEPT = 3  # a watch event of our write before last is ours too, not an edit
Key = tuple[str, str]  # (namespace, name), as readiness.Key


def status_digest(body: Mapping[str, Any]) -> int:
    """A CreditModel's status, small enough to keep for a thousand of them."""
    return hash(orjson.dumps(body.get("status") or {}, option=orjson.OPT_SORT_KEYS))


def status_edited(
    statuses: Mapping[Key, tuple[int, ...]], key: Key, body: Mapping[str, Any]
) -> bool:
    """Whether a watch event shows a status this process neither wrote nor read: someone's
    `kubectl edit --subresource=status`. It wakes the loop, which would otherwise meet the
    edit only at the next full resync, ten minutes on."""
    known = statuses.get(key)
    return known is not None and status_digest(body) not in known
