"""Manual controls, the action annotation: promote, abort, pause, resume, rollback. Each is acted
on in the pass that sees it and then removed; one that cannot be carried out is refused with a
Warning Event and an entry in the history, and changes nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from creditmodel.operator.model import Rejected, Status
from creditmodel.operator.rollout import canary, history
from creditmodel.operator.rollout.observe import serving_names
from creditmodel.operator.rollout.values import (
    ACTIONS,
    CreditModel,
    Event,
    Observations,
    Outcome,
    normal,
    timestamp,
    warning,
)


@dataclass(frozen=True)
class Acted:
    status: Status
    events: tuple[Event, ...] = ()
    clear: bool = False
    """The annotation was handled (done or refused): the adapter removes it."""


def act(model: CreditModel, observed: Observations, status: Status, now: datetime) -> Acted:
    action = model.action
    if action is None:
        return Acted(status)
    if action not in ACTIONS:
        expected = ", ".join(ACTIONS)
        shown = repr(action[:64]) + (f" ({len(action)} characters)" if len(action) > 64 else "")
        message = f"action {shown} is not one of {expected}; ignored"
        refused = refuse(status, now, "UnknownAction", message, None)
        return Acted(refused.status, refused.events, clear=True)
    handlers = {
        "promote": promote,
        "abort": abort,
        "pause": pause,
        "resume": resume,
        "rollback": rollback,
    }
    done = handlers[action](model, observed, status, now)
    return Acted(done.status, done.events, clear=True)


def refuse(status: Status, now: datetime, reason: str, message: str, to: str | None) -> Outcome:
    recorded = history.record(status, now, "Refused", reason, message, to)
    return Outcome(recorded, (warning(reason, message),))


def promote(model: CreditModel, observed: Observations, status: Status, now: datetime) -> Outcome:
    """Promote the canary now, skipping the remaining steps: only a Ready one."""
    running = status.canary
    if running is None:
        return refuse(status, now, "PromoteRefused", "promote: no canary to promote", None)
    wanted = status.desired
    if wanted is not None and wanted.bundle_uri != running.bundle_uri:
        # The spec (or a training run) has moved on this pass; the canary is about to be replaced.
        message = (
            f"promote refused: canary {running.version} is no longer the desired version"
            f" ({wanted.version}); {canary.serving(status)} keeps serving"
        )
        return refuse(status, now, "PromoteRefused", message, running.version)
    _, name = serving_names(model, status)
    if not (name and observed.ready.get(name, False)):
        message = (
            f"promote refused: canary {running.version} is not Ready;"
            f" {canary.serving(status)} keeps serving"
        )
        return refuse(status, now, "PromoteRefused", message, running.version)
    return canary.promote(
        status, running, now, "ManualPromotion", "promoted by the action annotation"
    )


def abort(model: CreditModel, observed: Observations, status: Status, now: datetime) -> Outcome:
    """Roll the canary back: all traffic to the stable (as soon as it is Ready)."""
    running = status.canary
    if running is None:
        return refuse(status, now, "AbortRefused", "abort: no canary to abort", None)
    return canary.reject(
        status, running, now, "Aborted", "ManualAbort", "aborted by the action annotation"
    )


def pause(model: CreditModel, observed: Observations, status: Status, now: datetime) -> Outcome:
    """Hold the rollout where it is: no analysis, no step, no timeout, until `resume`."""
    since = status.paused_at or timestamp(now)
    message = "rollout paused by the action annotation (resume with action=resume)"
    to = status.canary.version if status.canary else None
    recorded = history.record(status, now, "Paused", "ManualPause", message, to)
    return Outcome(recorded.model_copy(update={"paused_at": since}), (normal("Paused", message),))


def resume(model: CreditModel, observed: Observations, status: Status, now: datetime) -> Outcome:
    message = "rollout resumed by the action annotation"
    if model.spec.rollout.paused:
        message += "; spec.rollout.paused is still true and holds it"
    to = status.canary.version if status.canary else None
    recorded = history.record(status, now, "Resumed", "ManualResume", message, to)
    return Outcome(recorded.model_copy(update={"paused_at": None}), (normal("Resumed", message),))


def rollback(model: CreditModel, observed: Observations, status: Status, now: datetime) -> Outcome:
    """Back to the stable before the last promotion, from its published bundle (no retraining):
    it becomes the stable again, the current one drains and is rejected (not rolled out again
    until the spec names it again). Traffic moves once the previous version is Ready."""
    previous, current = status.previous_stable, status.stable
    if status.canary is not None:
        message = f"rollback: canary {status.canary.version} is in progress; abort it first"
        return refuse(status, now, "RollbackRefused", message, None)
    if previous is None or current is None:
        message = "rollback: no previous stable version to roll back to"
        return refuse(status, now, "RollbackRefused", message, None)
    message = f"{current.version} rolled back to the previous stable {previous.version}"
    recorded = history.record(status, now, "Reverted", "ManualRollback", message, previous.version)
    update = {
        "stable": previous,
        "previous_stable": None,
        "rejected": Rejected(
            version=current.version,
            bundle_uri=current.bundle_uri,
            reason="ManualRollback: rolled back to the previous stable by the action annotation",
        ),
        "draining": canary.draining(status, current, previous),
    }
    return Outcome(recorded.model_copy(update=update), (warning("RolledBackToPrevious", message),))
