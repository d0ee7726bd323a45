"""Typed view of a CreditModel's status, written only by the operator: all rollout progress lives
here, so a restarted operator continues where the last one stopped (the CRD's status schema in
manifests/crd mirrors it; tests/operator/test_status_schema.py compares them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from creditmodel.operator import validation as check

_LATEST_YEAR = 9000  # room to add any cool-down or timeout to a stored time


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as this operator writes it (`...Z`); what the API server's date-time
    format also stores (a lowercase t or z) reads the same."""
    moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text[:40]!r} has no time zone")
    return moment.astimezone(UTC)


def _time(text: str) -> str:
    """A stored time the rollout can compute with. The CRD's date-time format lets more through
    (`...T00:00:00x5Z`, an offset of +99:00, no offset): such a hand-edited status is reported
    unreadable instead of failing every pass with a ValueError or OverflowError."""
    try:
        moment = parse_time(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not an RFC 3339 time") from None
    if not 1970 <= moment.year <= _LATEST_YEAR:
        raise ValueError(f"{text[:40]!r} is not between 1970 and {_LATEST_YEAR}")
    return text


Time = Annotated[str, AfterValidator(_time)]


def readable_time(text: object) -> bool:
    """Whether `text` is a stored time the rollout can compute with."""
    try:
        return isinstance(text, str) and bool(_time(text))
    except ValueError:
        return False


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class VersionRef(_Status):
    """A published bundle: its URI and the version recorded in its manifest. The URI reaches the
    predictor's and the drift Job's command lines, so a status edited by hand is held to the
    spec's rule for it (`--help` was passed on as an argument)."""

    version: str
    bundle_uri: check.BundleURI = Field(
        validation_alias="bundleURI", serialization_alias="bundleURI"
    )


class Desired(VersionRef):
    source: Literal["spec", "training"]
    spec_bundle_uri: str | None = Field(
        default=None, validation_alias="specBundleURI", serialization_alias="specBundleURI"
    )
    """The spec's bundleURI when last adopted, so an unchanged spec never overrides a trained bundle."""


class AnalysisRecord(_Status):
    verdict: Literal["passed", "failed", "inconclusive"]
    message: str


class Canary(VersionRef):
    step: int = Field(default=0, ge=0)
    started_at: Time
    last_check_at: Time
    ready_at: Time | None = None
    """When its InferenceService was first seen Ready: no traffic and no analysis before that."""
    failed_checks: int = Field(default=0, ge=0)
    last_analysis: AnalysisRecord | None = None


class Draining(VersionRef):
    """A version out of the rollout (the old stable after a promotion or a rollback, a canary rolled
    back, replaced or cancelled) whose InferenceService stays until the route has held 0% on it for
    the drain period while the stable is Ready."""

    since: Time | None = None
    """Since when the route has held 0% on it (None: it still has traffic)."""


class AnalysisNumbers(_Status):
    """What an analysis check measured over its window (None: no sample)."""

    requests: float | None = None
    success_rate: float | None = None
    p99_latency_seconds: float | None = None
    score_psi: float | None = Field(
        default=None, validation_alias="scorePSI", serialization_alias="scorePSI"
    )


class Decision(_Status):
    """One entry of the rollout history (status.history keeps the last HISTORY_LIMIT)."""

    at: Time
    from_version: str | None = None
    """The version serving before the decision (the stable)."""
    to_version: str | None = None
    """The version the decision is about (the canary, or the version rolled back to)."""
    verdict: str
    """Deployed, Started, Ready, Advanced, CheckFailed, Promoted, RolledBack, Aborted, Cancelled,
    Refused, Reverted, Paused or Resumed."""
    reason: str
    message: str
    analysis: AnalysisNumbers | None = None


HISTORY_LIMIT = 10


class Rejected(VersionRef):
    reason: str


class TrainingResult(_Status):
    result: Literal["Succeeded", "Failed", "GatesFailed"]
    job_name: str
    version: str | None = None
    bundle_uri: str | None = Field(
        default=None, validation_alias="bundleURI", serialization_alias="bundleURI"
    )
    reason: str
    message: str
    finished_at: Time


class TrainingStatus(_Status):
    runs: int = Field(
        default=0, ge=0, le=999_999_999_999
    )  # the Job name <name>-train-<runs> fits 63
    job_name: str | None = None
    version: str | None = None
    bundle_uri: str | None = Field(
        default=None, validation_alias="bundleURI", serialization_alias="bundleURI"
    )
    started_at: Time | None = None
    reason: str | None = None
    drift_retrained_for: str | None = None
    """The stable version the last drift retrain ran for."""
    drift_retrained_at: Time | None = None
    """When a drift signal (live score PSI or a drift report) last started a retrain: the one
    drift-retrain cool-down counts from here."""
    last_result: TrainingResult | None = None


class DriftStatus(_Status):
    """The newest drift report read from the prediction log store, and the drift retrain clock."""

    bundle_version: str | None = None
    score_psi: float | None = Field(
        default=None, validation_alias="scorePSI", serialization_alias="scorePSI"
    )
    score_status: str | None = None
    rows: int | None = None
    window_start: str | None = None
    window_end: str | None = None
    top_drifting_features: list[str] = []
    report_uri: str | None = Field(
        default=None, validation_alias="reportURI", serialization_alias="reportURI"
    )
    report_created_at: str | None = None
    """The report's own created_at: a report is acted on once, when this changes."""
    message: str | None = None
    error: str | None = None
    """Why the latest report could not be read (store down, corrupt JSON); cleared on success."""
    last_retrain_at: Time | None = None
    """Written by operator 0.1.0 only: read once into training.driftRetrainedAt."""
    cron_job_error: str | None = None
    """Why the API server refused the drift CronJob; cleared once it accepts it."""


class Condition(_Status):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_time: Time
    observed_generation: int | None = None


Phase = Literal["Pending", "Training", "Progressing", "Ready", "Degraded"]


class Status(_Status):
    observed_generation: int | None = None
    phase: Phase | None = None
    url: str | None = None
    """The stable entry (the HTTPRoute's first hostname), whichever version serves behind it."""
    stable: VersionRef | None = None
    canary: Canary | None = None
    canary_weight: int = 0
    knative_hold: bool | None = None
    """Router knative: the InferenceService's newest revision is a canary that ended without a
    promotion (aborted, rolled back, cancelled), so KServe keeps 100% on its last rolled-out
    revision (canaryTrafficPercent 0) instead of sending it to the newest Ready one, the canary's,
    until the next canary starts or a version is promoted."""
    desired: Desired | None = None
    rejected: Rejected | None = None
    previous_stable: VersionRef | None = None
    """The stable before the last promotion: the target of the `rollback` action."""
    draining: list[Draining] = []
    paused_at: Time | None = None
    """Set by the `pause` action, cleared by `resume` (spec.rollout.paused pauses as well)."""
    training: TrainingStatus = TrainingStatus()
    drift: DriftStatus | None = None
    history: list[Decision] = []
    """The last HISTORY_LIMIT rollout decisions, oldest first."""
    conditions: list[Condition] = []

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)
