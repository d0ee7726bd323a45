"""Typed views of a CreditModel's spec (and, from status.py, its status: both import from here). The
CRD in manifests/crd is the source of truth:
the API server has validated and defaulted the spec already; the spec types repeat its rules
(validation.py) so that the operator refuses what the API server refuses, and its defaults (a test
walks the CRD's), so that a spec the API server never saw means the same."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from creditmodel.core.commands import DRIFT_WINDOW_PATTERN
from creditmodel.operator import validation as check
from creditmodel.operator.status import (
    HISTORY_LIMIT,
    AnalysisNumbers,
    AnalysisRecord,
    Canary,
    Condition,
    Decision,
    Desired,
    Draining,
    DriftStatus,
    Phase,
    Rejected,
    Status,
    TrainingResult,
    TrainingStatus,
    VersionRef,
    parse_time,
    readable_time,
)

GROUP = "scoring.creditmodel.io"
VERSION = "v1alpha1"
PLURAL = "creditmodels"
KIND = "CreditModel"
API_VERSION = f"{GROUP}/{VERSION}"
ACTION_ANNOTATION = f"{GROUP}/action"
"""Manual control: `promote`, `abort`, `pause`, `resume` or `rollback`; the operator acts on it within
about a second (a watch event, not the timer) and removes it once done."""
FINALIZER = f"{GROUP}/finalizer"
"""kopf's finalizer on every CreditModel (its daemon holds it until stopped)."""


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ModelSource(_Camel):
    bundle_uri: check.BundleURI | None = Field(
        default=None, validation_alias="bundleURI", serialization_alias="bundleURI"
    )


class Resources(_Camel):
    requests: Annotated[dict[check.ResourceName, check.Quantity], Field(max_length=3)] = {}
    limits: Annotated[dict[check.ResourceName, check.Quantity], Field(max_length=3)] = {}

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for name, request in self.requests.items():
            limit = self.limits.get(name)
            if limit is not None and check.quantity_value(request) > check.quantity_value(limit):
                raise ValueError(f"every request must be at most its limit ({name})")
        return self


PREDICTOR_RESOURCES = Resources(
    requests={"cpu": "500m", "memory": "512Mi"}, limits={"cpu": "1", "memory": "1Gi"}
)
"""The CRD's default: the API server writes it into every CreditModel that names none, and the HPA
needs the cpu request to scale on utilisation."""
DRIFT_RESOURCES = Resources(
    requests={"cpu": "500m", "memory": "1Gi"}, limits={"cpu": "1", "memory": "2Gi"}
)
"""The CRD's default for the drift report pod (1,000,000 logged rows x 20 features peak below 1 GiB)."""


class PredictorSpec(_Camel):
    image: check.Image | None = None
    """None: the operator's CREDITMODEL_OPERATOR_PREDICTOR_IMAGE."""
    min_replicas: Annotated[int, Field(ge=0, le=100)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=100)] = 3
    scale_metric: Literal["cpu", "memory", "concurrency", "rps"] | None = None
    """None: cpu for router gatewayAPI (an HPA), concurrency for router knative (the KPA)."""
    scale_target: Annotated[int, Field(ge=1, le=100)] = 70
    workers: Annotated[int, Field(ge=1, le=16)] = 1
    service_account_name: check.DNSSubdomain | None = None
    resources: Resources = PREDICTOR_RESOURCES

    @model_validator(mode="after")
    def _replicas(self) -> PredictorSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


class Gateway(_Camel):
    name: check.DNSSubdomain
    namespace: check.DNSLabel | None = None
    section_name: check.DNSSubdomain | None = None


class AnalysisSpec(_Camel):
    prometheus_url: check.HttpURL | None = Field(
        default=None, validation_alias="prometheusURL", serialization_alias="prometheusURL"
    )
    window_seconds: Annotated[int, Field(ge=2, le=3600)] = 60
    min_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    success_rate: Annotated[float, Field(ge=0, le=1)] = 0.99
    p99_latency_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    max_score_psi: Annotated[float, Field(ge=0, le=10)] = Field(
        default=0.25, validation_alias="maxScorePSI", serialization_alias="maxScorePSI"
    )
    max_failed_checks: Annotated[int, Field(ge=1, le=100)] = 2


class RolloutSpec(_Camel):
    router: Literal["gatewayAPI", "knative"] = "gatewayAPI"
    gateway: Gateway | None = None
    hostnames: Annotated[list[check.Hostname], Field(max_length=16)] = []
    steps: Annotated[list[check.Percent], Field(min_length=1, max_length=20)] = [10, 25, 50]
    interval_seconds: Annotated[int, Field(ge=1, le=86400)] = 60
    paused: bool = False
    analysis: AnalysisSpec = AnalysisSpec()

    @model_validator(mode="after")
    def _shape(self) -> RolloutSpec:
        if any(a >= b for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("steps must be strictly increasing traffic percentages")
        if len(set(self.hostnames)) != len(self.hostnames):
            raise ValueError("hostnames must not repeat")
        return self


class Gates(_Camel):
    """Quality gate overrides: each field is one creditmodel-train flag (builders.GATE_FLAGS), with
    the range the CRD allows; unset keeps the training default. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    auc_margin_vs_baseline: Annotated[float, Field(ge=0, le=0.5)] | None = None
    onnx_max_abs_dp: Annotated[float, Field(gt=0, le=1)] | None = None
    int8_max_auc_drop: Annotated[float, Field(ge=0, le=0.5)] | None = None
    int8_max_abs_dp: Annotated[float, Field(gt=0, le=1)] | None = None
    max_brier: Annotated[float, Field(gt=0, le=1)] | None = None
    min_approval_ratio: Annotated[float, Field(ge=0, le=1)] | None = None
    fairness_min_group: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    cpu_max_abs_dp: Annotated[float, Field(ge=0, le=1)] | None = None
    cpu_models: Annotated[list[Literal["Haswell", "Nehalem"]], Field(max_length=2)] | None = None
    """Empty: the cross-CPU check is skipped (`--cpu-models none`)."""

    @model_validator(mode="after")
    def _unique_cpu_models(self) -> Gates:
        if self.cpu_models is not None and len(set(self.cpu_models)) != len(self.cpu_models):
            raise ValueError("cpuModels must not repeat")
        return self


class TrainingSpec(_Camel):
    image: check.Image | None = None
    """None: the operator's CREDITMODEL_OPERATOR_TRAINING_IMAGE."""
    data_uri: check.BundleURI = Field(validation_alias="dataURI", serialization_alias="dataURI")
    target: check.Column
    positive_label: check.Column
    output_uri: check.S3URI = Field(validation_alias="outputURI", serialization_alias="outputURI")
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 42
    gates: Gates = Gates()
    schedule_seconds: Annotated[int, Field(ge=0, le=31_536_000)] = 0
    retrain_on_score_psi: Annotated[float, Field(ge=0, le=10)] = Field(
        default=0.0, validation_alias="retrainOnScorePSI", serialization_alias="retrainOnScorePSI"
    )
    backoff_limit: Annotated[int, Field(ge=0, le=10)] = 1
    active_deadline_seconds: Annotated[int, Field(ge=60, le=604_800)] = 3600
    resources: Resources = Resources()


class MonitoringSpec(_Camel):
    """Prediction log, scheduled drift report and retraining on its verdict."""

    prediction_log_uri: check.S3URI = Field(
        validation_alias="predictionLogURI", serialization_alias="predictionLogURI"
    )
    sample_rate: Annotated[float, Field(ge=0, le=1)] = 1.0
    drift_schedule: Annotated[str, Field(min_length=1, max_length=check.CRON_MAX)] = "0 * * * *"
    """Checked in full by the operator (validation.cron_problem -> Degraded naming the field, the
    serving path untouched) rather than here, so that a bad schedule never stops serving."""
    drift_window: Annotated[str, Field(pattern=DRIFT_WINDOW_PATTERN)] = "24h"
    retrain_on_drift_psi: Annotated[float, Field(gt=0, le=10)] | None = Field(
        default=None, validation_alias="retrainOnDriftPSI", serialization_alias="retrainOnDriftPSI"
    )
    """None: the drift report never starts a retrain (it is recorded and announced only)."""
    retrain_cooldown_seconds: Annotated[int, Field(ge=0, le=31_536_000)] = 86400
    image: check.Image | None = None
    """None: spec.training.image, else the operator's CREDITMODEL_OPERATOR_TRAINING_IMAGE."""
    resources: Resources = DRIFT_RESOURCES


class StorageSpec(_Camel):
    endpoint: check.HttpURL | None = None
    region: check.DNSLabel | None = None
    secret_name: check.DNSSubdomain | None = None


SCALE_METRIC_MESSAGE = (
    "spec.predictor.scaleMetric must be cpu or memory with router gatewayAPI (an HPA) and"
    " concurrency or rps with router knative (the Knative Pod Autoscaler refuses others)"
)


MIN_REPLICAS_MESSAGE = (
    "spec.predictor.minReplicas 0 (scale to zero) needs router knative: with router gatewayAPI"
    " the HPA keeps at least one pod"
)


SCALE_REQUEST_MESSAGE = (
    "spec.predictor.resources needs a request (or a limit, which Kubernetes copies into the"
    " request) for the scaleMetric (cpu unless set) with router gatewayAPI: the HPA scales on"
    " utilisation of that request and computes nothing without one"
)


class Spec(_Camel):
    model: ModelSource = ModelSource()
    predictor: PredictorSpec = PredictorSpec()
    rollout: RolloutSpec = RolloutSpec.model_construct()
    """Unset: router gatewayAPI, which needs a gateway (checked below, as the CRD does)."""
    training: TrainingSpec | None = None
    storage: StorageSpec = StorageSpec()
    monitoring: MonitoringSpec | None = None

    @model_validator(mode="after")
    def _sources(self) -> Spec:
        if self.model.bundle_uri is None and self.training is None:
            raise ValueError(
                "spec needs a model source: spec.model.bundleURI (a published bundle) or"
                " spec.training"
            )
        if self.rollout.router == "gatewayAPI" and self.rollout.gateway is None:
            raise ValueError(
                "router gatewayAPI needs rollout.gateway (the Gateway the HTTPRoute attaches to)"
            )
        metric = self.predictor.scale_metric
        knative = self.rollout.router == "knative"
        if metric is not None and (metric in ("concurrency", "rps")) != knative:
            raise ValueError(SCALE_METRIC_MESSAGE)
        if self.predictor.min_replicas == 0 and not knative:
            raise ValueError(MIN_REPLICAS_MESSAGE)
        resources, scaled = self.predictor.resources, metric or "cpu"
        if not knative and scaled not in resources.requests and scaled not in resources.limits:
            raise ValueError(SCALE_REQUEST_MESSAGE)
        if (
            self.monitoring is not None
            and self.monitoring.retrain_on_drift_psi is not None
            and self.training is None
        ):
            raise ValueError(
                "spec.monitoring.retrainOnDriftPSI needs spec.training (what to retrain with)"
            )
        return self

    @property
    def scale_metric(self) -> str:
        """The autoscaler metric written into the InferenceService."""
        default = "concurrency" if self.rollout.router == "knative" else "cpu"
        return self.predictor.scale_metric or default

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


__all__ = [
    "ACTION_ANNOTATION",
    "API_VERSION",
    "DRIFT_RESOURCES",
    "FINALIZER",
    "GROUP",
    "HISTORY_LIMIT",
    "KIND",
    "PLURAL",
    "PREDICTOR_RESOURCES",
    "SCALE_METRIC_MESSAGE",
    "SCALE_REQUEST_MESSAGE",
    "VERSION",
    "AnalysisNumbers",
    "AnalysisRecord",
    "AnalysisSpec",
    "Canary",
    "Condition",
    "Decision",
    "Desired",
    "Draining",
    "DriftStatus",
    "Gates",
    "Gateway",
    "ModelSource",
    "MonitoringSpec",
    "Phase",
    "PredictorSpec",
    "Rejected",
    "Resources",
    "RolloutSpec",
    "Spec",
    "Status",
    "StorageSpec",
    "TrainingResult",
    "TrainingSpec",
    "TrainingStatus",
    "VersionRef",
    "parse_time",
    "readable_time",
]
