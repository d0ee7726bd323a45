"""Operator settings from the environment (prefix CREDITMODEL_OPERATOR_), typed and validated at
start-up so a misconfigured Deployment fails at once with the variable's name."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditmodel.operator.validation import DNSLabel, HttpURL, Image

PROMETHEUS_PEER: dict[str, Any] = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


_PEER_KEYS = {"podSelector", "namespaceSelector", "ipBlock"}


def _peer(peer: dict[str, Any]) -> dict[str, Any]:
    """A NetworkPolicyPeer the API server takes, checked at start-up: `{}` or an unknown key
    would have every CreditModel's predictor NetworkPolicy refused at reconcile time."""
    unknown = set(peer) - _PEER_KEYS
    if not peer or unknown:
        raise ValueError("a peer names podSelector, namespaceSelector or ipBlock, and nothing else")
    if not all(isinstance(value, dict) for value in peer.values()):
        raise ValueError("podSelector, namespaceSelector and ipBlock are objects")
    if "ipBlock" in peer and ("cidr" not in peer["ipBlock"] or len(peer) > 1):
        raise ValueError("an ipBlock peer has a cidr and nothing beside it")
    return peer


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITMODEL_OPERATOR_", extra="ignore")

    prometheus_url: HttpURL | None = None
    """Prometheus HTTP API used for canary analysis when a CreditModel names none."""
    resync_seconds: float = Field(default=30.0, ge=0.1, le=3600, allow_inf_nan=False)
    """Upper bound between two reconcile passes of a CreditModel that looks at something no watch
    event announces: a bundle not published yet, a canary's analysis, anything of training or
    monitoring. A CreditModel that only serves is passed when a watch event or its rollout's clock
    asks, and at the full re-read (children_resync_seconds)."""
    children_resync_seconds: float = Field(default=600.0, ge=1, le=86400, allow_inf_nan=False)
    """Upper bound between two full re-reads of a CreditModel's children (each one read and
    compared, stale InferenceServices pruned). A change to a child (an edit of its spec, labels
    or annotations, a deletion) arrives from the watch stream and is corrected at once; this
    re-read is the safety net, so it is long: each re-read costs six API reads per model, and at a
    thousand CreditModels a short period is most of the API server's load in a steady cluster."""
    predictor_image: Image = "ghcr.io/creditmodel/predictor:0.1.0"
    """Predictor image for CreditModels whose spec.predictor.image is unset."""
    training_image: Image = "ghcr.io/creditmodel/training:0.1.0"
    """Training image for CreditModels whose spec.training.image is unset."""
    prometheus_namespace_label: Annotated[str, Field(pattern=r"^$|^[a-zA-Z_][a-zA-Z0-9_]*$")] = (
        "namespace"  # pasted into every analysis query: a Prometheus label name, or nothing
    )
    """Label carrying the predictor pod's namespace in Prometheus (PodMonitor/ServiceMonitor
    scrapes add `namespace`), matched in every analysis query so that same-named models in other
    namespaces never mix in. Empty: no namespace matcher (static scrape configs)."""
    prometheus_timeout_seconds: float = Field(default=10.0, gt=0, le=300, allow_inf_nan=False)
    drift_poll_seconds: float = Field(default=60.0, ge=1, le=86400, allow_inf_nan=False)
    """Least time between two reads of a CreditModel's latest drift report from the log store
    (reports come from a CronJob, hourly by default: polling faster only costs S3 requests)."""
    drain_seconds: float = Field(default=30.0, ge=0, le=3600, allow_inf_nan=False)
    """How long the HTTPRoute holds 0% on a version (the old stable after a promotion, a canary
    rolled back) before its InferenceService is deleted: in-flight requests finish and the Gateway
    has programmed the new weights."""
    canary_ready_timeout_seconds: float = Field(default=600.0, gt=0, le=86400, allow_inf_nan=False)
    """How long a new canary may take to become Ready (weight 0% meanwhile) before it is rolled
    back with Degraded reason CanaryNotReady."""
    peering_name: str = "creditmodel-operator"
    workers: int | None = Field(default=None, ge=1)
    """Cap on kopf's per-object event workers (None: kopf's default, unbounded). A worker lingers
    on its object for kopf's idle timeout, so a small cap serialises bursts of new objects."""
    predictor_network_policy: bool = True
    """Create a NetworkPolicy per CreditModel (<name>-predictor) admitting ingress to its predictor
    pods only from the Gateway's namespace and its proxies' (or Knative's, router knative) and the
    sources below."""
    gateway_proxy_namespaces: list[DNSLabel] = Field(
        default_factory=lambda: ["envoy-gateway-system"], max_length=32
    )
    """Namespaces where the Gateway implementation runs its proxy pods when they are not in the
    Gateway's own namespace (router gatewayAPI): Envoy Gateway runs them in its controller's
    namespace by default. Implementations that deploy the proxy beside the Gateway (Istio, for
    one) need nothing here."""
    predictor_ingress_from: list[Annotated[dict[str, Any], AfterValidator(_peer)]] = Field(
        default_factory=lambda: [PROMETHEUS_PEER], max_length=32
    )
    """NetworkPolicyPeer objects (JSON) that may also reach predictor pods: Prometheus by default."""
    knative_ingress_namespaces: list[DNSLabel] = Field(
        default_factory=lambda: ["knative-serving", "kourier-system", "istio-system"],
        max_length=32,
    )
    """Namespaces of Knative's activator and ingress gateway (router knative)."""
