"""The `cluster` fixture is the real stack: KServe's webhooks default and refuse, its controller
renders a Deployment, the scheduler places the pods on the KWOK node, KWOK makes them Ready, the
InferenceService becomes Ready without any test writing status, the garbage collector cascades,
PodSecurity is enforced and a Job's pods complete."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.cluster import KWOK_NODE, Cluster, ClusterKube
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
# Generous: the target is 30 s, but the suite shares two cores with other work.
START_BUDGET_S = 120


def inference_service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        # No gateway controller runs, so only a cluster-local ISVC can become Ready (KServe waits
        # for its HTTPRoutes to be accepted otherwise).
        "metadata": {"name": name, "labels": {"networking.kserve.io/visibility": "cluster-local"}},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "maxReplicas": 3,
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": "registry.invalid/creditmodel/predictor:test",
                        "args": ["--http_port", "8080"],
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    }
                ],
            }
        },
    }


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}


def test_stack_starts_within_budget(cluster_stack: Cluster) -> None:
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in cluster_stack.timings.items())
    print(f"\ncluster start: {timings}")
    assert cluster_stack.timings["total"] < START_BUDGET_S, timings


def test_inference_service_becomes_ready_through_kserve_and_kwok(cluster: ClusterKube) -> None:
    objects = client.CustomObjectsApi(cluster.api)
    apps = client.AppsV1Api(cluster.api)
    core = client.CoreV1Api(cluster.api)
    ns, name = cluster.namespace, "scorer"
    objects.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, inference_service(name))

    stored = objects.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    container = stored["spec"]["predictor"]["containers"][0]
    assert container.get("resources", {}).get("requests"), "the defaulting webhook did not run"

    deployment = eventually(
        lambda: (
            d := apps.read_namespaced_deployment(f"{name}-predictor", ns)
        ).status.ready_replicas
        and d,
        60,
        "predictor Deployment available",
    )
    assert deployment.spec.template.spec.containers[0].image == container["image"]
    pods = core.list_namespaced_pod(ns, label_selector=f"serving.kserve.io/inferenceservice={name}")
    assert pods.items
    assert all(p.spec.node_name == KWOK_NODE for p in pods.items)
    assert all(p.status.phase == "Running" for p in pods.items)

    ready = eventually(
        lambda: (
            (isvc := objects.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name))
            and conditions(isvc).get("Ready") == "True"
            and isvc
        ),
        60,
        "InferenceService Ready=True",
    )
    assert ready["status"]["address"]["url"].startswith("http://")
    hpa = client.AutoscalingV2Api(cluster.api).read_namespaced_horizontal_pod_autoscaler(
        f"{name}-predictor", ns
    )
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 3)
    assert hpa.spec.metrics[0].resource.name == "cpu"

    objects.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)

    def deployment_gone() -> bool:
        try:
            apps.read_namespaced_deployment(f"{name}-predictor", ns)
        except ApiException as exc:
            return exc.status == 404
        return False

    eventually(deployment_gone, 60, "Deployment deleted by the garbage collector")


@pytest.mark.parametrize("name", ["credit.v2", "1credit"])
def test_kserve_validating_webhook_refuses_bad_names(cluster: ClusterKube, name: str) -> None:
    objects = client.CustomObjectsApi(cluster.api)
    with pytest.raises(ApiException) as refused:
        objects.create_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, PLURAL, inference_service(name)
        )
    assert refused.value.status == 403, refused.value.body
    assert "inferenceservice.kserve-webhook-server.validator" in refused.value.body


def test_pod_security_admission_is_enforced(cluster: ClusterKube) -> None:
    namespace = cluster.cluster.create_namespace(cluster.api, "restricted", "restricted")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "main", "image": "registry.invalid/busybox"}]},
    }
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(cluster.api).create_namespaced_pod(namespace, pod)
    assert refused.value.status == 403
    assert "violates PodSecurity" in refused.value.body


def test_job_pods_succeed_through_kwok(cluster: ClusterKube) -> None:
    """The job controller runs; KWOK's stage files complete a Job's pods at once (exit 0)."""
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "train", "image": "registry.invalid/training:test"}],
                }
            },
        },
    }
    batch = client.BatchV1Api(cluster.api)
    batch.create_namespaced_job(cluster.namespace, job)
    eventually(
        lambda: batch.read_namespaced_job_status("train", cluster.namespace).status.succeeded,
        60,
        "Job succeeded",
    )
