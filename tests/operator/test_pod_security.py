"""Pod Security "restricted", proven on a real kube-apiserver (its PodSecurity admission plugin is
built in and on): in a namespace labelled pod-security.kubernetes.io/enforce=restricted, the training
Job, the drift CronJob and pods with the pod templates the operator writes (the Job's, the
CronJob's and the InferenceService predictor's, which KServe turns into its Deployment) are
admitted without a warning, and the same pods stripped of their securityContext are refused, so
that the check can fail. The predictors' NetworkPolicy is accepted there too."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from creditmodel.operator import builders
from creditmodel.operator.model import Spec, VersionRef
from creditmodel.operator.settings import OperatorSettings
from tests.operator.factories import BUNDLE_V1, spec
from tests.support.kube import Kube

pytestmark = pytest.mark.integration

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
}
V1 = VersionRef(version="v1", bundle_uri=BUNDLE_V1)


@pytest.fixture
def restricted(kube: Kube) -> Iterator[str]:
    """A namespace enforcing (and warning about) Pod Security restricted."""
    core = client.CoreV1Api(kube.api)
    name = f"restricted-{uuid.uuid4().hex[:8]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RESTRICTED))
    )
    try:
        yield name
    finally:
        core.delete_namespace(name)


def full_spec() -> Spec:
    return spec(
        predictor={"serviceAccountName": "credit-predictor"},
        training={
            "dataURI": "s3://data/german.csv",
            "target": "risk",
            "positiveLabel": "bad",
            "outputURI": "s3://bundles/german",
        },
        monitoring={"predictionLogURI": "s3://predictions"},
    )


def children(namespace: str) -> dict[str, dict[str, Any]]:
    owner = builders.Owner("german", namespace, str(uuid.uuid4()))
    the_spec = full_spec()
    return {
        "job": builders.build_training_job(owner, the_spec, 1, "v1", "s3://bundles/german/v1"),
        "cronjob": builders.build_drift_cronjob(owner, the_spec, V1),
        "isvc": builders.build_inferenceservice(owner, the_spec, V1),
        "networkpolicy": builders.build_predictor_networkpolicy(
            owner, the_spec, builders.IngressPolicy.from_settings(OperatorSettings())
        ),
    }


def pods(namespace: str) -> dict[str, dict[str, Any]]:
    """Pod manifests with each pod template the operator causes to exist."""
    made = children(namespace)
    job_template = made["job"]["spec"]["template"]
    cron_template = made["cronjob"]["spec"]["jobTemplate"]["spec"]["template"]
    predictor = made["isvc"]["spec"]["predictor"]
    templates = {
        "training": (job_template["metadata"]["labels"], job_template["spec"]),
        "drift": (cron_template["metadata"]["labels"], cron_template["spec"]),
        "predictor": (predictor["labels"], builders.predictor_pod_spec(predictor)),
    }
    return {
        kind: {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{kind}-{uuid.uuid4().hex[:6]}", "labels": labels},
            "spec": copy.deepcopy(pod_spec),
        }
        for kind, (labels, pod_spec) in templates.items()
    }


def without_security_context(pod: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(pod)
    stripped["spec"].pop("securityContext", None)
    for container in stripped["spec"]["containers"]:
        container.pop("securityContext", None)
    return stripped


def pod_security_warnings(headers: Any) -> str:
    """The API server's PodSecurity warning (a Warning header, its quotes escaped), if any."""
    warning = str((headers or {}).get("Warning", "")).replace('\\"', '"')
    return warning if "PodSecurity" in warning else ""


@pytest.mark.parametrize("kind", ["training", "drift", "predictor"])
def test_operator_pods_are_admitted_under_restricted(
    kube: Kube, restricted: str, kind: str
) -> None:
    core = client.CoreV1Api(kube.api)
    pod = pods(restricted)[kind]
    created, _, headers = core.create_namespaced_pod_with_http_info(restricted, pod)
    assert created.metadata.name == pod["metadata"]["name"]
    assert not pod_security_warnings(headers)


@pytest.mark.parametrize("kind", ["training", "drift", "predictor"])
def test_the_same_pods_without_security_context_are_refused(
    kube: Kube, restricted: str, kind: str
) -> None:
    core = client.CoreV1Api(kube.api)
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_pod(restricted, without_security_context(pods(restricted)[kind]))
    assert caught.value.status == 403
    message = json.loads(caught.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message, message
    for violation in ("allowPrivilegeEscalation", "runAsNonRoot", "seccompProfile"):
        assert violation in message, message


def test_training_job_and_drift_cronjob_are_admitted_without_a_warning(
    kube: Kube, restricted: str
) -> None:
    """Pod Security only enforces on pods; on workloads it warns. Ours draw no warning, and the same
    Job without its securityContext does, so the check is not vacuous."""
    batch = client.BatchV1Api(kube.api)
    made = children(restricted)
    _, _, headers = batch.create_namespaced_job_with_http_info(restricted, made["job"])
    assert not pod_security_warnings(headers)
    _, _, headers = batch.create_namespaced_cron_job_with_http_info(restricted, made["cronjob"])
    assert not pod_security_warnings(headers)

    bare = copy.deepcopy(made["job"])
    bare["metadata"]["name"] += "-bare"
    bare["spec"]["template"] = without_security_context(bare["spec"]["template"])
    _, _, headers = batch.create_namespaced_job_with_http_info(restricted, bare)
    assert 'would violate PodSecurity "restricted:latest"' in pod_security_warnings(headers)


def test_predictor_networkpolicy_is_accepted_and_selects_the_predictor_pods(
    kube: Kube, restricted: str
) -> None:
    made = children(restricted)
    networking = client.NetworkingV1Api(kube.api)
    created = networking.create_namespaced_network_policy(restricted, made["networkpolicy"])
    selector = created.spec.pod_selector.match_labels
    assert selector.items() <= made["isvc"]["spec"]["predictor"]["labels"].items()
    (rule,) = created.spec.ingress
    namespaces = [
        peer.namespace_selector.match_labels.get("kubernetes.io/metadata.name")
        for peer in rule._from
    ]
    # the Gateway's namespace, where Envoy Gateway runs its proxies by default, Prometheus's
    assert namespaces == ["gateway-system", "envoy-gateway-system", "monitoring"]
    assert [port.port for port in rule.ports] == [builders.PREDICTOR_PORT, builders.GRPC_PORT]
