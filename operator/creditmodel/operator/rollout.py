"""The rollout state machine: (spec, status, observations, now) -> next status, desired children,
training Job to create, Events. Pure, so every transition is unit-tested without a cluster, and
restart-safe by construction: everything it needs to continue lives in the status it returns.

Order of one step: adopt a new desired bundle (spec change or finished training), record a new
drift report, start training when due, then move the rollout: first version straight to stable,
later ones through canary steps gated by analysis, promotion after the last step, rollback at the
failure limit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from creditmodel.core.drift import DriftSummary
from creditmodel.operator import analysis, builders
from creditmodel.operator.model import (
    AnalysisRecord,
    Canary,
    Condition,
    Desired,
    DriftStatus,
    Rejected,
    Spec,
    Status,
    TrainingResult,
    TrainingStatus,
    VersionRef,
)

Action = Literal["promote", "abort"]
ACTIONS: tuple[Action, ...] = ("promote", "abort")


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class CreditModel:
    """What the state machine knows of the object: identity, spec, status, manual action."""

    name: str
    namespace: str
    uid: str
    generation: int
    created_at: str
    spec: Spec
    status: Status
    action: str | None = None

    @property
    def owner(self) -> builders.Owner:
        return builders.Owner(self.name, self.namespace, self.uid)


@dataclass(frozen=True)
class Resolved:
    """A bundle URI looked up by the adapter: its manifest's version, or why it is unusable."""

    bundle_uri: str
    version: str | None = None
    gates_passed: bool = True
    error: str | None = None


@dataclass(frozen=True)
class JobState:
    phase: Literal["Active", "Succeeded", "Failed", "Missing"]
    reason: str = ""
    message: str = ""
    termination: str | None = None
    """The training container's termination message (creditmodel-train's compact JSON summary)."""


# creditmodel-train's exit codes (training/creditmodel/training/cli.py).
EXIT_REASONS = {2: "BadInput", 3: "GatesFailed", 4: "StorageError"}


def training_failure(name: str, job: JobState) -> tuple[str, str, str]:
    """(result, reason, message) of a failed training Job: creditmodel-train's own account from
    the termination message when there is one, else the Job controller's condition."""
    default = (
        "Failed",
        job.reason or ("JobMissing" if job.phase == "Missing" else "JobFailed"),
        job.message or f"training Job {name} {job.phase.lower()}",
    )
    try:
        summary = json.loads(job.termination or "")
    except ValueError:
        return default
    if not isinstance(summary, dict):
        return default
    code = summary.get("exit_code")
    reason = EXIT_REASONS.get(code, "TrainingError") if isinstance(code, int) else "TrainingError"
    failed = [str(g) for g in summary.get("failed_gates") or []]
    detail = f"failed gates: {', '.join(failed)}" if failed else str(summary.get("error") or "")
    message = f"Job {name}: creditmodel-train exited {code}" + (f": {detail}" if detail else "")
    return ("GatesFailed" if reason == "GatesFailed" else "Failed", reason, message)


@dataclass(frozen=True)
class DriftReport:
    """The drift job's latest.json as the adapter found it: parsed, absent (both None: no report
    yet) or unreadable (store down, corrupt JSON), which never stops the serving path."""

    summary: DriftSummary | None = None
    error: str | None = None


@dataclass(frozen=True)
class Observations:
    spec_bundle: Resolved | None = None
    ready: Mapping[str, bool] = field(default_factory=dict)
    """InferenceService name -> its Ready condition is True."""
    job: JobState | None = None
    trained: Resolved | None = None
    analysis: analysis.Result | None = None
    stable_score_psi: float | None = None
    drift_report: DriftReport | None = None
    """None: not looked up in this pass (the adapter reads it at its own pace)."""


@dataclass(frozen=True)
class Needs:
    """What the adapter must look up before `reconcile` can decide."""

    resolve_bundle: str | None
    inferenceservices: tuple[str, ...]
    job: str | None
    analysis: bool
    drift: bool
    drift_report: bool = False


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Plan:
    status: Status
    children: list[dict[str, Any]]
    job: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    clear_action: bool = False

    @property
    def inferenceservice_names(self) -> set[str]:
        return {c["metadata"]["name"] for c in self.children if c["kind"] == "InferenceService"}


# --- what to observe ------------------------------------------------------------------------------


def serving_names(model: CreditModel, status: Status) -> tuple[str, str | None]:
    """The InferenceService names serving stable and canary (one name for router knative)."""
    if model.spec.rollout.router == "knative":
        return model.name, (model.name if status.canary else None)
    stable = builders.isvc_name(model.name, status.stable.bundle_uri) if status.stable else ""
    canary = builders.isvc_name(model.name, status.canary.bundle_uri) if status.canary else None
    return stable, canary


def analysis_due(model: CreditModel, now: datetime) -> bool:
    canary = model.status.canary
    if canary is None or model.spec.rollout.paused or model.action in ACTIONS:
        return False
    elapsed = now - parse_time(canary.last_check_at)
    return elapsed >= timedelta(seconds=model.spec.rollout.interval_seconds)


def needs(model: CreditModel, now: datetime) -> Needs:
    status, spec = model.status, model.spec
    uri = spec.model.bundle_uri
    resolve = (
        uri if uri and (status.desired is None or status.desired.spec_bundle_uri != uri) else None
    )
    stable, canary = serving_names(model, status)
    names = tuple(name for name in (stable, canary) if name)
    training = spec.training
    drift = bool(
        training
        and training.retrain_on_score_psi > 0
        and status.stable
        and not status.training.job_name
        and status.training.drift_retrained_for != status.stable.version
    )
    return Needs(
        resolve_bundle=resolve,
        inferenceservices=tuple(dict.fromkeys(names)),
        job=status.training.job_name,
        analysis=analysis_due(model, now),
        drift=drift,
        drift_report=bool(spec.monitoring and status.stable),
    )


def seconds_until_due(model: CreditModel, now: datetime) -> float | None:
    """When the next analysis falls due, so the adapter can sleep exactly that long."""
    canary = model.status.canary
    if canary is None or model.spec.rollout.paused:
        return None
    due = parse_time(canary.last_check_at) + timedelta(seconds=model.spec.rollout.interval_seconds)
    return max((due - now).total_seconds(), 0.0)


# --- the transition -------------------------------------------------------------------------------


class _Step:
    """One reconciliation: a mutable copy of the status plus the Events it produced."""

    def __init__(self, model: CreditModel, observed: Observations, now: datetime) -> None:
        self.model, self.spec, self.observed, self.now = model, model.spec, observed, now
        self.status = model.status.model_copy(deep=True)
        self.events: list[Event] = []
        self.job: dict[str, Any] | None = None
        self.bundle_error: str | None = None
        self.spec_error: str | None = None
        self.drift_retrain: DriftSummary | None = None
        self.clear_action = False

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(Event("Warning" if warning else "Normal", reason, message))

    # adoption ------------------------------------------------------------------------------------

    def adopt_spec_bundle(self) -> None:
        resolved = self.observed.spec_bundle
        uri = self.spec.model.bundle_uri
        if resolved is None or uri is None or resolved.bundle_uri != uri:
            return
        if resolved.error or resolved.version is None:
            self.bundle_error = f"spec.model.bundleURI {uri}: {resolved.error or 'no version'}"
            return
        if not resolved.gates_passed:
            self.bundle_error = f"spec.model.bundleURI {uri}: its manifest records failed gates"
            return
        self.status.desired = Desired(
            version=resolved.version, bundle_uri=uri, source="spec", spec_bundle_uri=uri
        )
        if self.status.rejected and self.status.rejected.bundle_uri == uri:
            self.status.rejected = None  # named again explicitly: the user asks for a new attempt
        self.event("NewVersion", f"spec asks for version {resolved.version} ({uri})")

    # drift reports -------------------------------------------------------------------------------

    def record_drift(self) -> None:
        """Record a new report in status.drift with one Event, and decide whether it retrains.
        A report is acted on once, when it arrives (its created_at changes)."""
        monitoring, report = self.spec.monitoring, self.observed.drift_report
        if monitoring is None:
            # Only the cool-down's clock outlives monitoring: turning it off and on again must not
            # let an old latest.json start a second retrain at once.
            last = self.status.drift.last_retrain_at if self.status.drift else None
            self.status.drift = DriftStatus(last_retrain_at=last) if last else None
            return
        if report is None:
            return
        current = self.status.drift or DriftStatus()
        if report.error is not None:
            if current.error != report.error:
                self.event("DriftReportUnreadable", report.error, warning=True)
            self.status.drift = current.model_copy(update={"error": report.error})
            return
        summary = report.summary
        if summary is None or _stamp(summary.created_at) == current.report_created_at:
            cleared = current.model_copy(update={"error": None})
            self.status.drift = None if cleared == DriftStatus() else cleared
            return
        self.status.drift = DriftStatus(
            bundle_version=summary.bundle_version,
            score_psi=summary.score_psi,
            score_status=summary.score_status,
            rows=summary.rows,
            window_start=_stamp(summary.window_start),
            window_end=_stamp(summary.window_end),
            top_drifting_features=list(summary.top_drifting_features),
            report_uri=summary.report_uri,
            report_created_at=_stamp(summary.created_at),
            message=summary.message,
            last_retrain_at=current.last_retrain_at,
        )
        blocked = self._drift_retrain_blocked(summary)
        if blocked is None:
            self.drift_retrain = summary
        message = _describe(summary) + (f"; not retraining: {blocked}" if blocked else "")
        self.event("DriftReport", message, warning=summary.score_status == "act")

    def _drift_retrain_blocked(self, summary: DriftSummary) -> str | None:
        """Why this report starts no retrain ('' when it is not asked to), else None."""
        monitoring, status = self.spec.monitoring, self.status
        threshold = monitoring.retrain_on_drift_psi if monitoring else None
        if threshold is None or summary.score_psi is None or summary.score_psi <= threshold:
            return ""
        if status.stable is None or summary.bundle_version != status.stable.version:
            stable = status.stable.version if status.stable else "none"
            return f"the report is for version {summary.bundle_version}, the stable is {stable}"
        if self.spec.training is None:
            return "no spec.training"
        if status.training.job_name:
            return f"training Job {status.training.job_name} is running"
        if status.canary is not None:
            return f"canary {status.canary.version} is being rolled out"
        pending = self._pending_version()
        if pending is not None:
            return f"version {pending.version} is about to be rolled out"
        last = status.drift.last_retrain_at if status.drift else None
        if monitoring and last:
            until = parse_time(last) + timedelta(seconds=monitoring.retrain_cooldown_seconds)
            if self.now < until:
                return f"cool-down until {timestamp(until)}"
        return None

    # training ------------------------------------------------------------------------------------

    def follow_training(self) -> None:
        training = self.status.training
        job, name = self.observed.job, training.job_name
        if name is None or job is None or job.phase == "Active":
            return
        finished = timestamp(self.now)
        if job.phase == "Succeeded":
            result = self._trained_result(name, finished)
        else:
            outcome, reason, message = training_failure(name, job)
            result = TrainingResult(
                result="GatesFailed" if outcome == "GatesFailed" else "Failed",
                job_name=name,
                reason=reason,
                message=message,
                finished_at=finished,
            )
        self.status.training = training.model_copy(
            update={"job_name": None, "started_at": None, "last_result": result}
        )
        self.event(f"Training{result.result}", result.message, warning=result.result != "Succeeded")

    def _trained_result(self, name: str, finished: str) -> TrainingResult:
        trained = self.observed.trained
        uri, version = self.status.training.bundle_uri, self.status.training.version
        if trained is None or trained.error or trained.version is None:
            detail = trained.error if trained else "manifest not read"
            return TrainingResult(
                result="Failed",
                job_name=name,
                bundle_uri=uri,
                reason="BundleUnreadable",
                message=f"Job {name} succeeded but its bundle is unusable: {detail}",
                finished_at=finished,
            )
        if not trained.gates_passed:
            return TrainingResult(
                result="GatesFailed",
                job_name=name,
                version=trained.version,
                bundle_uri=trained.bundle_uri,
                reason="GatesFailed",
                message=f"version {trained.version} failed its quality gates; not rolled out",
                finished_at=finished,
            )
        self.status.desired = Desired(
            version=trained.version,
            bundle_uri=trained.bundle_uri,
            source="training",
            spec_bundle_uri=self.status.desired.spec_bundle_uri if self.status.desired else None,
        )
        return TrainingResult(
            result="Succeeded",
            job_name=name,
            version=trained.version or version,
            bundle_uri=trained.bundle_uri,
            reason="Published",
            message=f"Job {name} published version {trained.version}",
            finished_at=finished,
        )

    def training_reason(self) -> str | None:
        spec, status = self.spec.training, self.status
        if spec is None or status.training.job_name:
            return None
        last = status.training.last_result
        if last is None and status.desired is None and status.stable is None:
            return "Initial"
        if self.drift_retrain is not None:
            return "DriftReport"
        if spec.schedule_seconds > 0:
            since = parse_time(last.finished_at if last else self.model.created_at)
            if self.now - since >= timedelta(seconds=spec.schedule_seconds):
                return "Schedule"
        psi = self.observed.stable_score_psi
        if (
            spec.retrain_on_score_psi > 0
            and psi is not None
            and psi > spec.retrain_on_score_psi
            and status.stable
            and status.training.drift_retrained_for != status.stable.version
        ):
            return "Drift"
        return None

    def start_training(self) -> None:
        reason = self.training_reason()
        if reason is None or self.spec.training is None:
            return
        training = self.status.training
        run = training.runs + 1
        started = timestamp(self.now)
        version = builders.training_version(run, started)
        output = f"{self.spec.training.output_uri.rstrip('/')}/{version}"
        drift_for = (
            self.status.stable.version
            if reason == "Drift" and self.status.stable
            else training.drift_retrained_for
        )
        self.status.training = TrainingStatus(
            runs=run,
            job_name=builders.training_job_name(self.model.name, run),
            version=version,
            bundle_uri=output,
            started_at=started,
            reason=reason,
            drift_retrained_for=drift_for,
            last_result=training.last_result,
        )
        self.job = builders.build_training_job(self.model.owner, self.spec, run, version, output)
        detail = reason.lower()
        if reason == "Drift":
            detail = (
                f"live score PSI {self.observed.stable_score_psi:.3f} above"
                f" {self.spec.training.retrain_on_score_psi:g}"
            )
        elif reason == "DriftReport" and self.drift_retrain and self.spec.monitoring:
            detail = (
                f"drift report score PSI {self.drift_retrain.score_psi:.3f} above"
                f" {self.spec.monitoring.retrain_on_drift_psi:g}"
            )
            if self.status.drift is not None:
                self.status.drift.last_retrain_at = started
        self.event("TrainingStarted", f"Job {self.status.training.job_name} ({detail})")

    # rollout -------------------------------------------------------------------------------------

    def rejected(self, ref: VersionRef) -> bool:
        return (
            self.status.rejected is not None and self.status.rejected.bundle_uri == ref.bundle_uri
        )

    def _pending_version(self) -> VersionRef | None:
        """The desired version move_rollout will start a canary for in this pass, if any: a drift
        retrain decided earlier in the pass must not race it."""
        status, desired = self.status, self.status.desired
        if desired is None or status.stable is None:
            return None
        target = VersionRef(version=desired.version, bundle_uri=desired.bundle_uri)
        if target.bundle_uri == status.stable.bundle_uri or self.rejected(target):
            return None
        return target

    def move_rollout(self) -> None:
        status, desired = self.status, self.status.desired
        if desired is not None:
            target = VersionRef(version=desired.version, bundle_uri=desired.bundle_uri)
            if status.stable is None:
                status.stable = target
                self.event("Deploying", f"first version {target.version} goes straight to stable")
            elif target.bundle_uri == status.stable.bundle_uri:
                if status.canary is not None:
                    self.event("CanaryCancelled", f"desired version is the stable {target.version}")
                    self._end_canary()
            elif not self.rejected(target) and (
                status.canary is None or status.canary.bundle_uri != target.bundle_uri
            ):
                self._start_canary(target)
        if status.canary is not None:
            self._progress_canary(status.canary)

    def _start_canary(self, target: VersionRef) -> None:
        replaced = self.status.canary
        stamp = timestamp(self.now)
        self.status.canary = Canary(
            version=target.version,
            bundle_uri=target.bundle_uri,
            step=0,
            started_at=stamp,
            last_check_at=stamp,
        )
        self.status.canary_weight = self.spec.rollout.steps[0]
        stable = self.status.stable.version if self.status.stable else "none"
        prefix = f"replaces canary {replaced.version}; " if replaced else ""
        self.event(
            "CanaryStarted",
            f"{prefix}canary {target.version} at {self.status.canary_weight}% (stable {stable})",
        )

    def _end_canary(self) -> None:
        self.status.canary = None
        self.status.canary_weight = 0

    def _progress_canary(self, canary: Canary) -> None:
        action = self.model.action
        if action in ACTIONS:
            self.clear_action = True
            if action == "promote":
                self._promote(canary, "ManualPromotion", "promoted by the action annotation")
            else:
                self._rollback(canary, "ManualAbort", "aborted by the action annotation")
            return
        if not analysis_due(self.model, self.now) or self.model.status.canary is None:
            return
        if self.model.status.canary.bundle_uri != canary.bundle_uri:
            return  # a canary started in this very step waits a full interval first
        result = self.observed.analysis or analysis.Result(
            "failed", "canary InferenceService is not Ready"
        )
        update: dict[str, Any] = {
            "last_check_at": timestamp(self.now),
            "last_analysis": AnalysisRecord(verdict=result.verdict, message=result.message),
        }
        if result.verdict == "inconclusive":
            self.status.canary = canary.model_copy(update=update)
            self.event("AnalysisInconclusive", f"canary {canary.version}: {result.message}")
        elif result.verdict == "failed":
            failed = canary.failed_checks + 1
            limit = self.spec.rollout.analysis.max_failed_checks
            if failed >= limit:
                self._rollback(
                    canary, "AnalysisFailed", f"{failed}/{limit} checks failed: {result.message}"
                )
                return
            self.status.canary = canary.model_copy(update={**update, "failed_checks": failed})
            self.event(
                "AnalysisFailed",
                f"canary {canary.version} check {failed}/{limit} failed: {result.message}",
                warning=True,
            )
        else:
            step = canary.step + 1
            steps = self.spec.rollout.steps
            if step >= len(steps):
                self._promote(canary, "AnalysisPassed", result.message)
                return
            self.status.canary = canary.model_copy(update={**update, "step": step})
            self.status.canary_weight = steps[step]
            self.event(
                "CanaryAdvanced", f"canary {canary.version} at {steps[step]}%: {result.message}"
            )

    def _promote(self, canary: Canary, reason: str, message: str) -> None:
        previous = self.status.stable.version if self.status.stable else "none"
        self.status.stable = VersionRef(version=canary.version, bundle_uri=canary.bundle_uri)
        self._end_canary()
        if self.rejected(self.status.stable):
            self.status.rejected = None
        self.event("Promoted", f"{canary.version} replaces {previous} ({reason}: {message})")

    def _rollback(self, canary: Canary, reason: str, message: str) -> None:
        self.status.rejected = Rejected(
            version=canary.version, bundle_uri=canary.bundle_uri, reason=f"{reason}: {message}"
        )
        self._end_canary()
        stable = self.status.stable.version if self.status.stable else "none"
        self.event(
            "RolledBack", f"{canary.version} rolled back to {stable}: {message}", warning=True
        )

    # children and conditions ---------------------------------------------------------------------

    def children(self) -> list[dict[str, Any]]:
        status, spec, owner = self.status, self.spec, self.model.owner
        if status.stable is None:
            return []
        # The drift CronJob goes last: should the API server refuse it, serving is already written.
        if spec.rollout.router == "knative":
            serving = status.canary or status.stable
            weight = status.canary_weight if status.canary else None
            return [
                builders.build_knative_inferenceservice(owner, spec, serving, weight),
                *self._drift_cronjob(),
            ]
        children = [builders.build_inferenceservice(owner, spec, status.stable, "stable")]
        if status.canary is not None:
            children.append(builders.build_inferenceservice(owner, spec, status.canary, "canary"))
        children.append(
            builders.build_httproute(
                owner, spec, status.stable, status.canary, status.canary_weight
            )
        )
        return [*children, *self._drift_cronjob()]

    def _drift_cronjob(self) -> list[dict[str, Any]]:
        """The drift report CronJob on the stable bundle, unless its schedule is one the CronJob
        controller would refuse (then Degraded names the field and the serving path goes on)."""
        monitoring, stable = self.spec.monitoring, self.status.stable
        if monitoring is None or stable is None:
            return []
        problem = builders.cron_problem(monitoring.drift_schedule)
        if problem:
            self.spec_error = (
                f"spec.monitoring.driftSchedule {monitoring.drift_schedule!r}: {problem}"
            )
            return []
        return [builders.build_drift_cronjob(self.model.owner, self.spec, stable)]

    def conditions(self) -> None:
        status = self.status
        stable_name, _ = serving_names(self.model, status)
        stable_ready = bool(status.stable and self.observed.ready.get(stable_name, False))
        rolled_back = bool(
            status.rejected
            and status.desired
            and status.desired.bundle_uri == status.rejected.bundle_uri
        )
        last = status.training.last_result
        training_failed_unserved = bool(
            status.stable is None and last and last.result != "Succeeded"
        )
        self._ready(stable_ready)
        self._progressing(stable_ready)
        if self.bundle_error:
            self._set("Degraded", "True", "BundleUnavailable", self.bundle_error)
        elif self.spec_error:
            self._set("Degraded", "True", "InvalidSpec", self.spec_error)
        elif rolled_back and status.rejected:
            self._set("Degraded", "True", "RolledBack", status.rejected.reason)
        elif training_failed_unserved and last:
            self._set("Degraded", "True", f"Training{last.result}", last.message)
        else:
            self._set("Degraded", "False", "AsExpected", "no failed rollout or unusable bundle")
        self._training()
        status.observed_generation = self.model.generation
        status.phase = self._phase(stable_ready)

    def _ready(self, stable_ready: bool) -> None:
        stable, canary = self.status.stable, self.status.canary
        if stable is None:
            self._set("Ready", "False", "NoModel", "no version published yet")
        elif not stable_ready:
            self._set(
                "Ready", "False", "Deploying", f"InferenceService of {stable.version} not Ready"
            )
        else:
            share = 100 - (self.status.canary_weight if canary else 0)
            self._set("Ready", "True", "Serving", f"{stable.version} serves {share}% of traffic")

    def _progressing(self, stable_ready: bool) -> None:
        canary, spec = self.status.canary, self.spec.rollout
        if canary is not None:
            reason = "Paused" if spec.paused else "CanaryAnalysis"
            message = (
                f"canary {canary.version} at {self.status.canary_weight}% (step"
                f" {canary.step + 1}/{len(spec.steps)}, {canary.failed_checks} failed checks)"
            )
            self._set("Progressing", "True", reason, message)
        elif self.status.stable is not None and not stable_ready:
            self._set("Progressing", "True", "Deploying", f"deploying {self.status.stable.version}")
        elif self.status.training.job_name:
            self._set("Progressing", "True", "Training", "waiting for the training Job")
        else:
            self._set("Progressing", "False", "Stable", "no rollout in progress")

    def _training(self) -> None:
        training = self.status.training
        if training.job_name:
            self._set(
                "Training",
                "True",
                "Running",
                f"Job {training.job_name} training {training.version} ({training.reason})",
            )
        elif training.last_result:
            last = training.last_result
            self._set("Training", "False", last.result, last.message)
        else:
            self._set("Training", "False", "NotRequested", "no training run yet")

    def _phase(self, stable_ready: bool) -> Any:
        condition = self.status.condition
        if (degraded := condition("Degraded")) and degraded.status == "True":
            return "Degraded"
        if self.status.training.job_name and self.status.stable is None:
            return "Training"
        if (progressing := condition("Progressing")) and progressing.status == "True":
            return "Progressing"
        return "Ready" if stable_ready else "Pending"

    def _set(
        self, kind: str, state: Literal["True", "False", "Unknown"], reason: str, message: str
    ) -> None:
        """Set a condition; lastTransitionTime moves only when the status value changes."""
        current = self.status.condition(kind)
        since = current.last_transition_time if current and current.status == state else None
        updated = Condition(
            type=kind,
            status=state,
            reason=reason,
            message=message,
            last_transition_time=since or timestamp(self.now),
            observed_generation=self.model.generation,
        )
        others = [c for c in self.status.conditions if c.type != kind]
        self.status.conditions = sorted(
            [*others, updated], key=lambda c: CONDITION_ORDER.get(c.type, 99)
        )


def _stamp(moment: datetime) -> str:
    """RFC 3339 UTC keeping sub-seconds: two reports within a second are still two reports."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _describe(summary: DriftSummary) -> str:
    window = f"{_stamp(summary.window_start)} to {_stamp(summary.window_end)}"
    if summary.score_psi is None:
        return f"version {summary.bundle_version}, {window}: {summary.message or 'no predictions'}"
    top = ", ".join(summary.top_drifting_features[:5]) or "none"
    return (
        f"version {summary.bundle_version}, {window}: score PSI {summary.score_psi:.3f}"
        f" ({summary.score_status}) over {summary.rows} rows; top drifting features: {top}"
        + (f"; report {summary.report_uri}" if summary.report_uri else "")
    )


CONDITION_ORDER = {"Ready": 0, "Progressing": 1, "Degraded": 2, "Training": 3}


def reconcile(model: CreditModel, observed: Observations, now: datetime) -> Plan:
    """One step of the state machine. Deterministic in its inputs."""
    step = _Step(model, observed, now)
    step.adopt_spec_bundle()
    step.follow_training()
    step.record_drift()
    step.start_training()
    step.move_rollout()
    children = step.children()  # before the conditions: a child may reveal an invalid spec
    step.conditions()
    return Plan(
        status=step.status,
        children=children,
        job=step.job,
        events=step.events,
        clear_action=step.clear_action,
    )
