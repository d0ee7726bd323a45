"""The canary: started when a new version is desired, at 0% until its InferenceService is Ready,
analysed every interval after that, promoted after the last step (only ever Ready), rolled back at
the failure limit or when it is not Ready in time. A version that leaves the rollout (the old
stable, a rejected, replaced or cancelled canary) goes to status.draining, never straight away."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from creditmodel.operator import analysis
from creditmodel.operator.model import (
    AnalysisRecord,
    Canary,
    Draining,
    Rejected,
    Status,
    VersionRef,
)
from creditmodel.operator.rollout import history
from creditmodel.operator.rollout.observe import analysis_due, paused, serving_names
from creditmodel.operator.rollout.values import (
    CreditModel,
    Observations,
    Outcome,
    Policy,
    normal,
    seconds_since,
    timestamp,
    warning,
)


def ref(version: VersionRef) -> VersionRef:
    return VersionRef(version=version.version, bundle_uri=version.bundle_uri)


def draining(status: Status, leaving: VersionRef | None, staying: VersionRef) -> list[Draining]:
    """status.draining with `leaving` added (once) and `staying` (now stable or canary) taken out."""
    kept = [
        entry
        for entry in status.draining
        if entry.bundle_uri != staying.bundle_uri
        and (leaving is None or entry.bundle_uri != leaving.bundle_uri)
    ]
    if leaving is None:
        return kept
    return [*kept, Draining(version=leaving.version, bundle_uri=leaving.bundle_uri)]


def serving(status: Status) -> str:
    return status.stable.version if status.stable else "none"


# --- decisions ------------------------------------------------------------------------------------


def promote(
    status: Status,
    canary: Canary,
    now: datetime,
    reason: str,
    message: str,
    numbers: Mapping[str, float] | None = None,
) -> Outcome:
    """The canary becomes the stable, the old stable drains and stays the rollback target.
    Callers have checked that the canary is Ready."""
    promoted, old = ref(canary), status.stable
    recorded = history.record(status, now, "Promoted", reason, message, canary.version, numbers)
    update = {
        "stable": promoted,
        "canary": None,
        "previous_stable": old,
        "draining": draining(status, old, promoted),
    }
    event = normal("Promoted", f"{canary.version} replaces {serving(status)} ({reason}: {message})")
    return Outcome(recorded.model_copy(update=update), (event,))


def reject(
    status: Status,
    canary: Canary,
    now: datetime,
    verdict: str,
    reason: str,
    message: str,
    numbers: Mapping[str, float] | None = None,
) -> Outcome:
    """The canary leaves the rollout: rejected (not retried until the spec names it again) and
    draining; the stable gets all the traffic back as soon as it is Ready."""
    recorded = history.record(status, now, verdict, reason, message, canary.version, numbers)
    stable = status.stable or ref(canary)
    update = {
        "canary": None,
        "rejected": Rejected(
            version=canary.version, bundle_uri=canary.bundle_uri, reason=f"{reason}: {message}"
        ),
        "draining": draining(status, canary, stable),
    }
    event = warning("RolledBack", f"{canary.version} rolled back to {serving(status)}: {message}")
    return Outcome(recorded.model_copy(update=update), (event,))


def follow_desired(model: CreditModel, status: Status, now: datetime) -> Outcome:
    """Move towards status.desired: the first version straight to stable, a new one as a canary
    (replacing a running canary of another version), back to the stable by cancelling the canary."""
    desired, stable, canary = status.desired, status.stable, status.canary
    if desired is None:
        return Outcome(status)
    target = ref(desired)
    if stable is None:
        message = f"first version {target.version} ({target.bundle_uri}) goes straight to stable"
        recorded = history.record(status, now, "Deployed", "FirstVersion", message, target.version)
        return Outcome(
            recorded.model_copy(update={"stable": target}), (normal("Deploying", message),)
        )
    if target.bundle_uri == stable.bundle_uri:
        if canary is None:
            return Outcome(status)
        message = f"desired version is the stable {target.version}"
        recorded = history.record(
            status, now, "Cancelled", "DesiredIsStable", message, canary.version
        )
        update = {"canary": None, "draining": draining(status, canary, stable)}
        return Outcome(recorded.model_copy(update=update), (normal("CanaryCancelled", message),))
    rejected = status.rejected is not None and status.rejected.bundle_uri == target.bundle_uri
    if rejected or (canary is not None and canary.bundle_uri == target.bundle_uri):
        return Outcome(status)
    return start(model, status, target, now)


def start(model: CreditModel, status: Status, target: VersionRef, now: datetime) -> Outcome:
    replaced, first = status.canary, model.spec.rollout.steps[0]
    started = timestamp(now)
    prefix = f"replaces canary {replaced.version}; " if replaced else ""
    message = f"{prefix}canary {target.version} gets {first}% once Ready (stable {serving(status)})"
    recorded = history.record(status, now, "Started", "NewVersion", message, target.version)
    update = {
        "canary": Canary(
            version=target.version,
            bundle_uri=target.bundle_uri,
            started_at=started,
            last_check_at=started,
        ),
        "draining": draining(status, replaced, target),
    }
    return Outcome(recorded.model_copy(update=update), (normal("CanaryStarted", message),))


def progress(
    model: CreditModel,
    observed: Observations,
    status: Status,
    now: datetime,
    policy: Policy,
    carried: bool,
) -> Outcome:
    """Readiness first (the analysis clock starts when the canary is first Ready; never Ready in
    time rolls it back), then one analysis check when due. A paused rollout holds, and so does
    the check of a Ready canary while the route does not carry the weights its step asks for
    (`carried` False: the route write was refused, or someone changed the route and this pass
    writes it back): the metrics would judge it at traffic it does not have, and a canary that
    kept passing at the last weight the route took would be promoted without ever carrying the
    steps after it."""
    canary = status.canary
    if canary is None:
        return Outcome(status)
    _, name = serving_names(model, status)
    ready = bool(name and observed.ready.get(name, False))
    if canary.ready_at is None and ready:
        steps = model.spec.rollout.steps
        message = (
            f"canary {canary.version} is Ready: it gets {steps[min(canary.step, len(steps) - 1)]}%"
        )
        recorded = history.record(status, now, "Ready", "CanaryReady", message, canary.version)
        first = canary.model_copy(
            update={"ready_at": timestamp(now), "last_check_at": timestamp(now)}
        )
        return Outcome(
            recorded.model_copy(update={"canary": first}), (normal("CanaryReady", message),)
        )
    if paused(model, status):
        return Outcome(status)
    if canary.ready_at is None:
        timeout = policy.ready_timeout_seconds
        if seconds_since(canary.started_at, now) < timeout:
            return Outcome(status)
        message = f"canary {canary.version} was not Ready within {timeout:g}s"
        return reject(status, canary, now, "RolledBack", "CanaryNotReady", message)
    if not analysis_due(model, now):  # (a canary started in this very pass is not Ready yet)
        return Outcome(status)
    if ready and not carried:
        return Outcome(status)  # checked once a pass finds the route carrying the step
    result = (
        observed.analysis or analysis.Result("inconclusive", "no analysis result")
        if ready
        else analysis.Result("failed", "canary InferenceService is not Ready")
    )
    return check(model, status, canary, result, now)


def check(
    model: CreditModel, status: Status, canary: Canary, result: analysis.Result, now: datetime
) -> Outcome:
    rollout, numbers, version = model.spec.rollout, result.numbers, canary.version
    update = {
        "last_check_at": timestamp(now),
        "last_analysis": AnalysisRecord(verdict=result.verdict, message=result.message),
    }
    if result.verdict == "inconclusive":
        checked = canary.model_copy(update=update)
        event = normal("AnalysisInconclusive", f"canary {version}: {result.message}")
        return Outcome(status.model_copy(update={"canary": checked}), (event,))
    if result.verdict == "failed":
        failed, limit = canary.failed_checks + 1, rollout.analysis.max_failed_checks
        if failed >= limit:
            message = f"{failed}/{limit} checks failed: {result.message}"
            return reject(status, canary, now, "RolledBack", "AnalysisFailed", message, numbers)
        message = f"canary {version} check {failed}/{limit} failed: {result.message}"
        recorded = history.record(
            status, now, "CheckFailed", "AnalysisFailed", message, version, numbers
        )
        checked = canary.model_copy(update={**update, "failed_checks": failed})
        return Outcome(
            recorded.model_copy(update={"canary": checked}), (warning("AnalysisFailed", message),)
        )
    step = canary.step + 1
    if step >= len(rollout.steps):
        return promote(status, canary, now, "AnalysisPassed", result.message, numbers)
    message = f"canary {version} at {rollout.steps[step]}%: {result.message}"
    recorded = history.record(status, now, "Advanced", "AnalysisPassed", message, version, numbers)
    advanced = canary.model_copy(update={**update, "step": step})
    return Outcome(
        recorded.model_copy(update={"canary": advanced}), (normal("CanaryAdvanced", message),)
    )
