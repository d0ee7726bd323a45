"""Pure builders of the child manifests (dicts, as the API takes them): one InferenceService per
version, the HTTPRoute that splits traffic between them, the training Job and the drift report
CronJob. No I/O here."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from creditmodel.operator.model import GROUP, Spec, VersionRef

ISVC_API = "serving.kserve.io/v1beta1"
HTTPROUTE_API = "gateway.networking.k8s.io/v1"
MANAGED_BY = "creditmodel-operator"
MODEL_LABEL = f"{GROUP}/model"
TRACK_LABEL = f"{GROUP}/track"
VERSION_LABEL = f"{GROUP}/version"
PREDICTOR_PORT = 8080
# KServe Standard ("RawDeployment") mode: Deployment + Service + HPA, no Knative. The Service in front
# of an InferenceService's predictor is `<isvc>-predictor`, port 80.
RAW_DEPLOYMENT = {"serving.kserve.io/deploymentMode": "RawDeployment"}
KNATIVE = {"serving.kserve.io/deploymentMode": "Serverless"}


@dataclass(frozen=True)
class Owner:
    """The CreditModel the children belong to (ownerReferences make deletion cascade)."""

    name: str
    namespace: str
    uid: str
    api_version: str = f"{GROUP}/v1alpha1"
    kind: str = "CreditModel"

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def labels(owner: Owner, **extra: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "creditmodel",
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        MODEL_LABEL: owner.name,
        **extra,
    }


def label_value(text: str) -> str:
    """A label-safe rendering of a version (<= 63 chars, alphanumerics at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("-._")
    return cleaned or "unknown"


def isvc_name(owner_name: str, bundle_uri: str) -> str:
    """One InferenceService per bundle: promotion turns the canary into the stable without a
    redeploy, and the name never changes under a running version."""
    digest = hashlib.sha256(bundle_uri.encode()).hexdigest()[:8]
    return f"{owner_name}-{digest}"


def predictor_service(isvc: str) -> str:
    return f"{isvc}-predictor"


def _metadata(owner: Owner, name: str, extra_labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, **extra_labels),
        "ownerReferences": [owner.reference()],
    }


def _storage_env(spec: Spec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    env: list[dict[str, Any]] = []
    if spec.storage.endpoint:
        env.append({"name": "S3_ENDPOINT_URL", "value": spec.storage.endpoint})
    if spec.storage.region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": spec.storage.region})
    env_from = (
        [{"secretRef": {"name": spec.storage.secret_name}}] if spec.storage.secret_name else []
    )
    return env, env_from


def _resources(requests: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in (("requests", requests), ("limits", limits)) if value}


def build_predictor(owner: Owner, spec: Spec, bundle_uri: str) -> dict[str, Any]:
    """The `spec.predictor` of an InferenceService: our custom predictor container, with the HPA
    fields KServe turns into a HorizontalPodAutoscaler."""
    predictor = spec.predictor
    if predictor.image is None:
        raise ValueError("spec.predictor.image is unset (the operator fills in its default)")
    env, env_from = _storage_env(spec)
    if spec.monitoring is not None:
        env += [
            {"name": "CREDITMODEL_PREDICTION_LOG_URI", "value": spec.monitoring.prediction_log_uri},
            {
                "name": "CREDITMODEL_PREDICTION_LOG_SAMPLE_RATE",
                "value": f"{spec.monitoring.sample_rate:g}",
            },
        ]
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": predictor.image,
        "args": [
            "--model_name",
            owner.name,
            "--model_dir",
            bundle_uri,
            "--http_port",
            str(PREDICTOR_PORT),
            "--workers",
            str(predictor.workers),
        ],
        "ports": [{"containerPort": PREDICTOR_PORT, "protocol": "TCP"}],
        "resources": _resources(predictor.resources.requests, predictor.resources.limits),
        # Written even when empty: removing spec.monitoring or spec.storage must take the old
        # entries off the running container, and only a field we write is compared and patched.
        "env": env,
        "envFrom": env_from,
    }
    body: dict[str, Any] = {
        "minReplicas": predictor.min_replicas,
        "maxReplicas": predictor.max_replicas,
        "scaleMetric": predictor.scale_metric,
        "scaleTarget": predictor.scale_target,
        "containers": [container],
    }
    if predictor.service_account_name:
        body["serviceAccountName"] = predictor.service_account_name
    return body


def build_inferenceservice(
    owner: Owner, spec: Spec, version: VersionRef, track: str
) -> dict[str, Any]:
    """Router gatewayAPI: one InferenceService per version, in KServe Standard mode."""
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": {
            **_metadata(
                owner,
                isvc_name(owner.name, version.bundle_uri),
                {TRACK_LABEL: track, VERSION_LABEL: label_value(version.version)},
            ),
            "annotations": dict(RAW_DEPLOYMENT),
        },
        "spec": {"predictor": build_predictor(owner, spec, version.bundle_uri)},
    }


def build_knative_inferenceservice(
    owner: Owner, spec: Spec, serving: VersionRef, canary_weight: int | None
) -> dict[str, Any]:
    """Router knative: one InferenceService; KServe keeps the previous revision as the stable and
    sends `canaryTrafficPercent` to the latest (honoured in Knative mode only)."""
    predictor = build_predictor(owner, spec, serving.bundle_uri)
    if canary_weight is not None:
        predictor["canaryTrafficPercent"] = canary_weight
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": {
            **_metadata(owner, owner.name, {VERSION_LABEL: label_value(serving.version)}),
            "annotations": dict(KNATIVE),
        },
        "spec": {"predictor": predictor},
    }


def build_httproute(
    owner: Owner,
    spec: Spec,
    stable: VersionRef,
    canary: VersionRef | None,
    canary_weight: int,
) -> dict[str, Any]:
    """Router gatewayAPI: the weights KServe's Standard mode cannot move (kserve issue 5335)."""
    gateway = spec.rollout.gateway
    parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway"}
    if gateway is not None:
        parent["name"] = gateway.name
        if gateway.namespace:
            parent["namespace"] = gateway.namespace
        if gateway.section_name:
            parent["sectionName"] = gateway.section_name
    backends = [_backend(owner, stable, 100 - (canary_weight if canary else 0))]
    if canary is not None:
        backends.append(_backend(owner, canary, canary_weight))
    route_spec: dict[str, Any] = {
        "parentRefs": [parent],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": backends,
            }
        ],
    }
    if spec.rollout.hostnames:
        route_spec["hostnames"] = list(spec.rollout.hostnames)
    return {
        "apiVersion": HTTPROUTE_API,
        "kind": "HTTPRoute",
        "metadata": _metadata(owner, owner.name, {}),
        "spec": route_spec,
    }


def _backend(owner: Owner, version: VersionRef, weight: int) -> dict[str, Any]:
    return {
        "group": "",
        "kind": "Service",
        "name": predictor_service(isvc_name(owner.name, version.bundle_uri)),
        "port": 80,
        "weight": weight,
    }


def training_job_name(owner_name: str, run: int) -> str:
    """Deterministic per run, so a retried create after a crash finds the Job instead of forking."""
    return f"{owner_name}-train-{run}"


def training_version(run: int, started_at: str) -> str:
    stamp = re.sub(r"[^0-9]", "", started_at)[:14]
    return f"v{stamp}-{run}"


def build_training_job(
    owner: Owner, spec: Spec, run: int, version: str, output_uri: str
) -> dict[str, Any]:
    """A Job running `creditmodel-train`, publishing one bundle under `output_uri`."""
    training = spec.training
    if training is None:
        raise ValueError("spec.training is not set")
    if training.image is None:
        raise ValueError("spec.training.image is unset (the operator fills in its default)")
    args = [
        "--data",
        training.data_uri,
        "--target",
        training.target,
        "--positive-label",
        training.positive_label,
        "--model-name",
        owner.name,
        "--output",
        output_uri,
        "--version",
        version,
        "--seed",
        str(training.seed),
    ]
    for gate, value in sorted(training.gates.items()):
        args += [f"--{gate}", f"{value:g}"]
    container = _batch_container(
        spec,
        "train",
        training.image,
        "creditmodel-train",
        args,
        _resources(training.resources.requests, training.resources.limits),
    )
    job_labels = {VERSION_LABEL: label_value(version), f"{GROUP}/component": "training"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(owner, training_job_name(owner.name, run), job_labels),
        "spec": {
            "backoffLimit": training.backoff_limit,
            "activeDeadlineSeconds": training.active_deadline_seconds,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": {
                "metadata": {"labels": labels(owner, **job_labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                },
            },
        },
    }


def _batch_container(
    spec: Spec, name: str, image: str, command: str, args: list[str], resources: dict[str, Any]
) -> dict[str, Any]:
    """A Job container running one of our console scripts with the spec's storage access."""
    env, env_from = _storage_env(spec)
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": [command],
        "args": args,
        "resources": resources,
    }
    if env:
        container["env"] = env
    if env_from:
        container["envFrom"] = env_from
    return container


def drift_cronjob_name(owner_name: str) -> str:
    return f"{owner_name}-drift"


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _WEEKDAYS),  # 0 is Sunday; Kubernetes' parser refuses 7
)
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _cron_value(text: str, low: int, names: tuple[str, ...]) -> int | None:
    if text.isdigit():
        return int(text)
    lowered = text.lower()
    return names.index(lowered) + low if lowered in names else None


def cron_problem(schedule: str) -> str | None:
    """What the CronJob controller would refuse in a five-field schedule (the CRD's pattern only
    checks its shape), so a bad schedule is reported on the CreditModel instead of failing every
    write of the CronJob."""
    if schedule.strip() in _CRON_MACROS:
        return None
    fields = schedule.split()
    if len(fields) != len(_CRON_FIELDS):
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    for text, (what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            span, _, step = part.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                return f"{what}: step {step!r} is not a positive number"
            if span in ("*", "?"):
                continue
            values = [_cron_value(end, low, names) for end in span.split("-", 1)]
            bounds = [v for v in values if v is not None and low <= v <= high]
            if len(bounds) != len(values):
                return f"{what}: {part!r} is outside {low}-{high}"
            if bounds != sorted(bounds):
                return f"{what}: range {span!r} runs backwards"
    return None


def build_drift_cronjob(owner: Owner, spec: Spec, stable: VersionRef) -> dict[str, Any]:
    """A CronJob running `creditmodel-drift` on the stable bundle: each run compares the last
    `driftWindow` of the prediction log with that bundle's reference and leaves `latest.json`
    for the operator. Forbid: a slow run is never overlapped by the next."""
    monitoring = spec.monitoring
    if monitoring is None:
        raise ValueError("spec.monitoring is not set")
    if monitoring.image is None:
        raise ValueError("spec.monitoring.image is unset (the operator fills in its default)")
    args = [
        "--bundle",
        stable.bundle_uri,
        "--log",
        monitoring.prediction_log_uri,
        "--model",
        owner.name,
        "--window",
        monitoring.drift_window,
    ]
    resources = _resources(monitoring.resources.requests, monitoring.resources.limits)
    container = _batch_container(
        spec, "drift", monitoring.image, "creditmodel-drift", args, resources
    )
    job_labels = {VERSION_LABEL: label_value(stable.version), f"{GROUP}/component": "drift"}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(owner, drift_cronjob_name(owner.name), job_labels),
        "spec": {
            "schedule": monitoring.drift_schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels(owner, **job_labels)},
                "spec": {
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": 3600,
                    "ttlSecondsAfterFinished": 24 * 3600,
                    "template": {
                        "metadata": {"labels": labels(owner, **job_labels)},
                        "spec": {"restartPolicy": "Never", "containers": [container]},
                    },
                },
            },
        },
    }
