"""Training Jobs for real: the operator creates the Job, the real Job controller runs it and KWOK
plays the kubelet through our stages (tests/support/kwok), selected by the training image tag the
CreditModel names: `hold` keeps the pod running until the test, playing creditmodel-train, has
published a bundle to MinIO and ends the pod; `fail-exit<N>` fails it with exit code N and the
termination message creditmodel-train leaves. The rollout follows, through KServe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from creditmodel.core import jobs
from creditmodel.operator import builders
from tests.operator.running import (
    GROUP,
    PLURAL,
    READY_TIMEOUT,
    VERSION,
    Api,
    Operator,
    condition,
    eventually,
    running_operator,
)
from tests.operator.test_handlers import publish, sample
from tests.support.kube import Kube
from tests.support.minio import S3Bucket

pytestmark = pytest.mark.integration


@pytest.fixture
def api(crds: Kube) -> Api:
    return Api(crds)


@pytest.fixture
def s3_operator(
    crds: Kube, operator_kubeconfig: Path, tmp_path: Path, s3: S3Bucket
) -> Iterator[Operator]:
    with running_operator(crds, operator_kubeconfig, tmp_path, s3.env()) as running:
        yield running


def training_spec(s3: S3Bucket, tag: str = "hold", **extra: Any) -> dict[str, Any]:
    return {
        "image": f"ghcr.io/creditmodel/training:{tag}",
        "dataURI": f"{s3.uri}/data/german.csv",
        "target": "credit_risk",
        "positiveLabel": "bad",
        "outputURI": f"{s3.uri}/trained",
        **extra,
    }


def create_training_only(api: Api, s3: S3Bucket, tag: str = "hold", **extra: Any) -> None:
    """The sample with no bundle: the operator must train the first version."""
    body = sample(s3)
    body["spec"]["model"] = {}
    body["spec"]["training"] = training_spec(s3, tag, **extra)
    api.create_model(body)


def exits_ok(training: dict[str, Any]) -> str:
    """creditmodel-train's termination message after publishing `training`'s bundle."""
    summary = jobs.TerminationMessage(
        exit_code=int(jobs.ExitCode.OK),
        kind=jobs.ExitCode.OK.kind,
        model_name="german-credit",
        version=training["version"],
        uri=training["bundleURI"],
        gates_passed=True,
    )
    return jobs.render(summary)


def job(api: Api, name: str) -> Any:
    return api.batch.read_namespaced_job(name, api.namespace)


def running_training(api: Api) -> dict[str, Any]:
    """status.training once the operator has recorded the Job it created."""
    return eventually(
        lambda: api.model("german-credit").get("status", {}).get("training", {}).get("jobName")
        and api.model("german-credit")["status"]["training"],
        what="status.training.jobName",
    )


def test_successful_training_job_publishes_and_deploys(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    create_training_only(api, s3)
    created = eventually(lambda: job(api, "german-credit-train-1"), what="training Job")
    container = created.spec.template.spec.containers[0]
    assert container.command == ["creditmodel-train"]
    assert container.args[container.args.index("--data") + 1] == f"{s3.uri}/data/german.csv"
    assert created.metadata.owner_references[0].kind == "CreditModel"
    training = running_training(api)
    assert training["jobName"] == "german-credit-train-1"
    assert container.args[container.args.index("--output") + 1] == training["bundleURI"]
    assert (condition(api.model("german-credit"), "Training") or {}).get("reason") == "Running"
    assert api.model("german-credit")["status"]["phase"] == "Training"

    eventually(  # the Job controller's pod, held running by KWOK (image tag hold)
        lambda: api.batch.read_namespaced_job_status(
            "german-credit-train-1", api.namespace
        ).status.active,
        what="an active training pod",
    )
    publish(training["bundleURI"], training["version"])  # what the training pod does, then exits
    api.end_training_pod("german-credit-train-1", 0, exits_ok(training))
    status = eventually(
        lambda: api.model("german-credit")["status"]
        if api.model("german-credit")["status"].get("stable")
        else None,
        what="trained version deployed",
    )
    job_status = api.batch.read_namespaced_job_status("german-credit-train-1", api.namespace)
    assert job_status.status.succeeded == 1  # the Job controller's verdict
    assert status["stable"] == {"version": training["version"], "bundleURI": training["bundleURI"]}
    assert status["training"]["lastResult"]["result"] == "Succeeded"
    assert "jobName" not in status["training"]
    assert builders.isvc_name("german-credit", training["bundleURI"]) in api.isvcs()
    assert (condition(api.model("german-credit"), "Training") or {}).get("reason") == "Succeeded"
    trained = builders.isvc_name("german-credit", training["bundleURI"])
    api.wait_isvc_ready(trained)
    api.wait_model_ready("german-credit")


def test_an_orphaned_training_job_is_adopted_with_the_version_it_published(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    """A CreditModel deleted with --cascade=orphan and applied again finds its first run's Job
    under the run's name. Before: the operator's RBAC had no patch on Jobs, so the adoption was
    Forbidden (Degraded, Stalled); and the Job's Succeeded was read as the new run's, planned as
    another version a few seconds later, whose bundle nobody wrote (BundleUnreadable)."""
    create_training_only(api, s3)
    eventually(lambda: job(api, "german-credit-train-1"), what="training Job")
    training = running_training(api)
    publish(training["bundleURI"], training["version"])
    api.end_training_pod("german-credit-train-1", 0, exits_ok(training))
    eventually(
        lambda: api.model("german-credit")["status"].get("stable"), what="trained version deployed"
    )
    api.custom.delete_namespaced_custom_object(
        GROUP, VERSION, api.namespace, PLURAL, "german-credit", propagation_policy="Orphan"
    )
    eventually(
        lambda: not job(api, "german-credit-train-1").metadata.owner_references,
        what="the training Job orphaned by the garbage collector",
    )
    eventually(
        lambda: "german-credit" not in api.models(),
        what="the CreditModel gone (finalizer released)",
    )
    body = sample(s3)
    body["spec"]["model"] = {}
    body["spec"]["training"] = training_spec(s3)
    uid = api.create_model(body)["metadata"]["uid"]
    eventually(
        lambda: [r.uid for r in job(api, "german-credit-train-1").metadata.owner_references or []]
        == [uid],
        what="the orphaned Job adopted by the CreditModel made again",
    )
    status = eventually(
        lambda: api.model("german-credit")["status"]
        if api.model("german-credit")["status"].get("stable")
        else None,
        timeout=READY_TIMEOUT,
        what="the adopted run's version deployed",
    )
    assert status["stable"] == {"version": training["version"], "bundleURI": training["bundleURI"]}
    last = status["training"]["lastResult"]
    assert (last["result"], last["version"]) == ("Succeeded", training["version"]), last
    api.wait_model_ready("german-credit")
    s3_operator.assert_never_forbidden()


def test_failed_training_job_is_recorded_and_stable_keeps_serving(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    """A crash (exit 1, no termination message): the Job controller retries once (backoffLimit
    1, its 10 s back-off) and gives up; the operator reports the Job controller's reason."""
    v1 = publish(f"{s3.uri}/german-credit/v1", "v1")
    body = sample(s3)
    body["spec"]["training"] = training_spec(s3, "fail-exit1", scheduleSeconds=2)
    api.create_model(body)
    eventually(lambda: builders.isvc_name("german-credit", v1) in api.isvcs(), what="stable ISVC")
    api.wait_model_ready("german-credit")
    eventually(lambda: job(api, "german-credit-train-1"), what="scheduled training Job")
    result = eventually(
        lambda: api.model("german-credit")["status"]["training"].get("lastResult"),
        timeout=READY_TIMEOUT,
        what="a training result",
    )
    failed = api.batch.read_namespaced_job_status("german-credit-train-1", api.namespace)
    assert failed.status.failed == 2, failed.status  # backoffLimit 1: two pods
    assert result["result"] == "Failed"
    assert result["reason"] == "BackoffLimitExceeded"
    assert "backoff limit" in result["message"]
    model = api.model("german-credit")
    assert model["status"]["stable"]["version"] == "v1"
    assert (condition(model, "Ready") or {}).get("status") == "True"
    assert (condition(model, "Degraded") or {}).get("status") == "False"
    assert set(api.isvcs()) == {builders.isvc_name("german-credit", v1)}
    events = client.CoreV1Api(api.kube.api).list_namespaced_event(api.namespace).items
    assert any(e.reason == "TrainingFailed" and e.type == "Warning" for e in events)


def test_training_gate_failure_is_not_rolled_out(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    create_training_only(api, s3)
    eventually(lambda: job(api, "german-credit-train-1"), what="training Job")
    training = running_training(api)
    publish(training["bundleURI"], training["version"], gates_passed=False)
    api.end_training_pod("german-credit-train-1", 0, exits_ok(training))
    result = eventually(
        lambda: api.model("german-credit")["status"]["training"].get("lastResult"),
        what="a training result",
    )
    assert result["result"] == "GatesFailed"
    assert "stable" not in api.model("german-credit")["status"]
    assert api.isvcs() == {}


def test_failed_training_reports_creditmodel_train_own_reason(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    """The training container's termination message (its JSON summary) names the cause: KWOK
    ends the pod of image tag fail-exit3 as creditmodel-train does when a gate fails."""
    create_training_only(api, s3, "fail-exit3", backoffLimit=0)
    result = eventually(
        lambda: api.model("german-credit")["status"]["training"].get("lastResult"),
        timeout=READY_TIMEOUT,
        what="a training result",
    )
    (pod,) = api.training_pods("german-credit-train-1")
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == jobs.ExitCode.GATE_FAILED
    assert (result["result"], result["reason"]) == ("GatesFailed", "GatesFailed")
    assert "failed gates: auc_vs_baseline" in result["message"]
