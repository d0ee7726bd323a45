"""The NetworkPolicy in front of a CreditModel's predictor pods: ingress only from the Gateway's
namespace and the namespaces its proxies run in (router gatewayAPI) or Knative's ingress path
(router knative), and from the sources the operator is configured with (Prometheus by default),
on the predictor ports only. One per
CreditModel, beside its pods and owned by it: a chart-wide policy could not reach the application
namespaces the predictors run in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from creditmodel.operator.builders.common import COMPONENT_LABEL, Owner, metadata
from creditmodel.operator.builders.serving import GRPC_PORT, PREDICTOR_PORT, predictor_pod_labels
from creditmodel.operator.model import Spec
from creditmodel.operator.settings import OperatorSettings

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class IngressPolicy:
    """Who may reach predictor pods besides the Gateway's namespace: the operator's settings
    (CREDITMODEL_OPERATOR_PREDICTOR_INGRESS_FROM, ..._GATEWAY_PROXY_NAMESPACES,
    ..._KNATIVE_INGRESS_NAMESPACES)."""

    sources: Sequence[Mapping[str, Any]] = ()
    """NetworkPolicyPeer objects, as the NetworkPolicy API takes them."""
    knative_namespaces: Sequence[str] = ()
    """Where Knative's activator and ingress gateways run (router knative)."""
    gateway_proxy_namespaces: Sequence[str] = ()
    """Where the Gateway implementation's proxy pods run, besides the Gateway's namespace."""

    @classmethod
    def from_settings(cls, settings: OperatorSettings) -> IngressPolicy:
        return cls(
            tuple(settings.predictor_ingress_from),
            tuple(settings.knative_ingress_namespaces),
            tuple(settings.gateway_proxy_namespaces),
        )


def predictor_networkpolicy_name(owner_name: str) -> str:
    return f"{owner_name}-predictor"


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def build_predictor_networkpolicy(
    owner: Owner, spec: Spec, policy: IngressPolicy
) -> dict[str, Any]:
    peers: list[dict[str, Any]] = []
    ports = [{"port": PREDICTOR_PORT, "protocol": "TCP"}]
    if spec.rollout.router == "gatewayAPI":
        ports.append({"port": GRPC_PORT, "protocol": "TCP"})  # a GRPCRoute to the same pods
        gateway = spec.rollout.gateway
        home = gateway.namespace if gateway and gateway.namespace else owner.namespace
        proxies = [name for name in policy.gateway_proxy_namespaces if name != home]
        peers += [_namespace(name) for name in dict.fromkeys([home, *proxies])]
    else:
        peers += [_namespace(name) for name in policy.knative_namespaces]
    peers += [dict(peer) for peer in policy.sources]
    # An ingress rule without `from` admits everyone: with no peer at all, admit no one.
    ingress = [{"from": peers, "ports": ports}] if peers else []
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(
            owner, predictor_networkpolicy_name(owner.name), {COMPONENT_LABEL: "predictor"}
        ),
        "spec": {
            "podSelector": {"matchLabels": predictor_pod_labels(owner)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
