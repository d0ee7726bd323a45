"""Our KWOK pod stages (tests/support/kwok) on the real stack: the Job controller and KWOK turn a
training image tag into a failed pod with an exit code and termination message, hold a pod until a
test ends it, and keep a pod whose args name `kwok-never-ready` Running but never Ready."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from creditmodel.core import jobs
from tests.support.cluster import HOLD_TAG, NEVER_READY_SEGMENT, ClusterKube, end_pod
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def job(name: str, image: str, policy: str = "File") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "train", "image": image, "terminationMessagePolicy": policy}
                    ],
                }
            },
        },
    }


def pods_of(cluster: ClusterKube, job_name: str) -> list[client.V1Pod]:
    return list(
        client.CoreV1Api(cluster.api)
        .list_namespaced_pod(cluster.namespace, label_selector=f"job-name={job_name}")
        .items
    )


def terminated(pod: client.V1Pod) -> client.V1ContainerStateTerminated | None:
    statuses = pod.status.container_statuses or []
    return statuses[0].state.terminated if statuses and statuses[0].state else None


@pytest.mark.parametrize(
    ("code", "kind", "policy"),
    [
        (3, "gate_failed", "File"),
        (2, "bad_input", "File"),
        (4, "storage", "File"),
        (1, None, "File"),
        (1, None, "FallbackToLogsOnError"),
    ],
)
def test_fail_exit_tag_fails_the_job_with_that_exit_code(
    cluster: ClusterKube, code: int, kind: str | None, policy: str
) -> None:
    batch = client.BatchV1Api(cluster.api)
    image = f"registry.invalid/t:fail-exit{code}"
    batch.create_namespaced_job(cluster.namespace, job("t", image, policy))
    failed = eventually(
        lambda: batch.read_namespaced_job_status("t", cluster.namespace).status.failed,
        60,
        "Job pod failed",
    )
    assert failed == 1
    (pod,) = pods_of(cluster, "t")
    assert pod.status.phase == "Failed"
    state = terminated(pod)
    assert state is not None
    assert state.exit_code == code
    summary = jobs.parse(state.message)
    if kind is None:  # a crash: nothing, or a log tail; not creditmodel-train's summary
        assert summary is None
        if policy == "File":
            assert not state.message
        else:
            assert "Traceback" in state.message
    else:
        assert summary is not None
        assert (summary.exit_code, summary.kind) == (code, kind)
        assert summary.failed_gates == (["auc_vs_baseline"] if code == 3 else [])
    eventually(
        lambda: any(
            c.type == "Failed" and c.status == "True"
            for c in batch.read_namespaced_job_status("t", cluster.namespace).status.conditions
            or []
        ),
        30,
        "Job Failed",
    )


def test_hold_tag_runs_until_the_test_ends_the_pod(cluster: ClusterKube) -> None:
    batch = client.BatchV1Api(cluster.api)
    batch.create_namespaced_job(cluster.namespace, job("h", f"registry.invalid/t:{HOLD_TAG}"))
    (pod,) = eventually(
        lambda: [p for p in pods_of(cluster, "h") if p.status.phase == "Running"], 60, "Running"
    )
    time.sleep(3)  # KWOK's fast stage would have completed it by now
    status = batch.read_namespaced_job_status("h", cluster.namespace).status
    assert (status.active, status.succeeded) == (1, None)
    message = jobs.render(jobs.TerminationMessage(exit_code=0, kind="ok", version="v7"))
    end_pod(cluster.api, cluster.namespace, pod.metadata.name, 0, message)
    eventually(
        lambda: batch.read_namespaced_job_status("h", cluster.namespace).status.succeeded,
        60,
        "Job succeeded",
    )
    (done,) = pods_of(cluster, "h")
    state = terminated(done)
    assert state is not None
    assert (state.exit_code, state.message) == (0, message)


def test_never_ready_segment_keeps_a_deployment_unavailable(cluster: ClusterKube) -> None:
    apps = client.AppsV1Api(cluster.api)
    labels = {"app": "nr"}
    container = {
        "name": "c",
        "image": "registry.invalid/p:test",
        "args": ["--model_dir", f"s3://b/m/{NEVER_READY_SEGMENT}/v2"],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nr"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }
    apps.create_namespaced_deployment(cluster.namespace, deployment)
    core = client.CoreV1Api(cluster.api)
    (pod,) = eventually(
        lambda: [
            p
            for p in core.list_namespaced_pod(cluster.namespace, label_selector="app=nr").items
            if p.status.phase == "Running"
        ],
        60,
        "pod Running",
    )
    time.sleep(3)
    pod = core.read_namespaced_pod(pod.metadata.name, cluster.namespace)
    ready = {c.type: c.status for c in pod.status.conditions or []}
    assert ready["Ready"] == "False"
    assert not apps.read_namespaced_deployment("nr", cluster.namespace).status.ready_replicas
