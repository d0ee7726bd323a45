"""What the state machine takes and gives: the object as it stands, what the adapters observed, the
operator-wide timings, and the plan of one pass. Values only: frozen, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from creditmodel.core.drift import DriftSummary
from creditmodel.operator import analysis, builders
from creditmodel.operator.model import Spec, Status, parse_time

Action = Literal["promote", "abort", "pause", "resume", "rollback"]
ACTIONS: tuple[Action, ...] = ("promote", "abort", "pause", "resume", "rollback")
DriftReason = Literal["DriftReport", "Drift"]
"""Why a drift signal retrains: a drift report, or the stable's live score PSI."""


def timestamp(moment: datetime) -> str:
    """RFC 3339 UTC to the second, as Kubernetes writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(moment: datetime) -> str:
    """RFC 3339 UTC keeping sub-seconds: two reports within a second are still two reports."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def not_ready_since(status: Status) -> tuple[str, str] | None:
    """The stable's version and since when it has not been Ready (the Ready condition's last
    transition); None without a stable, or while it is Ready."""
    current = status.condition("Ready")
    if status.stable is None or current is None or current.status != "False":
        return None
    return status.stable.version, current.last_transition_time


def seconds_since(text: str, now: datetime) -> float:
    return (now - parse_time(text)).total_seconds()


@dataclass(frozen=True)
class Policy:
    """Operator-wide timings (settings CREDITMODEL_OPERATOR_*), the same for every CreditModel."""

    drain_seconds: float = 30.0
    """How long the route holds 0% on a version before its InferenceService is deleted."""
    ready_timeout_seconds: float = 600.0
    """How long a new canary may take to become Ready before it is rolled back."""
    network_policy: builders.IngressPolicy | None = None
    """Who besides the Gateway may reach predictor pods; None: no NetworkPolicy is written."""


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


# --- observations ---------------------------------------------------------------------------------


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
    publishes: tuple[str, str] | None = None
    """(version, bundle URI) the Job was started to publish (builders.training_job_publishes):
    an earlier run's Job found under this run's name publishes its own, not the planned ones."""


@dataclass(frozen=True)
class DriftReport:
    """The drift job's latest.json as the adapter found it: parsed, absent (both None: no report
    yet) or unreadable (store down, corrupt JSON), which never stops the serving path."""

    summary: DriftSummary | None = None
    error: str | None = None


@dataclass(frozen=True)
class CronJobWrite:
    """The API server's answer to the adapter's last write of the drift CronJob."""

    refused: str | None = None
    """None: accepted; else the API server's message (a quota, an admission policy)."""


@dataclass(frozen=True)
class ChildRefusal:
    """A child the plan asked for was not stored: the API server refused it, or its name is taken
    by an object this CreditModel does not own."""

    kind: str
    name: str
    message: str


@dataclass(frozen=True)
class RouteState:
    """The HTTPRoute as stored: each backend's weight by InferenceService name, and since when each
    0% backend has held 0% (an annotation written in the same request as the weights)."""

    weights: Mapping[str, int] = field(default_factory=dict)
    zero_since: Mapping[str, str] = field(default_factory=dict)


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
    route: RouteState | None = None
    """None: not read in this pass (it is read while a version drains)."""
    cronjob: CronJobWrite | None = None
    """None: the drift CronJob was not written since the operator started."""
    refused: ChildRefusal | None = None
    """A serving child (InferenceService, HTTPRoute) not stored at the adapter's last write:
    KServe's webhook, an admission policy or a quota refused it, or its name is someone else's.
    None: every write was accepted."""
    waiting: Mapping[str, str] = field(default_factory=dict)
    """InferenceService name -> what KServe says keeps it from Ready (absent: nothing said)."""
    copies: Mapping[str, int] = field(default_factory=dict)
    """InferenceService name -> the pods KServe counts ready behind it (absent: none)."""


@dataclass(frozen=True)
class Needs:
    """What the adapter must look up before `reconcile` can decide."""

    resolve_bundle: str | None
    inferenceservices: tuple[str, ...]
    job: str | None
    analysis: bool
    drift: bool
    drift_report: bool = False
    route: bool = False


# --- outputs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


HELD_REASON = "StableNotReady"
"""The Ready condition's and the Warning Event's reason while the route keeps its traffic on a
stable KServe marks not Ready (traffic.held)."""


def normal(reason: str, message: str) -> Event:
    return Event("Normal", reason, message)


def warning(reason: str, message: str) -> Event:
    return Event("Warning", reason, message)


@dataclass(frozen=True)
class Outcome:
    """A step's result: the status it leads to and the Events it announces."""

    status: Status
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Plan:
    status: Status
    children: list[dict[str, Any]]
    job: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    clear_action: bool = False
    retained: tuple[str, ...] = ()
    """InferenceServices to keep without writing them (traffic.retained): not to be pruned."""

    @property
    def inferenceservice_names(self) -> set[str]:
        return {c["metadata"]["name"] for c in self.children if c["kind"] == "InferenceService"}

    @property
    def route_weights(self) -> dict[str, int] | None:
        """InferenceService name -> weight in the HTTPRoute of this plan (None: no route)."""
        for child in self.children:
            if child["kind"] == "HTTPRoute":
                refs = child["spec"]["rules"][0]["backendRefs"]
                return {isvc_of_service(ref["name"]): int(ref["weight"]) for ref in refs}
        return None


def isvc_of_service(service: str) -> str:
    """The InferenceService behind a predictor Service name (builders.predictor_service)."""
    suffix = builders.predictor_service("")
    return service[: -len(suffix)] if suffix and service.endswith(suffix) else service
