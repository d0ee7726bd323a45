"""Typed views of a CreditModel's spec and status (the CRD in manifests/crd is the source of truth;
the API server has already validated and defaulted the spec, so these only type it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "scoring.creditmodel.io"
VERSION = "v1alpha1"
PLURAL = "creditmodels"
KIND = "CreditModel"
API_VERSION = f"{GROUP}/{VERSION}"
ACTION_ANNOTATION = f"{GROUP}/action"
"""Manual override: `promote` or `abort` the running canary; the operator removes it once done."""


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ModelSource(_Camel):
    bundle_uri: str | None = Field(
        default=None, validation_alias="bundleURI", serialization_alias="bundleURI"
    )


class Resources(_Camel):
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}


class PredictorSpec(_Camel):
    image: str | None = None
    """None: the operator's CREDITMODEL_OPERATOR_PREDICTOR_IMAGE."""
    min_replicas: int = 1
    max_replicas: int = 3
    scale_metric: Literal["cpu", "memory"] = "cpu"
    scale_target: int = 70
    workers: int = 1
    service_account_name: str | None = None
    resources: Resources = Resources()


class Gateway(_Camel):
    name: str
    namespace: str | None = None
    section_name: str | None = None


class AnalysisSpec(_Camel):
    prometheus_url: str | None = Field(
        default=None, validation_alias="prometheusURL", serialization_alias="prometheusURL"
    )
    window_seconds: int = 60
    min_requests: int = 20
    success_rate: float = 0.99
    p99_latency_seconds: float = 0.5
    max_score_psi: float = Field(
        default=0.25, validation_alias="maxScorePSI", serialization_alias="maxScorePSI"
    )
    max_failed_checks: int = 2


class RolloutSpec(_Camel):
    router: Literal["gatewayAPI", "knative"] = "gatewayAPI"
    gateway: Gateway | None = None
    hostnames: list[str] = []
    steps: list[int] = [10, 25, 50]
    interval_seconds: int = 60
    paused: bool = False
    analysis: AnalysisSpec = AnalysisSpec()


class TrainingSpec(_Camel):
    image: str | None = None
    """None: the operator's CREDITMODEL_OPERATOR_TRAINING_IMAGE."""
    data_uri: str = Field(validation_alias="dataURI", serialization_alias="dataURI")
    target: str
    positive_label: str
    output_uri: str = Field(validation_alias="outputURI", serialization_alias="outputURI")
    seed: int = 42
    gates: dict[str, float] = {}
    schedule_seconds: int = 0
    retrain_on_score_psi: float = Field(
        default=0.0, validation_alias="retrainOnScorePSI", serialization_alias="retrainOnScorePSI"
    )
    backoff_limit: int = 1
    active_deadline_seconds: int = 3600
    resources: Resources = Resources()


class MonitoringSpec(_Camel):
    """Prediction log, scheduled drift report and retraining on its verdict."""

    prediction_log_uri: str = Field(
        validation_alias="predictionLogURI", serialization_alias="predictionLogURI"
    )
    sample_rate: float = 1.0
    drift_schedule: str = "0 * * * *"
    drift_window: str = "24h"
    retrain_on_drift_psi: float | None = Field(
        default=None, validation_alias="retrainOnDriftPSI", serialization_alias="retrainOnDriftPSI"
    )
    """None: the drift report never starts a retrain (it is recorded and announced only)."""
    retrain_cooldown_seconds: int = 86400
    image: str | None = None
    """None: spec.training.image, else the operator's CREDITMODEL_OPERATOR_TRAINING_IMAGE."""
    resources: Resources = Resources()


class StorageSpec(_Camel):
    endpoint: str | None = None
    region: str | None = None
    secret_name: str | None = None


class Spec(_Camel):
    model: ModelSource = ModelSource()
    predictor: PredictorSpec = PredictorSpec()
    rollout: RolloutSpec = RolloutSpec()
    training: TrainingSpec | None = None
    storage: StorageSpec = StorageSpec()
    monitoring: MonitoringSpec | None = None

    def with_default_images(self, predictor: str, training: str) -> Spec:
        """The spec with the operator's default images where it names none."""
        update: dict[str, Any] = {}
        if self.predictor.image is None:
            update["predictor"] = self.predictor.model_copy(update={"image": predictor})
        if self.training is not None and self.training.image is None:
            update["training"] = self.training.model_copy(update={"image": training})
        if self.monitoring is not None and self.monitoring.image is None:
            image = (self.training.image if self.training else None) or training
            update["monitoring"] = self.monitoring.model_copy(update={"image": image})
        return self.model_copy(update=update) if update else self


# --- status -------------------------------------------------------------------------------------


class _Status(_Camel):
    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class VersionRef(_Status):
    """A published bundle: its URI and the version recorded in its manifest."""

    version: str
    bundle_uri: str = Field(validation_alias="bundleURI", serialization_alias="bundleURI")


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
    step: int = 0
    started_at: str
    last_check_at: str
    failed_checks: int = 0
    last_analysis: AnalysisRecord | None = None


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
    finished_at: str


class TrainingStatus(_Status):
    runs: int = 0
    job_name: str | None = None
    version: str | None = None
    bundle_uri: str | None = Field(
        default=None, validation_alias="bundleURI", serialization_alias="bundleURI"
    )
    started_at: str | None = None
    reason: str | None = None
    drift_retrained_for: str | None = None
    """Stable version a drift retrain already ran for: drift retrains once per stable version."""
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
    last_retrain_at: str | None = None
    """When a drift report last started a retrain: the cool-down counts from here."""


class Condition(_Status):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int | None = None


Phase = Literal["Pending", "Training", "Progressing", "Ready", "Degraded"]


class Status(_Status):
    observed_generation: int | None = None
    phase: Phase | None = None
    stable: VersionRef | None = None
    canary: Canary | None = None
    canary_weight: int = 0
    desired: Desired | None = None
    rejected: Rejected | None = None
    training: TrainingStatus = TrainingStatus()
    drift: DriftStatus | None = None
    conditions: list[Condition] = []

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)
