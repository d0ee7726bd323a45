"""Serving children: one InferenceService per version (or one for router knative) and the HTTPRoute
that splits traffic between them."""

from __future__ import annotations

import hashlib
from typing import Any

from creditmodel.core.commands import (
    PREDICTION_LOG_SAMPLE_RATE_ENV,
    PREDICTION_LOG_URI_ENV,
    PredictorFlags,
)
from creditmodel.operator.builders.common import (
    COMPONENT_LABEL,
    MODEL_LABEL,
    VERSION_LABEL,
    Owner,
    label_value,
    literal,
    metadata,
    resources,
    storage_env,
)
from creditmodel.operator.builders.security import (
    PREDICTOR_SCRATCH,
    restricted_container,
    restricted_pod_fields,
)
from creditmodel.operator.model import Spec, VersionRef

ISVC_API = "serving.kserve.io/v1beta1"
HTTPROUTE_API = "gateway.networking.k8s.io/v1"
PREDICTOR_PORT = 8080
GRPC_PORT = 8081
# KServe Standard mode: Deployment + Service + HPA, no Knative. The Service in front of an
# InferenceService's predictor is `<isvc>-predictor`, port 80 (HTTP) and GRPC_PORT (h2c). The
# older spelling "RawDeployment" is a deprecated alias that KServe 0.16's validator refuses on
# every update, which blocks promotion patches and finalizer removal.
STANDARD = {"serving.kserve.io/deploymentMode": "Standard"}
KNATIVE = {"serving.kserve.io/deploymentMode": "Knative"}
"""Not the alias "Serverless": KServe's defaulting webhook (0.16+) stores "Knative" in its place,
which a compare of what we wrote would patch back on every resync."""
# Our HTTPRoute is the one public entry: KServe makes no per-version HTTPRoutes (whose hosts would
# bypass the canary split and change at every promotion) for a cluster-local InferenceService.
CLUSTER_LOCAL = {"networking.kserve.io/visibility": "cluster-local"}
# KServe builds the host label <isvc>-predictor-<namespace> (<= 63) even with ingress off.
HOST_LABEL_MAX = 63
HOST_SUFFIX = len("-predictor-")
# ...and the pods' and Service's `app` label isvc.<isvc>-predictor (<= 63), whatever the namespace.
ISVC_NAME_MAX = HOST_LABEL_MAX - len("isvc.") - len("-predictor")
DIGEST = 8
HTTPROUTE_MAX_BACKENDS = 16
"""Gateway API's limit on one rule's backendRefs (its CRD's maxItems)."""
# ComponentExtensionSpec fields of an InferenceService's predictor: everything else in it is the
# predictor pod's PodSpec.
PREDICTOR_EXTENSION_FIELDS = frozenset(
    {
        "minReplicas",
        "maxReplicas",
        "scaleMetric",
        "scaleTarget",
        "canaryTrafficPercent",
        "containerConcurrency",
        "timeout",
        "labels",
        "annotations",
        "logger",
        "batcher",
        "deploymentStrategy",
        "autoScaling",
        "workerSpec",
    }
)


def isvc_name(owner_name: str, bundle_uri: str, namespace: str = "") -> str:
    """One InferenceService per bundle: promotion turns the canary into the stable without a
    redeploy, and the name never changes under a running version.

    `<owner>-<8 hex of the bundle URI>` when KServe's host label `<isvc>-predictor-<namespace>`
    and its `app` label `isvc.<isvc>-predictor` have room for it; otherwise the owner name is shortened and the digest covers owner and bundle,
    so two long owners sharing a prefix still differ. A namespace too long for any name is
    reported by `validation.name_problem` (Degraded), not here."""
    name = f"{owner_name}-{_digest(bundle_uri)}"
    room = min(HOST_LABEL_MAX - HOST_SUFFIX - len(namespace), ISVC_NAME_MAX)
    if len(name) <= room:
        return name
    keep = max(room - DIGEST - 1, 1)
    return f"{owner_name[:keep].rstrip('-')}-{_digest(owner_name + '/' + bundle_uri)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST]


def predictor_service(isvc: str) -> str:
    return f"{isvc}-predictor"


def predictor_pod_labels(owner: Owner) -> dict[str, str]:
    """Labels KServe puts on the predictor pods (the NetworkPolicy and PodMonitor select them)."""
    return {MODEL_LABEL: owner.name, COMPONENT_LABEL: "predictor"}


def exact_decimal(value: float) -> str:
    """`value` as text that reads back as the same float: the short form ("1", "0.5") where it is
    exact, else the shortest round trip ("%g" keeps six digits: 0.1234567 became 0.123457)."""
    text = f"{value:g}"
    return text if float(text) == value else repr(value)


def build_predictor(owner: Owner, spec: Spec, bundle_uri: str, grpc: bool = True) -> dict[str, Any]:
    """The `spec.predictor` of an InferenceService: our custom predictor container, restricted, with
    the HPA fields KServe turns into a HorizontalPodAutoscaler. The gRPC port is named so that
    KServe's Service marks it `appProtocol: kubernetes.io/h2c`; Knative allows one port only, so
    router knative serves REST alone."""
    predictor = spec.predictor
    if predictor.image is None:
        raise ValueError("spec.predictor.image is unset (the operator fills in its default)")
    env, env_from = storage_env(spec)
    if spec.monitoring is not None:
        env += [
            {"name": PREDICTION_LOG_URI_ENV, "value": spec.monitoring.prediction_log_uri},
            {
                "name": PREDICTION_LOG_SAMPLE_RATE_ENV,
                "value": exact_decimal(spec.monitoring.sample_rate),
            },
        ]
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": predictor.image,
        "args": [
            PredictorFlags.MODEL_NAME,
            owner.name,
            PredictorFlags.MODEL_DIR,
            bundle_uri,
            PredictorFlags.HTTP_PORT,
            str(PREDICTOR_PORT),
            PredictorFlags.WORKERS,
            str(predictor.workers),
        ],
        "ports": [{"name": "http", "containerPort": PREDICTOR_PORT, "protocol": "TCP"}],
        "resources": resources(predictor.resources),
        # Written even when empty: removing spec.monitoring or spec.storage must take the old
        # entries off the running container, and only a field we write is compared and patched.
        "env": env,
        "envFrom": env_from,
    }
    if grpc:
        container["args"] += [PredictorFlags.GRPC_PORT, str(GRPC_PORT)]
        container["ports"].append({"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"})
    else:
        container["ports"] = [{"containerPort": PREDICTOR_PORT, "protocol": "TCP"}]
    body: dict[str, Any] = {
        "minReplicas": predictor.min_replicas,
        "maxReplicas": predictor.max_replicas,
        "scaleMetric": spec.scale_metric,
        "scaleTarget": predictor.scale_target,
        "labels": predictor_pod_labels(owner),
        **restricted_pod_fields(PREDICTOR_SCRATCH),
        "containers": [restricted_container(literal(container))],
    }
    # None, not left out, when unset: a name the spec no longer sets is taken off the
    # InferenceService (creditmodel.operator.kube.Kube.ensure), back to the namespace's default.
    body["serviceAccountName"] = predictor.service_account_name or None
    return body


def predictor_pod_spec(predictor: dict[str, Any]) -> dict[str, Any]:
    """The PodSpec part of an InferenceService's `spec.predictor` (what KServe runs; the fields
    left unset, None, are absent)."""
    return {
        k: v for k, v in predictor.items() if k not in PREDICTOR_EXTENSION_FIELDS and v is not None
    }


def build_inferenceservice(owner: Owner, spec: Spec, version: VersionRef) -> dict[str, Any]:
    """Router gatewayAPI: one InferenceService per version, in KServe Standard mode. Nothing in it
    says whether the version is the stable or the canary: KServe copies the InferenceService's
    labels and annotations onto its pod template, so a track label rolled every pod of both
    versions at each promote, abort and rollback (and with no room for a surge pod the relabelled
    stable went not Ready and traffic had nowhere to go). The CreditModel's status says which
    version is which."""
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": {
            **metadata(
                owner,
                isvc_name(owner.name, version.bundle_uri, owner.namespace),
                {VERSION_LABEL: label_value(version.version), **CLUSTER_LOCAL},
            ),
            "annotations": dict(STANDARD),
        },
        "spec": {"predictor": build_predictor(owner, spec, version.bundle_uri)},
    }


def build_knative_inferenceservice(
    owner: Owner, spec: Spec, serving: VersionRef, canary_weight: int | None
) -> dict[str, Any]:
    """Router knative: one InferenceService; KServe keeps the previous revision as the stable and
    sends `canaryTrafficPercent` to the latest (honoured in Knative mode only)."""
    predictor = build_predictor(owner, spec, serving.bundle_uri, grpc=False)
    # None without a canary (after a promote or the first deployment): the split comes off, 100% on
    # the latest revision. 0 after a canary ended otherwise (rollout.traffic: knative_hold).
    predictor["canaryTrafficPercent"] = canary_weight
    return {
        "apiVersion": ISVC_API,
        "kind": "InferenceService",
        "metadata": {
            **metadata(owner, owner.name, {VERSION_LABEL: label_value(serving.version)}),
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
    if gateway is not None:  # None for what the spec leaves unset: removing it then counts
        parent["name"] = gateway.name
        parent["namespace"] = gateway.namespace or None
        parent["sectionName"] = gateway.section_name or None
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
    # None without hostnames: removing them from the spec takes them off the route (the listener's).
    route_spec["hostnames"] = list(spec.rollout.hostnames) or None
    return {
        "apiVersion": HTTPROUTE_API,
        "kind": "HTTPRoute",
        "metadata": metadata(owner, owner.name, {}),
        "spec": route_spec,
    }


def _backend(owner: Owner, version: VersionRef, weight: int) -> dict[str, Any]:
    return {
        "group": "",
        "kind": "Service",
        "name": predictor_service(isvc_name(owner.name, version.bundle_uri, owner.namespace)),
        "port": 80,
        "weight": weight,
    }
