"""The rollout history in status: the last HISTORY_LIMIT decisions, so a rollout can be read back
(`kubectl describe`) after its Events have expired."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from creditmodel.operator.model import HISTORY_LIMIT, AnalysisNumbers, Decision, Status
from creditmodel.operator.rollout.values import timestamp


def record(
    status: Status,
    now: datetime,
    verdict: str,
    reason: str,
    message: str,
    to_version: str | None = None,
    numbers: Mapping[str, float] | None = None,
) -> Status:
    """`status` with one more decision, from its stable to `to_version`, oldest ones dropped."""
    decision = Decision(
        at=timestamp(now),
        from_version=status.stable.version if status.stable else None,
        to_version=to_version,
        verdict=verdict,
        reason=reason,
        message=message,
        analysis=AnalysisNumbers.model_validate(numbers) if numbers else None,
    )
    return status.model_copy(update={"history": [*status.history, decision][-HISTORY_LIMIT:]})
