"""Training Jobs: the outcome of the running one, and whether a new one starts (initially, on the
schedule, or on a drift signal that drift.py let through). One Job at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from creditmodel.core import jobs
from creditmodel.core.jobs import ExitCode
from creditmodel.operator import builders
from creditmodel.operator.model import Desired, Status, TrainingResult, TrainingStatus, parse_time
from creditmodel.operator.rollout.values import (
    CreditModel,
    DriftReason,
    Event,
    JobState,
    Observations,
    Outcome,
    normal,
    timestamp,
)

EXIT_REASONS = {
    ExitCode.BAD_INPUT: "BadInput",
    ExitCode.GATE_FAILED: "GatesFailed",
    ExitCode.STORAGE: "StorageError",
}
"""The status reason of each creditmodel-train exit code; any other code is a TrainingError."""


def training_failure(name: str, job: JobState) -> tuple[str, str, str]:
    """(result, reason, message) of a failed training Job: creditmodel-train's own account from
    the termination message when there is one, else the Job controller's condition."""
    summary = jobs.parse(job.termination)
    if summary is None or summary.exit_code is None:  # not creditmodel-train's message
        return (
            "Failed",
            job.reason or ("JobMissing" if job.phase == "Missing" else "JobFailed"),
            job.message or f"training Job {name} {job.phase.lower()}",
        )
    code = summary.code
    reason = EXIT_REASONS.get(code, "TrainingError") if code is not None else "TrainingError"
    failed = summary.failed_gates
    detail = f"failed gates: {', '.join(failed)}" if failed else summary.error or ""
    message = f"Job {name}: creditmodel-train exited {summary.exit_code}"
    message += f": {detail}" if detail else ""
    return ("GatesFailed" if reason == "GatesFailed" else "Failed", reason, message)


def follow(model: CreditModel, observed: Observations, status: Status, now: datetime) -> Outcome:
    """A finished Job becomes status.training.lastResult; a published bundle whose gates passed
    becomes the desired version."""
    job, name = observed.job, status.training.job_name
    if name is None or job is None:
        return Outcome(status)
    status = as_the_job_publishes(status, job)
    if job.phase == "Active":
        return Outcome(status)
    finished = timestamp(now)
    desired = status.desired
    if job.phase == "Succeeded":
        result, desired = _trained(observed, status, name, finished)
    else:
        outcome, reason, message = training_failure(name, job)
        result = TrainingResult(
            result="GatesFailed" if outcome == "GatesFailed" else "Failed",
            job_name=name,
            reason=reason,
            message=message,
            finished_at=finished,
        )
    training = status.training.model_copy(
        update={"job_name": None, "started_at": None, "last_result": result}
    )
    event = Event(
        "Normal" if result.result == "Succeeded" else "Warning",
        f"Training{result.result}",
        result.message,
    )
    return Outcome(status.model_copy(update={"training": training, "desired": desired}), (event,))


def as_the_job_publishes(status: Status, job: JobState) -> Status:
    """status.training naming the version and bundle the Job publishes. The Job's name is the
    run's, but a Job found under it may have been started by an earlier pass (an operator that
    died between creating it and writing the status plans another version on its next pass) or
    for a deleted owner (orphaned, then adopted): it publishes what its own arguments say."""
    if job.publishes is None:
        return status
    version, uri = job.publishes
    training = status.training.model_copy(update={"version": version, "bundle_uri": uri})
    return status.model_copy(update={"training": training})


def _trained(
    observed: Observations, status: Status, name: str, finished: str
) -> tuple[TrainingResult, Desired | None]:
    trained = observed.trained
    uri = status.training.bundle_uri
    if trained is None or trained.error or trained.version is None:
        detail = trained.error if trained else "manifest not read"
        return TrainingResult(
            result="Failed",
            job_name=name,
            bundle_uri=uri,
            reason="BundleUnreadable",
            message=f"Job {name} succeeded but its bundle is unusable: {detail}",
            finished_at=finished,
        ), status.desired
    if not trained.gates_passed:
        return TrainingResult(
            result="GatesFailed",
            job_name=name,
            version=trained.version,
            bundle_uri=trained.bundle_uri,
            reason="GatesFailed",
            message=f"version {trained.version} failed its quality gates; not rolled out",
            finished_at=finished,
        ), status.desired
    desired = Desired(
        version=trained.version,
        bundle_uri=trained.bundle_uri,
        source="training",
        spec_bundle_uri=status.desired.spec_bundle_uri if status.desired else None,
    )
    return TrainingResult(
        result="Succeeded",
        job_name=name,
        version=trained.version,
        bundle_uri=trained.bundle_uri,
        reason="Published",
        message=f"Job {name} published version {trained.version}",
        finished_at=finished,
    ), desired


@dataclass(frozen=True)
class Started:
    status: Status
    job: dict[str, Any] | None = None
    events: tuple[Event, ...] = ()


def due(model: CreditModel, status: Status, now: datetime) -> Literal["Initial", "Schedule"] | None:
    """Why a Job starts without a drift signal: nothing published yet, or the schedule."""
    spec, last = model.spec.training, status.training.last_result
    if spec is None:
        return None
    if last is None and status.stable is None:
        return "Initial"  # nothing published: a spec bundle would be the stable by now
    if spec.schedule_seconds > 0:
        since = parse_time(last.finished_at if last else model.created_at)
        if now - since >= timedelta(seconds=spec.schedule_seconds):
            return "Schedule"
    return None


def start(
    model: CreditModel,
    status: Status,
    now: datetime,
    drift: tuple[DriftReason, str] | None = None,
) -> Started:
    """Start the next run when one is due and none runs; `drift` is a drift signal that drift.py
    let through, with the words that explain it."""
    spec, training = model.spec.training, status.training
    if spec is None or training.job_name:
        return Started(status)  # one Job at a time
    reason, detail = drift or (due(model, status, now), "")
    if reason is None:
        return Started(status)
    run = training.runs + 1
    started = timestamp(now)
    version = builders.training_version(run, started)
    output = f"{spec.output_uri.rstrip('/')}/{version}"
    stable = status.stable.version if status.stable else None
    new = TrainingStatus(
        runs=run,
        job_name=builders.training_job_name(model.name, run),
        version=version,
        bundle_uri=output,
        started_at=started,
        reason=reason,
        drift_retrained_for=stable if drift else training.drift_retrained_for,
        drift_retrained_at=started if drift else training.drift_retrained_at,
        last_result=training.last_result,
    )
    job = builders.build_training_job(model.owner, model.spec, run, version, output)
    event = normal("TrainingStarted", f"Job {new.job_name} ({detail or reason.lower()})")
    return Started(status.model_copy(update={"training": new}), job, (event,))
