"""Conditions (Ready, Progressing, Degraded, Training, and kstatus's Reconciling and Stalled) and
the phase, from the status a pass ends with and what it observed. lastTransitionTime moves only when
a condition's status flips.

Reconciling and Stalled follow the kstatus conventions (sigs.k8s.io/cli-utils/pkg/kstatus) that
Flux and `kstatus`-based tools read, abnormal-true: Stalled=True when the operator cannot reach the
spec without a change from outside (it mirrors Degraded); otherwise Reconciling=True while it is
still working towards it (a rollout, deployment, drain or training in progress, or nothing Ready)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from creditmodel.operator.model import Condition, Phase, Status
from creditmodel.operator.rollout.observe import paused, serving_names
from creditmodel.operator.rollout.values import (
    HELD_REASON,
    ChildRefusal,
    CreditModel,
    Observations,
    not_ready_since,
    seconds_since,
    timestamp,
)

ORDER = {"Ready": 0, "Progressing": 1, "Degraded": 2, "Training": 3, "Reconciling": 4, "Stalled": 5}
State = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Problems:
    """What a pass found wrong that status does not keep by itself."""

    bundle: str | None = None
    """spec.model.bundleURI unusable."""
    spec: str | None = None
    """A spec field the operator cannot act on (the drift schedule, a namespace too long)."""
    refused: ChildRefusal | None = None
    """A serving child the API server would not store."""
    undeployable: str | None = None
    """Why nothing can be deployed at all (a namespace too long for any InferenceService name):
    no version is deploying, so Ready and Progressing say this instead."""
    stuck: str | None = None
    """The stable has not been Ready for longer than the Ready timeout (a first version that
    never came up, or one whose pods stopped passing readiness)."""


def conditions(
    model: CreditModel,
    observed: Observations,
    status: Status,
    shares: Mapping[str, int],
    problems: Problems,
    now: datetime,
    ready_timeout: float,
) -> Status:
    stable_name, _ = serving_names(model, status)
    stable_ready = bool(status.stable and observed.ready.get(stable_name, False))
    blocked = None if stable_ready else problems.undeployable
    late = None if stable_ready else overdue(status, now, ready_timeout)
    if late is not None:
        version, waited = late
        said = _kserve_says(observed.waiting, stable_name)
        stuck = (
            f"{version} not Ready for {waited:.0f}s, longer than the Ready timeout"
            f" ({ready_timeout:g}s){said}"
        )
        problems = replace(problems, stuck=stuck)
    elif not stable_ready and shares.get(stable_name, 0) > 0:  # traffic.held (so a stable)
        said = _kserve_says(observed.waiting, stable_name)
        version = getattr(status.stable, "version", stable_name)
        stuck = f"{version} not Ready{said}; its ready pods keep the traffic"
        problems = replace(problems, stuck=stuck)  # traffic.held: Degraded now, not at the timeout
    found = [
        ready(model, status, stable_ready, shares, observed.waiting, blocked),
        progressing(model, status, stable_ready, observed.waiting, blocked),
        degraded(status, problems),
        training(status),
    ]
    found += kstatus(found[0], found[1], found[2], model.generation)
    kept = {c.type: c for c in status.conditions}
    updated = [
        _condition(kept.get(kind), kind, state, reason, message, model.generation, now)
        for kind, state, reason, message in found
    ]
    others = [c for c in status.conditions if c.type not in ORDER]
    done = status.model_copy(update={"conditions": [*updated, *others]})
    return done.model_copy(
        update={"observed_generation": model.generation, "phase": phase(done, stable_ready)}
    )


Found = tuple[str, State, str, str]


def overdue(status: Status, now: datetime, ready_timeout: float) -> tuple[str, float] | None:
    """The stable's version and the seconds it has not been Ready for, once that is longer than
    `ready_timeout` (from the Ready condition's last transition); None before, or while Ready."""
    found = not_ready_since(status)
    if found is None:
        return None
    version, since = found
    waited = seconds_since(since, now)
    return (version, waited) if waited >= ready_timeout else None


Part = Literal["spec", "status"]
# What a status the operator cannot read may have written over: only the fields that report it.
_REPORTING = ("observedGeneration", "phase", "conditions")


def describe_errors(error: ValidationError, limit: int = 5, part: Part = "spec") -> str:
    """pydantic's errors as `<part>.<field>: <problem>`, bounded (the values are not quoted)."""
    errors = error.errors()
    parts = [
        f"{part}.{'.'.join(map(str, e['loc']))}: {e['msg']}".replace(f"{part}.: ", f"{part}: ")
        for e in errors[:limit]
    ]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return ("; ".join(parts) + more)[:1024]


def unreadable(
    stored: Mapping[str, Any], part: Part, message: str, generation: int, now: datetime
) -> dict[str, Any]:
    """The status document to write when the spec or the status cannot be read: Degraded and
    Stalled naming the fields. A status that cannot be read is not replaced by an empty one:
    its stable, canary and draining versions are what serving runs on, and an empty status made
    the next pass take the canary for a new stable and delete the old one at once. Only the
    fields that report the problem are written; the rest stays as stored until someone fixes it,
    and nothing is reconciled meanwhile."""
    try:
        current = Status.model_validate(stored)
    except ValidationError:
        current = Status()  # for its conditions only: nothing else of it is written
    updated = unreadable_spec(current, generation, message, now, part).dump()
    return {**stored, **{key: updated[key] for key in _REPORTING}}


def unreadable_spec(
    status: Status, generation: int, message: str, now: datetime, part: Part = "spec"
) -> Status:
    """The status of an object whose spec (stored before the CRD tightened, or a CRD and operator
    of different versions) or status (hand-edited) the operator cannot read: Degraded and Stalled,
    naming the fields; the rollout state and the other conditions are kept, so serving goes on as
    it was."""
    reason = "InvalidSpec" if part == "spec" else "InvalidStatus"
    kept = {c.type: c for c in status.conditions}
    found: list[Found] = [
        ("Degraded", "True", reason, message),
        ("Reconciling", "False", "Stalled", "stalled: " + message),
        ("Stalled", "True", reason, message),
    ]
    changed = {
        kind: _condition(kept.get(kind), kind, state, reason, text, generation, now)
        for kind, state, reason, text in found
    }
    merged = [changed.pop(c.type, c) for c in status.conditions] + list(changed.values())
    merged.sort(key=lambda c: ORDER.get(c.type, len(ORDER)))
    return status.model_copy(
        update={"conditions": merged, "observed_generation": generation, "phase": "Degraded"}
    )


def _kserve_says(waiting: Mapping[str, str] | None, isvc: str | None) -> str:
    """One lookup, never the mapping's truth value: the operator's mapping is a view on the
    readiness index whose length costs a walk over every InferenceService it holds."""
    said = waiting.get(isvc) if waiting is not None and isvc else None
    return f" (KServe: {said})" if said else ""


def ready(
    model: CreditModel,
    status: Status,
    stable_ready: bool,
    shares: Mapping[str, int],
    waiting: Mapping[str, str] | None = None,
    blocked: str | None = None,
) -> Found:
    stable = status.stable
    if stable is None:
        return "Ready", "False", "NoModel", "no version published yet"
    if blocked:
        return "Ready", "False", "InvalidSpec", f"{stable.version} cannot be deployed: {blocked}"
    stable_name, _ = serving_names(model, status)
    if not stable_ready and shares.get(stable_name, 0) > 0:  # traffic.held
        said = _kserve_says(waiting, stable_name)
        message = f"InferenceService of {stable.version} not Ready{said}"
        return "Ready", "False", HELD_REASON, f"{message}; its ready pods keep the traffic"
    if not stable_ready:
        said = _kserve_says(waiting, stable_name)
        return (
            "Ready",
            "False",
            "Deploying",
            f"InferenceService of {stable.version} not Ready{said}",
        )
    share = shares.get(stable_name, 100 - status.canary_weight)
    return "Ready", "True", "Serving", f"{stable.version} serves {share}% of traffic"


def progressing(
    model: CreditModel,
    status: Status,
    stable_ready: bool,
    waiting: Mapping[str, str] | None = None,
    blocked: str | None = None,
) -> Found:
    if blocked:
        return "Progressing", "False", "InvalidSpec", f"nothing can be deployed: {blocked}"
    canary, steps = status.canary, model.spec.rollout.steps
    if canary is not None:
        where = (
            f"canary {canary.version} at {status.canary_weight}% (step"
            f" {min(canary.step, len(steps) - 1) + 1}/{len(steps)},"
            f" {canary.failed_checks} failed checks)"
        )
        last = status.history[-1] if status.history else None
        if last and last.verdict == "Refused" and last.to_version == canary.version:
            return "Progressing", "True", last.reason, f"{last.message}; {where}"
        if paused(model, status):
            return "Progressing", "True", "Paused", where
        if canary.ready_at is None:
            said = _kserve_says(waiting, serving_names(model, status)[1])
            return "Progressing", "True", "WaitingForReady", f"{where}: not Ready yet{said}"
        return "Progressing", "True", "CanaryAnalysis", where
    if status.stable is not None and not stable_ready:
        return "Progressing", "True", "Deploying", f"deploying {status.stable.version}"
    if status.draining:
        versions = ", ".join(entry.version for entry in status.draining)
        return "Progressing", "True", "Draining", f"draining {versions} at 0%"
    if status.training.job_name:
        return "Progressing", "True", "Training", "waiting for the training Job"
    return "Progressing", "False", "Stable", "no rollout in progress"


def degraded(status: Status, problems: Problems) -> Found:
    rejected, desired, last = status.rejected, status.desired, status.training.last_result
    if problems.bundle:
        return "Degraded", "True", "BundleUnavailable", problems.bundle
    if problems.spec:
        return "Degraded", "True", "InvalidSpec", problems.spec
    if problems.refused:
        refused = problems.refused
        message = f"{refused.kind} {refused.name} was not written: {refused.message}"
        return "Degraded", "True", f"{refused.kind}Refused", message
    if problems.stuck:
        return "Degraded", "True", "StableNotReady", problems.stuck
    if rejected and desired and desired.bundle_uri == rejected.bundle_uri:
        cause = rejected.reason.split(":", 1)[0]
        reason = "CanaryNotReady" if cause == "CanaryNotReady" else "RolledBack"
        return "Degraded", "True", reason, rejected.reason
    if status.stable is None and last and last.result != "Succeeded":
        return "Degraded", "True", f"Training{last.result}", last.message
    if status.drift and status.drift.cron_job_error:
        message = f"the API server refused the drift CronJob: {status.drift.cron_job_error}"
        return "Degraded", "True", "DriftCronJobRefused", message
    return "Degraded", "False", "AsExpected", "no failed rollout or unusable bundle"


def training(status: Status) -> Found:
    current = status.training
    if current.job_name:
        message = f"Job {current.job_name} training {current.version} ({current.reason})"
        return "Training", "True", "Running", message
    if current.last_result:
        last = current.last_result
        return "Training", "False", last.result, last.message
    return "Training", "False", "NotRequested", "no training run yet"


def kstatus(ready: Found, progressing: Found, degraded: Found, generation: int) -> list[Found]:
    """Reconciling and Stalled from Ready, Progressing and Degraded (kstatus: Stalled wins, and
    an object that is neither is Current once observedGeneration matches)."""
    if degraded[1] == "True":
        stalled: Found = ("Stalled", "True", degraded[2], degraded[3])
        return [("Reconciling", "False", "Stalled", "stalled: " + degraded[3]), stalled]
    not_stalled: Found = ("Stalled", "False", "AsExpected", "nothing blocks the rollout")
    for kind, state, reason, message in (progressing, ready):
        if (kind, state) in (("Progressing", "True"), ("Ready", "False")):
            return [("Reconciling", "True", reason, message), not_stalled]
    done = f"generation {generation} reconciled: {ready[3]}"
    return [("Reconciling", "False", "Reconciled", done), not_stalled]


def phase(status: Status, stable_ready: bool) -> Phase:
    condition = status.condition
    if (degraded := condition("Degraded")) and degraded.status == "True":
        return "Degraded"
    if status.training.job_name and status.stable is None:
        return "Training"
    if (progressing := condition("Progressing")) and progressing.status == "True":
        return "Progressing"
    return "Ready" if stable_ready else "Pending"


def _condition(
    current: Condition | None,
    kind: str,
    state: State,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> Condition:
    since = current.last_transition_time if current and current.status == state else None
    return Condition(
        type=kind,
        status=state,
        reason=reason,
        message=message,
        last_transition_time=since or timestamp(now),
        observed_generation=generation,
    )
