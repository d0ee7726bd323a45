"""Closing the drift loop, without a cluster: the drift report CronJob builder, the state machine's
handling of the drift job's latest.json (record, announce, retrain under the cool-down and the
one-Job rule) and the adapter that reads and parses that file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from creditmodel.core import drift
from creditmodel.core.drift import DriftSummary
from creditmodel.core.prediction_log import latest_report_name
from creditmodel.operator import builders, bundles
from creditmodel.operator.model import DriftStatus, VersionRef
from creditmodel.operator.rollout import (
    CreditModel,
    DriftReport,
    JobState,
    Observations,
    Plan,
    Resolved,
    needs,
    polls,
    reconcile,
)
from tests.operator.factories import BUNDLE_V1, BUNDLE_V2, T0, advance, after, model, spec
from tests.operator.test_rollout import TRAINING, V1_NAME, canary_v2, condition, serving_v1

pytestmark = pytest.mark.unit

OWNER = builders.Owner("german", "risk", "uid-1")
V1 = VersionRef(version="v1", bundle_uri=BUNDLE_V1)
LOG = "s3://predictions"
MONITORING = {
    "predictionLogURI": LOG,
    "sampleRate": 0.5,
    "driftSchedule": "15 * * * *",
    "driftWindow": "24h",
    "retrainOnDriftPSI": 0.25,
    "retrainCooldownSeconds": 3600,
}
# Monitoring without training: reports are recorded, never retrained on (the CRD refuses
# retrainOnDriftPSI without spec.training, and so does the typed spec).
WATCH_ONLY = {k: v for k, v in MONITORING.items() if k != "retrainOnDriftPSI"}
READY = {V1_NAME: True}


def summary(
    psi: float | None, at: float = 0, version: str = "v1", rows: int = 1000
) -> DriftSummary:
    """A drift job summary created `at` seconds after T0 over the 24 hours before it."""
    created = after(at)
    return DriftSummary(
        model="german",
        bundle_version=version,
        window_start=created - timedelta(hours=24),
        window_end=created,
        created_at=created,
        rows=rows if psi is not None else 0,
        files_read=3,
        score_psi=psi,
        score_status=drift.status(float("nan") if psi is None else psi),
        top_drifting_features=["duration", "credit_amount"] if psi and psi > 0.1 else [],
        report_uri=f"{LOG}/german/reports/x/drift.html" if psi is not None else None,
        message="no predictions logged in the window; no drift verdict" if psi is None else "",
    )


def monitored(**monitoring: Any) -> CreditModel:
    """v1 stable and Ready, with training and spec.monitoring."""
    current = serving_v1()
    the_spec = spec(training=TRAINING, monitoring={**MONITORING, **monitoring})
    return advance(current, Plan(current.status, []), spec=the_spec)


def report(current: CreditModel, found: DriftSummary, at: float, **observed: Any) -> Plan:
    return reconcile(
        current, Observations(ready=READY, drift_report=DriftReport(found), **observed), after(at)
    )


def events(plan: Plan, reason: str) -> list[str]:
    return [f"{e.type}: {e.message}" for e in plan.events if e.reason == reason]


def cronjob_args(plan: Plan) -> list[str]:
    (found,) = [c for c in plan.children if c["kind"] == "CronJob"]
    return list(found["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"])


# --- builders --------------------------------------------------------------------------------------


def test_drift_cronjob_runs_creditmodel_drift_on_the_stable_bundle() -> None:
    the_spec = spec(training=TRAINING, monitoring=MONITORING)
    job = builders.build_drift_cronjob(OWNER, the_spec, V1)
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "CronJob")
    assert job["metadata"]["name"] == "german-drift"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert job["metadata"]["ownerReferences"][0]["controller"] is True
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == builders.MANAGED_BY
    body = job["spec"]
    assert body["schedule"] == "15 * * * *"
    assert body["concurrencyPolicy"] == "Forbid"
    assert (body["successfulJobsHistoryLimit"], body["failedJobsHistoryLimit"]) == (3, 3)
    template = body["jobTemplate"]
    assert template["metadata"]["labels"][builders.MODEL_LABEL] == "german"
    assert template["spec"]["backoffLimit"] == 2
    pod = template["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "training:test"  # spec.training's image (defaulted)
    assert container["command"] == ["creditmodel-drift"]
    assert container["args"] == [
        "--bundle", BUNDLE_V1, "--log", LOG, "--model", "german", "--window", "24h",
    ]  # fmt: skip
    assert {"name": "S3_ENDPOINT_URL", "value": "http://minio:9000"} in container["env"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3"}}]


def test_drift_pod_takes_the_spec_resources() -> None:
    resources = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    the_spec = spec(training=TRAINING, monitoring={**MONITORING, "resources": resources})
    job = builders.build_drift_cronjob(OWNER, the_spec, V1)
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == resources


def test_drift_image_is_its_own_then_the_training_one_then_the_operator_default() -> None:
    def image(the_spec: Any) -> str:
        job = builders.build_drift_cronjob(OWNER, the_spec, V1)
        return str(job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"])

    assert image(spec(monitoring={**WATCH_ONLY, "image": "drift:1"})) == "drift:1"
    assert (
        image(spec(training={**TRAINING, "image": "train:2"}, monitoring=MONITORING)) == "train:2"
    )
    assert image(spec(monitoring=WATCH_ONLY)) == "training:test"


def test_monitoring_turns_on_the_predictor_prediction_log() -> None:
    def env(the_spec: Any) -> list[dict[str, str]]:
        isvc = builders.build_inferenceservice(OWNER, the_spec, V1)
        return list(isvc["spec"]["predictor"]["containers"][0].get("env", []))

    logged = env(spec(monitoring=WATCH_ONLY))
    assert {"name": "CREDITMODEL_PREDICTION_LOG_URI", "value": LOG} in logged
    assert {"name": "CREDITMODEL_PREDICTION_LOG_SAMPLE_RATE", "value": "0.5"} in logged
    assert not any(e["name"].startswith("CREDITMODEL_PREDICTION_LOG") for e in env(spec()))


@pytest.mark.parametrize(
    "schedule", ["0 * * * *", "*/15 2-4 1,15 jan-mar mon-fri", "@hourly", "5 4 * * 6", "0 0 ? * *"]
)
def test_valid_cron_schedules(schedule: str) -> None:
    assert builders.cron_problem(schedule) is None


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("0 * * *", "expected 5 fields"),
        ("60 * * * *", "minute: '60' is outside 0-59"),
        ("0 5-2 * * *", "hour: range '5-2' runs backwards"),
        ("*/0 * * * *", "minute: step '0'"),
        ("0 * 0 * *", "day of month: '0' is outside 1-31"),
        ("0 * * foo *", "month: 'foo'"),
        ("5 4 * * 7", "day of week: '7' is outside 0-6"),
    ],
)
def test_invalid_cron_schedules_are_named(schedule: str, problem: str) -> None:
    assert problem in (builders.cron_problem(schedule) or "")


# --- the state machine -----------------------------------------------------------------------------


def test_cronjob_follows_the_stable_and_goes_with_monitoring() -> None:
    current = monitored()
    assert needs(current, T0).drift_report
    args = cronjob_args(reconcile(current, Observations(ready=READY), T0))
    assert args[args.index("--bundle") + 1] == BUNDLE_V1
    promoted = current.status.model_copy(
        update={"stable": VersionRef(version="v2", bundle_uri=BUNDLE_V2)}
    )
    plan = reconcile(advance(current, Plan(promoted, [])), Observations(), T0)
    args = cronjob_args(plan)
    assert args[args.index("--bundle") + 1] == BUNDLE_V2
    unmonitored = advance(current, plan, spec=spec(training=TRAINING))
    plan = reconcile(unmonitored, Observations(ready=READY), T0)
    assert not [c for c in plan.children if c["kind"] == "CronJob"]
    assert plan.status.drift is None
    assert not needs(unmonitored, T0).drift_report


def test_no_cronjob_before_a_stable_version() -> None:
    current = model(spec(monitoring=WATCH_ONLY))
    assert not needs(current, T0).drift_report
    assert reconcile(current, Observations(), T0).children == []


def test_new_report_is_recorded_and_announced_once() -> None:
    current = monitored()
    plan = report(current, summary(0.05), 60)
    recorded = plan.status.drift
    assert recorded is not None
    assert (recorded.score_psi, recorded.score_status, recorded.rows) == (0.05, "stable", 1000)
    assert recorded.bundle_version == "v1"
    assert recorded.window_end == "2026-01-01T12:00:00Z"
    assert recorded.report_created_at == "2026-01-01T12:00:00Z"
    assert recorded.report_uri == f"{LOG}/german/reports/x/drift.html"
    (announced,) = events(plan, "DriftReport")
    assert announced.startswith("Normal: version v1")
    assert "score PSI 0.050 (stable)" in announced
    assert plan.job is None
    current = advance(current, plan)
    again = report(current, summary(0.05), 120)
    assert events(again, "DriftReport") == []
    assert again.status.drift == recorded


def test_report_above_the_threshold_starts_a_retrain() -> None:
    plan = report(monitored(), summary(0.4), 60)
    assert plan.job is not None
    assert plan.job["metadata"]["name"] == "german-train-1"
    assert plan.status.training.reason == "DriftReport"
    assert plan.status.training.drift_retrained_at == "2026-01-01T12:01:00Z"
    assert plan.status.training.drift_retrained_for == "v1"
    assert plan.status.drift is not None
    assert plan.status.drift.top_drifting_features == ["duration", "credit_amount"]
    (announced,) = events(plan, "DriftReport")
    assert announced.startswith("Warning:")
    assert "duration, credit_amount" in announced
    (started,) = events(plan, "TrainingStarted")
    assert "drift report score PSI 0.400 above 0.25" in started


def test_cool_down_blocks_a_second_retrain_until_it_passes() -> None:
    current = advance(monitored(), report(monitored(), summary(0.4), 60))
    finished = reconcile(current, Observations(ready=READY, job=JobState("Failed")), after(600))
    current = advance(current, finished)
    assert current.status.training.job_name is None
    blocked = report(current, summary(0.5, at=1800), 1800)
    assert blocked.job is None
    (announced,) = events(blocked, "DriftReport")
    assert "not retraining: cool-down until 2026-01-01T13:01:00Z" in announced
    current = advance(current, blocked)
    allowed = report(current, summary(0.5, at=3700), 3700)
    assert allowed.job is not None
    assert allowed.job["metadata"]["name"] == "german-train-2"
    assert allowed.status.training.drift_retrained_at == "2026-01-01T13:01:40Z"


def test_one_cool_down_for_both_drift_signals() -> None:
    """A drift report's retrain holds the live score PSI signal off too, and the other way round:
    one drift-retrain policy, one clock."""
    the_spec = spec(
        training={**TRAINING, "retrainOnScorePSI": 0.2}, monitoring=MONITORING
    )  # cool-down 3600 s
    current = advance(monitored(), Plan(monitored().status, []), spec=the_spec)
    current = advance(current, report(current, summary(0.4), 60))
    current = advance(
        current, reconcile(current, Observations(ready=READY, job=JobState("Failed")), after(120))
    )
    assert not needs(current, after(1800)).drift  # no Prometheus query it could not act on
    live = reconcile(current, Observations(ready=READY, stable_score_psi=0.9), after(1800))
    assert live.job is None
    live = reconcile(current, Observations(ready=READY, stable_score_psi=0.9), after(3700))
    assert live.job is not None
    assert live.status.training.reason == "Drift"
    current = advance(current, live)
    current = advance(
        current, reconcile(current, Observations(ready=READY, job=JobState("Failed")), after(3800))
    )
    blocked = report(current, summary(0.5, at=3900), 3900)
    assert blocked.job is None
    assert (
        "not retraining: cool-down until 2026-01-01T14:01:40Z" in events(blocked, "DriftReport")[0]
    )


def test_clock_of_operator_0_1_0_is_carried_over() -> None:
    current = monitored()
    legacy = current.status.model_copy(
        update={"drift": DriftStatus(last_retrain_at="2026-01-01T11:30:00Z")}
    )
    current = advance(current, Plan(legacy, []))
    plan = report(current, summary(0.5), 60)
    assert plan.job is None
    assert plan.status.training.drift_retrained_at == "2026-01-01T11:30:00Z"
    assert plan.status.drift is not None
    assert plan.status.drift.last_retrain_at is None


def test_running_training_job_blocks_a_drift_retrain() -> None:
    current = monitored(retrainCooldownSeconds=0)
    current = advance(current, report(current, summary(0.4), 60))
    plan = report(current, summary(0.6, at=120), 120, job=JobState("Active"))
    assert plan.job is None
    assert plan.status.training.job_name == "german-train-1"
    assert (
        "not retraining: training Job german-train-1 is running" in events(plan, "DriftReport")[0]
    )


def test_empty_window_says_so_and_never_retrains() -> None:
    plan = report(monitored(), summary(None), 60)
    assert plan.job is None
    assert plan.status.drift is not None
    assert (plan.status.drift.score_status, plan.status.drift.score_psi) == ("no-data", None)
    assert plan.status.drift.message == "no predictions logged in the window; no drift verdict"
    (announced,) = events(plan, "DriftReport")
    assert announced.startswith("Normal:")
    assert "no predictions logged" in announced


def test_report_for_an_older_bundle_version_does_not_retrain() -> None:
    plan = report(monitored(), summary(0.9, version="v0"), 60)
    assert plan.job is None
    assert "the report is for version v0, the stable is v1" in events(plan, "DriftReport")[0]


def test_no_threshold_records_without_retraining() -> None:
    current = serving_v1()
    without = {k: v for k, v in MONITORING.items() if k != "retrainOnDriftPSI"}
    current = advance(current, Plan(current.status, []), spec=spec(monitoring=without))
    plan = report(current, summary(0.9), 60)
    assert plan.job is None
    assert plan.status.drift is not None
    assert plan.status.drift.score_status == "act"
    assert "not retraining" not in events(plan, "DriftReport")[0]


def test_canary_in_progress_blocks_a_drift_retrain() -> None:
    current = canary_v2()
    the_spec = spec(model={"bundleURI": BUNDLE_V2}, training=TRAINING, monitoring=MONITORING)
    current = advance(current, Plan(current.status, []), spec=the_spec)
    plan = report(current, summary(0.9), 1)
    assert plan.status.canary is not None
    assert plan.job is None
    assert "canary v2 is being rolled out" in events(plan, "DriftReport")[0]


def test_cool_down_outlives_monitoring_turned_off_and_on() -> None:
    retrained = advance(monitored(), report(monitored(), summary(0.4), 60))
    off = advance(
        retrained,
        reconcile(retrained, Observations(ready=READY, job=JobState("Failed")), after(120)),
        spec=spec(training=TRAINING),
    )
    plan = reconcile(off, Observations(ready=READY), after(180))
    assert plan.status.drift is None
    assert plan.status.training.drift_retrained_at == "2026-01-01T12:01:00Z"
    on = advance(off, plan, spec=spec(training=TRAINING, monitoring=MONITORING))
    again = report(on, summary(0.5, at=60), 240)  # the same old latest.json, read again
    assert again.job is None
    assert "cool-down until" in events(again, "DriftReport")[0]


def test_version_starting_its_canary_in_the_same_pass_blocks_a_drift_retrain() -> None:
    """The report and a new spec bundle arrive together: the canary starts first, and the retrain
    policy sees it, so no retrain races it."""
    current = monitored()
    the_spec = spec(model={"bundleURI": BUNDLE_V2}, training=TRAINING, monitoring=MONITORING)
    current = advance(current, Plan(current.status, []), spec=the_spec)
    plan = report(current, summary(0.9), 60, spec_bundle=Resolved(BUNDLE_V2, "v2"))
    assert plan.status.canary is not None
    assert plan.status.canary.version == "v2"
    assert plan.job is None
    assert "not retraining: canary v2 is being rolled out" in events(plan, "DriftReport")[0]


def test_cronjob_is_written_after_the_serving_children() -> None:
    """Should the API server refuse the CronJob, the InferenceService and route are written."""
    kinds = [c["kind"] for c in reconcile(monitored(), Observations(ready=READY), T0).children]
    assert kinds == ["InferenceService", "HTTPRoute", "CronJob"]


def test_unreadable_report_is_recorded_once_and_serving_goes_on() -> None:
    current = advance(monitored(), report(monitored(), summary(0.05), 60))
    broken = DriftReport(error="cannot read the drift report: S3 endpoint unreachable")
    plan = reconcile(current, Observations(ready=READY, drift_report=broken), after(120))
    assert plan.status.drift is not None
    assert plan.status.drift.error == broken.error
    assert plan.status.drift.score_psi == 0.05  # the last good report stays visible
    assert [e.type for e in plan.events if e.reason == "DriftReportUnreadable"] == ["Warning"]
    assert condition(plan, "Ready") == ("True", "Serving")
    assert condition(plan, "Degraded") == ("False", "AsExpected")
    current = advance(current, plan)
    again = reconcile(current, Observations(ready=READY, drift_report=broken), after(180))
    assert again.events == []
    recovered = reconcile(
        advance(current, again), Observations(ready=READY, drift_report=DriftReport()), after(240)
    )
    assert recovered.status.drift is not None
    assert recovered.status.drift.error is None


def test_no_report_yet_leaves_no_drift_status() -> None:
    plan = reconcile(monitored(), Observations(ready=READY, drift_report=DriftReport()), T0)
    assert plan.status.drift is None
    assert plan.events == []


def test_invalid_schedule_is_degraded_naming_the_field_and_serving_goes_on() -> None:
    plan = reconcile(monitored(driftSchedule="0 25 * * *"), Observations(ready=READY), T0)
    assert not [c for c in plan.children if c["kind"] == "CronJob"]
    assert V1_NAME in plan.inferenceservice_names
    assert condition(plan, "Degraded") == ("True", "InvalidSpec")
    degraded = plan.status.condition("Degraded")
    assert degraded is not None
    assert (
        degraded.message == "spec.monitoring.driftSchedule '0 25 * * *': hour: '25' is outside 0-23"
    )
    assert condition(plan, "Ready") == ("True", "Serving")


# --- the adapter reading latest.json ---------------------------------------------------------------


def test_report_reader_parses_missing_and_corrupt_files(tmp_path: Path) -> None:
    log = str(tmp_path)
    assert bundles._read_drift_report(log, "german") == DriftReport()
    latest = tmp_path / latest_report_name("german")
    latest.parent.mkdir(parents=True)
    latest.write_text(summary(0.3).model_dump_json())
    assert bundles._read_drift_report(log, "german") == DriftReport(summary(0.3))
    latest.write_text("{not json")
    error = bundles._read_drift_report(log, "german").error or ""
    assert error.startswith(f"{log}/german/reports/latest.json is not a drift summary:"), error
    latest.write_text('{"model": "german"}')
    error = bundles._read_drift_report(log, "german").error or ""
    assert "bundle_version: Field required" in error, error


def test_report_times_keep_sub_seconds() -> None:
    first = summary(0.05)
    second = first.model_copy(update={"created_at": first.created_at + timedelta(microseconds=5)})
    current = advance(monitored(), report(monitored(), first, 60))
    plan = report(current, second, 61)
    assert len(events(plan, "DriftReport")) == 1


def test_a_monitored_model_is_passed_every_resync() -> None:
    """Its drift report and the stable's live drift come from no watch: polled each resync."""
    assert polls(monitored(), after(3600))
