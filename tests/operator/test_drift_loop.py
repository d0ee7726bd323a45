"""The drift loop closed for real, on the real stack: the operator (a real process, as its RBAC-bound
ServiceAccount) creates the drift report CronJob and the predictor's prediction-log settings; a
real `creditmodel-predictor` started from the pod template KServe rendered (args, env, the storage
Secret resolved) logs what it scores to MinIO; the test runs `creditmodel-drift` with the
CronJob's own args (the real CronJob controller may also run it on its schedule: harmless, KWOK completes it); the operator reads the report, records
it, announces it and retrains, once within the cool-down. The retraining Job runs under the real
Job controller, its pod held by KWOK (image tag `hold`) until the test ends it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from creditmodel.core import jobs
from creditmodel.core.drift import DriftSummary
from creditmodel.core.prediction_log import latest_report_name
from creditmodel.core.storage import open_store
from creditmodel.operator import builders, bundles
from creditmodel.training import drift_job, synthetic
from tests.operator.running import (
    READY_TIMEOUT,
    Api,
    Operator,
    condition,
    eventually,
    rendered_predictor,
    running_operator,
)
from tests.operator.test_canary_analysis import NAME, publish_as, spec_for
from tests.operator.test_handlers import publish
from tests.predictor.conftest import TrainedBundle
from tests.predictor.server import PredictorServer
from tests.predictor.test_prediction_log_server import score
from tests.support.cluster import HOLD_TAG
from tests.support.kube import Kube
from tests.support.minio import S3Bucket
from tests.support.process import free_port

pytestmark = pytest.mark.integration
CRONJOB = f"{NAME}-drift"


@pytest.fixture
def api(crds: Kube) -> Api:
    return Api(crds)


@pytest.fixture
def drift_operator(
    crds: Kube, operator_kubeconfig: Path, tmp_path: Path, s3: S3Bucket
) -> Iterator[Operator]:
    env = {**s3.env(), "CREDITMODEL_OPERATOR_DRIFT_POLL_SECONDS": "1"}
    with running_operator(crds, operator_kubeconfig, tmp_path, env) as running:
        yield running


def monitored_model(s3: S3Bucket, kube: Kube | None = None, **monitoring: Any) -> dict[str, Any]:
    body = spec_for(s3, kube=kube)
    body["spec"]["training"] = {
        "image": f"ghcr.io/creditmodel/training:{HOLD_TAG}",
        "dataURI": f"{s3.uri}/data/applicants.csv",
        "target": "default",
        "positiveLabel": "1",
        "outputURI": f"{s3.uri}/{NAME}/trained",
    }
    body["spec"]["monitoring"] = {
        "predictionLogURI": f"{s3.uri}/predictions",
        "driftSchedule": "*/10 * * * *",
        "driftWindow": "1h",
        **monitoring,
    }
    return body


def drift_status(api: Api) -> dict[str, Any]:
    return dict(api.model(NAME).get("status", {}).get("drift") or {})


def events(api: Api, reason: str) -> list[client.CoreV1Event]:
    listed = client.CoreV1Api(api.kube.api).list_namespaced_event(api.namespace).items
    return [e for e in listed if e.reason == reason]


def run_cronjob(api: Api, cronjob: Any, previous: dict[str, Any]) -> dict[str, Any]:
    """One scheduled run: creditmodel-drift with the CronJob's own command and args (plus an
    explicit window end, so the rows just written fall inside); then the operator's record of it."""
    container = cronjob.spec.job_template.spec.template.spec.containers[0]
    assert container.command == ["creditmodel-drift"]
    end = datetime.now(UTC) + timedelta(minutes=1)
    assert drift_job.main([*container.args, "--end", end.isoformat()]) == 0
    return recorded_after(api, previous)


def recorded_after(api: Api, previous: dict[str, Any]) -> dict[str, Any]:
    """status.drift once it holds a report newer than `previous`."""
    return eventually(
        lambda: (
            (found := drift_status(api)).get("reportCreatedAt")
            and found.get("reportCreatedAt") != previous.get("reportCreatedAt")
            and found
        ),
        timeout=30,
        what="a new drift report in status.drift",
    )


def wait_logged(server: PredictorServer, rows: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.metric("creditmodel_prediction_log_written_rows_total", model=NAME) >= rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {rows} rows reached the prediction log")


def serve_logging(api: Api, isvc: dict[str, Any], log_dir: Path) -> Any:
    """The predictor KServe rendered for the InferenceService, with the env the operator gave it
    (prediction log, storage Secret); the test only flushes the log more often."""
    return rendered_predictor(
        api.kube,
        isvc["metadata"]["name"],
        log_dir,
        extra_env={"CREDITMODEL_PREDICTION_LOG_FLUSH_INTERVAL_SECONDS": "0.2"},
    )


def test_drift_reports_are_recorded_and_retrain_once_within_the_cool_down(
    api: Api, s3: S3Bucket, champion: TrainedBundle, tmp_path: Path, drift_operator: Operator
) -> None:
    v1 = publish_as(champion, f"{s3.uri}/{NAME}/v1", "v1")
    api.create_model(
        monitored_model(
            s3, api.kube, sampleRate=1, retrainOnDriftPSI=0.2, retrainCooldownSeconds=3600
        )
    )
    isvc = eventually(lambda: api.isvcs().get(builders.isvc_name(NAME, v1)), what="v1 ISVC")
    env = isvc["spec"]["predictor"]["containers"][0]["env"]
    assert {"name": "CREDITMODEL_PREDICTION_LOG_URI", "value": f"{s3.uri}/predictions"} in env
    assert {"name": "CREDITMODEL_PREDICTION_LOG_SAMPLE_RATE", "value": "1"} in env

    cronjob = eventually(
        lambda: api.batch.read_namespaced_cron_job(CRONJOB, api.namespace), what="drift CronJob"
    )
    assert cronjob.spec.schedule == "*/10 * * * *"
    assert cronjob.spec.concurrency_policy == "Forbid"
    owner = cronjob.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("CreditModel", NAME, True)
    args = cronjob.spec.job_template.spec.template.spec.containers[0].args
    assert args == [
        "--bundle", v1, "--log", f"{s3.uri}/predictions", "--model", NAME, "--window", "1h",
    ]  # fmt: skip

    # Nothing scored yet: the report says so and nothing retrains.
    empty = run_cronjob(api, cronjob, {})
    assert (empty["scoreStatus"], empty["rows"]) == ("no-data", 0)
    assert "scorePSI" not in empty

    names = [f.name for f in champion.bundle.schema.features]
    with serve_logging(api, isvc, tmp_path) as server:
        api.wait_model_ready(NAME)
        score(server, champion.bundle, synthetic.generate(2_000, seed=11, drift=0.0)[names])
        wait_logged(server, 2_000)
        calm = run_cronjob(api, cronjob, empty)
        score(server, champion.bundle, synthetic.generate(6_000, seed=12, drift=1.0)[names])
        wait_logged(server, 8_000)
        drifted = run_cronjob(api, cronjob, calm)

    assert calm["rows"] == 2_000
    assert calm["scorePSI"] < 0.2, calm
    assert drifted["rows"] == 8_000
    assert drifted["scorePSI"] > 0.2, drifted
    assert drifted["bundleVersion"] == "v1"
    assert drifted["topDriftingFeatures"], drifted
    assert drifted["reportURI"].endswith("/drift.html")
    training = eventually(
        lambda: api.model(NAME)["status"]["training"].get("jobName")
        and api.model(NAME)["status"]["training"],
        what="a drift-report retrain",
    )
    assert (training["jobName"], training["reason"]) == (f"{NAME}-train-1", "DriftReport")
    assert api.model(NAME)["status"]["training"]["driftRetrainedAt"]
    announced = [e.message for e in events(api, "DriftReport")]
    assert any(f"score PSI {drifted['scorePSI']:.3f}" in m for m in announced), announced
    started = [e.message for e in events(api, "TrainingStarted")]
    assert any("drift report score PSI" in m for m in started), started

    # The retrain fails (creditmodel-train exits with a gate failure, which the Job's pod failure
    # policy makes final: no retry pod); a second report inside the cool-down starts nothing.
    gate_failed = jobs.render(
        jobs.TerminationMessage(
            exit_code=int(jobs.ExitCode.GATE_FAILED),
            kind=jobs.ExitCode.GATE_FAILED.kind,
            failed_gates=["auc"],
        )
    )
    api.end_training_pod(f"{NAME}-train-1", int(jobs.ExitCode.GATE_FAILED), gate_failed)
    result = eventually(
        lambda: api.model(NAME)["status"]["training"].get("lastResult"),
        timeout=READY_TIMEOUT,
        what="training result",
    )
    assert (result["result"], result["reason"]) == ("GatesFailed", "GatesFailed")
    assert len(api.training_pods(f"{NAME}-train-1")) == 1  # failed at once, not retried
    again = run_cronjob(api, cronjob, drifted)
    assert again["scorePSI"] > 0.2
    assert "jobName" not in api.model(NAME)["status"]["training"]
    # Training Jobs only: the real CronJob controller may have run the drift schedule meanwhile.
    listed = api.batch.list_namespaced_job(
        api.namespace, label_selector=f"{builders.COMPONENT_LABEL}=training"
    ).items
    assert [j.metadata.name for j in listed] == [f"{NAME}-train-1"]
    assert any("not retraining: cool-down until" in e.message for e in events(api, "DriftReport"))
    assert (condition(api.model(NAME), "Ready") or {}).get("status") == "True"


def hand_written(version: str, psi: float) -> bytes:
    now = datetime.now(UTC)
    summary = DriftSummary(
        model=NAME,
        bundle_version=version,
        window_start=now - timedelta(hours=1),
        window_end=now,
        created_at=now,
        rows=500,
        files_read=1,
        score_psi=psi,
        score_status="stable",
        message=f"score PSI {psi:.3f} (stable)",
    )
    return summary.model_dump_json().encode()


def test_unreadable_report_keeps_serving_and_removing_monitoring_removes_the_cronjob(
    api: Api, s3: S3Bucket, drift_operator: Operator
) -> None:
    v1 = publish(f"{s3.uri}/{NAME}/v1", "v1")
    api.create_model(monitored_model(s3))
    isvc = builders.isvc_name(NAME, v1)
    eventually(lambda: api.batch.read_namespaced_cron_job(CRONJOB, api.namespace), what="CronJob")
    api.wait_model_ready(NAME)  # before the report breaks
    latest = latest_report_name(NAME)
    store = open_store(f"{s3.uri}/predictions")
    store.write_bytes(latest, b"{ half a report")
    broken = eventually(lambda: drift_status(api).get("error"), what="status.drift.error")
    assert "is not a drift summary" in broken
    eventually(  # kopf posts Events in the background, after the status write
        lambda: [e.type for e in events(api, "DriftReportUnreadable")] == ["Warning"],
        what="one DriftReportUnreadable Warning",
    )
    model = api.model(NAME)
    assert (condition(model, "Ready") or {}).get("status") == "True"
    assert (condition(model, "Degraded") or {}).get("status") == "False"

    store.write_bytes(latest, hand_written("v1", 0.03))
    recorded = recorded_after(api, {})
    assert "error" not in recorded
    assert recorded["scorePSI"] == 0.03

    def logging_env(the_isvc: dict[str, Any]) -> list[str]:
        container = the_isvc["spec"]["predictor"]["containers"][0]
        return [e["name"] for e in container.get("env") or [] if "PREDICTION_LOG" in e["name"]]

    assert logging_env(api.isvcs()[isvc])
    api.patch_model(NAME, {"spec": {"monitoring": None}})
    eventually(
        lambda: not api.batch.list_namespaced_cron_job(api.namespace).items,
        what="CronJob deleted",
    )
    eventually(lambda: not logging_env(api.isvcs()[isvc]), what="prediction log turned off")
    eventually(lambda: "drift" not in api.model(NAME)["status"], what="status.drift removed")


def test_report_reader_names_an_unreachable_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 down: a value naming the problem, not an exception in the reconcile loop."""
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    report = bundles._read_drift_report("s3://predictions", NAME)
    assert report.summary is None
    assert "cannot read the drift report" in (report.error or "")
    assert "S3 endpoint unreachable" in (report.error or "")


def test_refused_cronjob_is_announced_and_serving_goes_on(
    api: Api, s3: S3Bucket, drift_operator: Operator
) -> None:
    """A quota of zero CronJobs makes the API server refuse the drift CronJob: the model is still
    served and Ready, a Warning names the refusal, and the CronJob appears once the quota goes."""
    core = client.CoreV1Api(api.kube.api)
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-cronjobs"),
        spec=client.V1ResourceQuotaSpec(hard={"count/cronjobs.batch": "0"}),
    )
    core.create_namespaced_resource_quota(api.namespace, quota)
    # The resource quota controller counts usage; admission enforces the quota once it has.
    eventually(
        lambda: core.read_namespaced_resource_quota_status(
            "no-cronjobs", api.namespace
        ).status.used,
        what="quota usage counted by the resource quota controller",
    )
    v1 = publish(f"{s3.uri}/{NAME}/v1", "v1")
    api.create_model(monitored_model(s3))
    eventually(lambda: api.isvcs().get(builders.isvc_name(NAME, v1)), what="v1 ISVC")
    api.wait_model_ready(NAME)  # with the CronJob refused
    (refused,) = eventually(lambda: events(api, "DriftCronJobRefused"), what="refusal Event")
    assert refused.type == "Warning"
    assert "create CronJob" in refused.message
    assert "exceeded quota: no-cronjobs" in refused.message
    assert not api.batch.list_namespaced_cron_job(api.namespace).items

    core.delete_namespaced_resource_quota("no-cronjobs", api.namespace)
    eventually(
        lambda: api.batch.read_namespaced_cron_job(CRONJOB, api.namespace),
        timeout=60,
        what="the CronJob once the quota is gone",
    )


def test_a_same_named_cronjob_of_someone_else_is_left_alone(
    api: Api, s3: S3Bucket, drift_operator: Operator
) -> None:
    """Without spec.monitoring the operator removes its drift CronJob, but only its own."""
    theirs = client.V1CronJob(
        metadata=client.V1ObjectMeta(name=CRONJOB, labels={"team": "risk"}),
        spec=client.V1CronJobSpec(
            schedule="0 3 * * *",
            job_template=client.V1JobTemplateSpec(
                spec=client.V1JobSpec(
                    template=client.V1PodTemplateSpec(
                        spec=client.V1PodSpec(
                            restart_policy="Never",
                            containers=[client.V1Container(name="report", image="busybox")],
                        )
                    )
                )
            ),
        ),
    )
    api.batch.create_namespaced_cron_job(api.namespace, theirs)
    v1 = publish(f"{s3.uri}/{NAME}/v1", "v1")
    body = spec_for(s3)
    api.create_model(body)
    eventually(lambda: api.isvcs().get(builders.isvc_name(NAME, v1)), what="v1 ISVC")
    api.wait_model_ready(NAME)
    kept = api.batch.read_namespaced_cron_job(CRONJOB, api.namespace)
    assert kept.metadata.labels == {"team": "risk"}
    assert kept.spec.schedule == "0 3 * * *"
