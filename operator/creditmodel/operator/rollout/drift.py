"""Drift: the drift job's reports recorded in status, the API server's answer to the drift CronJob
(an observation, reported in status), and the one drift-retrain policy that both drift signals go
through: the stable's live score PSI (Prometheus) and a new drift report (the CronJob's
latest.json)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from creditmodel.core.drift import DriftSummary
from creditmodel.operator import validation
from creditmodel.operator.model import DriftStatus, Status, parse_time
from creditmodel.operator.rollout.values import (
    CreditModel,
    CronJobWrite,
    DriftReason,
    DriftReport,
    Event,
    Observations,
    normal,
    stamp,
    timestamp,
    warning,
)

DEFAULT_COOLDOWN_SECONDS = 86400
"""spec.monitoring.retrainCooldownSeconds's default, for the live signal when monitoring is off."""


def migrate(status: Status) -> Status:
    """Operator 0.1.0 kept the drift retrain clock in status.drift.lastRetrainAt."""
    drift = status.drift
    if drift is None or drift.last_retrain_at is None:
        return status
    training = status.training.model_copy(
        update={"drift_retrained_at": status.training.drift_retrained_at or drift.last_retrain_at}
    )
    drift = drift.model_copy(update={"last_retrain_at": None})
    return status.model_copy(update={"training": training, "drift": drift})


def schedule_problem(model: CreditModel) -> str | None:
    """A drift schedule the CronJob controller would refuse: Degraded names it, no CronJob is
    written, serving goes on."""
    monitoring = model.spec.monitoring
    problem = validation.cron_problem(monitoring.drift_schedule) if monitoring else None
    if monitoring is None or problem is None:
        return None
    return f"spec.monitoring.driftSchedule {monitoring.drift_schedule!r}: {problem}"


# --- recording ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    status: Status
    events: tuple[Event, ...] = ()
    report: DriftSummary | None = None
    """A report that arrived in this pass: announced, and maybe a retrain, once decided."""


def record(model: CreditModel, observed: Observations, status: Status) -> Recorded:
    """status.drift from the newest report and the CronJob write; None without monitoring."""
    if model.spec.monitoring is None:
        return Recorded(status.model_copy(update={"drift": None}))
    current = status.drift or DriftStatus()
    drift, events, report = _report(current, observed.drift_report)
    drift, refused = _cronjob(drift, observed.cronjob)
    return Recorded(
        status.model_copy(update={"drift": None if drift == DriftStatus() else drift}),
        (*events, *refused),
        report,
    )


def _report(
    current: DriftStatus, report: DriftReport | None
) -> tuple[DriftStatus, tuple[Event, ...], DriftSummary | None]:
    if report is None:
        return current, (), None
    if report.error is not None:
        unchanged = current.error == report.error
        events = () if unchanged else (warning("DriftReportUnreadable", report.error),)
        return current.model_copy(update={"error": report.error}), events, None
    summary = report.summary
    if summary is None or stamp(summary.created_at) == current.report_created_at:
        return current.model_copy(update={"error": None}), (), None
    recorded = DriftStatus(
        bundle_version=summary.bundle_version,
        score_psi=summary.score_psi,
        score_status=summary.score_status,
        rows=summary.rows,
        window_start=stamp(summary.window_start),
        window_end=stamp(summary.window_end),
        top_drifting_features=list(summary.top_drifting_features),
        report_uri=summary.report_uri,
        report_created_at=stamp(summary.created_at),
        message=summary.message,
        cron_job_error=current.cron_job_error,
    )
    return recorded, (), summary


def _cronjob(
    drift: DriftStatus, write: CronJobWrite | None
) -> tuple[DriftStatus, tuple[Event, ...]]:
    """A refusal is kept in status (Degraded names it) and announced once; an accepted write
    clears it. None (not written since the operator started) keeps what status says."""
    if write is None or write.refused == drift.cron_job_error:
        return drift, ()
    events = (warning("DriftCronJobRefused", write.refused),) if write.refused else ()
    return drift.model_copy(update={"cron_job_error": write.refused}), events


# --- the drift-retrain policy ---------------------------------------------------------------------


def blocked(model: CreditModel, status: Status, version: str, now: datetime) -> str | None:
    """Why a drift signal about `version` starts no retrain; None: it does. The one policy for
    both signals: about the stable only, one Job at a time, never during a canary, and at most one
    drift retrain per cool-down (spec.monitoring.retrainCooldownSeconds, else a day)."""
    stable = status.stable
    if stable is None or version != stable.version:
        serving = stable.version if stable else "none"
        return f"the report is for version {version}, the stable is {serving}"
    if status.training.job_name:
        return f"training Job {status.training.job_name} is running"
    if status.canary is not None:
        return f"canary {status.canary.version} is being rolled out"
    last = status.training.drift_retrained_at
    monitoring = model.spec.monitoring
    cooldown = monitoring.retrain_cooldown_seconds if monitoring else DEFAULT_COOLDOWN_SECONDS
    if last is not None:
        until = parse_time(last) + timedelta(seconds=cooldown)
        if now < until:
            return f"cool-down until {timestamp(until)}"
    return None


def live_signal_wanted(model: CreditModel, now: datetime) -> bool:
    """Whether to ask Prometheus for the stable's live score PSI: only when it could retrain."""
    training, stable = model.spec.training, model.status.stable
    if training is None or training.retrain_on_score_psi <= 0 or stable is None:
        return False
    return blocked(model, model.status, stable.version, now) is None


@dataclass(frozen=True)
class Decided:
    retrain: tuple[DriftReason, str] | None = None
    """The signal that starts a retrain, and the words for its Event."""
    events: tuple[Event, ...] = ()


def decide(
    model: CreditModel,
    observed: Observations,
    status: Status,
    report: DriftSummary | None,
    now: datetime,
) -> Decided:
    """Announce a new report (and why it does not retrain, if it asked to); then let at most one
    signal through the policy, the report first. `status` is the one the rollout just moved to."""
    retrain: tuple[DriftReason, str] | None = None
    events: tuple[Event, ...] = ()
    monitoring = model.spec.monitoring
    if report is not None and monitoring is not None:
        threshold, psi = monitoring.retrain_on_drift_psi, report.score_psi
        asked = threshold is not None and psi is not None and psi > threshold
        why = blocked(model, status, report.bundle_version, now) if asked else None
        if asked and why is None:
            retrain = ("DriftReport", f"drift report score PSI {psi:.3f} above {threshold:g}")
        message = describe(report) + (f"; not retraining: {why}" if why else "")
        kind = warning if report.score_status == "act" else normal
        events = (kind("DriftReport", message),)
    training, measured = model.spec.training, model.status.stable
    psi = observed.stable_score_psi
    if retrain is None and training is not None and measured is not None and psi is not None:
        threshold = training.retrain_on_score_psi
        if 0 < threshold < psi and blocked(model, status, measured.version, now) is None:
            retrain = ("Drift", f"live score PSI {psi:.3f} above {threshold:g}")
    return Decided(retrain, events)


def describe(summary: DriftSummary) -> str:
    window = f"{stamp(summary.window_start)} to {stamp(summary.window_end)}"
    if summary.score_psi is None:
        return f"version {summary.bundle_version}, {window}: {summary.message or 'no predictions'}"
    top = ", ".join(summary.top_drifting_features[:5]) or "none"
    return (
        f"version {summary.bundle_version}, {window}: score PSI {summary.score_psi:.3f}"
        f" ({summary.score_status}) over {summary.rows} rows; top drifting features: {top}"
        + (f"; report {summary.report_uri}" if summary.report_uri else "")
    )
