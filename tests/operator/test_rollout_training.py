"""The rollout state machine's training steps: Jobs started, followed and recorded, trained bundles
rolled out, live drift retraining (pure: no cluster, no clock)."""

from __future__ import annotations

import pytest

from creditmodel.operator.rollout import (
    CreditModel,
    JobState,
    Observations,
    Plan,
    Resolved,
    needs,
    polls,
    reconcile,
    training_failure,
)
from tests.operator.factories import T0, advance, after, model, spec
from tests.operator.test_rollout import (
    TRAINING,
    V1_NAME,
    condition,
    serving_v1,
)

pytestmark = pytest.mark.unit

# --- training ---------------------------------------------------------------------------------------


def trained_model(**training: object) -> CreditModel:
    return model(spec(model={}, training={**TRAINING, **training}))


def test_training_only_model_starts_a_job_initially() -> None:
    plan = reconcile(trained_model(), Observations(), T0)
    assert plan.job is not None
    assert plan.job["metadata"]["name"] == "german-train-1"
    training = plan.status.training
    assert training.job_name == "german-train-1"
    assert training.reason == "Initial"
    assert training.bundle_uri == f"s3://bundles/german/{training.version}"
    assert condition(plan, "Training") == ("True", "Running")
    assert plan.status.phase == "Training"


def test_never_two_training_jobs_at_once() -> None:
    current = trained_model(scheduleSeconds=60)
    current = advance(current, reconcile(current, Observations(), T0))
    assert needs(current, T0).job == "german-train-1"
    plan = reconcile(current, Observations(job=JobState("Active")), after(3600))
    assert plan.job is None
    assert plan.status.training.job_name == "german-train-1"


def test_successful_training_becomes_desired_and_is_deployed() -> None:
    current = trained_model()
    current = advance(current, reconcile(current, Observations(), T0))
    uri = current.status.training.bundle_uri
    assert uri is not None
    plan = reconcile(
        current,
        Observations(job=JobState("Succeeded"), trained=Resolved(uri, "v-trained")),
        after(120),
    )
    assert plan.status.training.job_name is None
    last = plan.status.training.last_result
    assert last is not None
    assert (last.result, last.version) == ("Succeeded", "v-trained")
    assert plan.status.stable is not None
    assert plan.status.stable.bundle_uri == uri
    assert condition(plan, "Training") == ("False", "Succeeded")
    assert "TrainingSucceeded" in [e.reason for e in plan.events]


def test_a_job_found_under_the_runs_name_is_followed_for_what_it_publishes() -> None:
    """The Job's name is the run's, but the Job may be an earlier pass's (an operator that died
    between creating it and writing the status planned another version on its next pass) or a
    deleted owner's (orphaned, then adopted): before, its Succeeded was read as the planned
    version's, whose bundle no one wrote (BundleUnreadable); the Job's own arguments win."""
    current = trained_model()
    current = advance(current, reconcile(current, Observations(), T0))
    earlier = ("v20260101000000-1", "s3://bundles/german/v20260101000000-1")
    assert current.status.training.version != earlier[0]
    running = reconcile(current, Observations(job=JobState("Active", publishes=earlier)), after(5))
    assert (running.status.training.version, running.status.training.bundle_uri) == earlier
    assert running.status.training.job_name == "german-train-1"
    assert needs(advance(current, running), after(5)).job == "german-train-1"
    plan = reconcile(
        current,  # the status before the Active pass: a Job that ends between two passes
        Observations(
            job=JobState("Succeeded", publishes=earlier), trained=Resolved(*earlier[::-1])
        ),
        after(120),
    )
    last = plan.status.training.last_result
    assert last is not None
    assert (last.result, last.version, last.bundle_uri) == ("Succeeded", *earlier)
    assert plan.status.stable is not None
    assert (plan.status.stable.version, plan.status.stable.bundle_uri) == earlier


def test_a_job_that_publishes_the_planned_version_changes_nothing() -> None:
    current = trained_model()
    current = advance(current, reconcile(current, Observations(), T0))
    training = current.status.training
    assert training.version is not None
    assert training.bundle_uri is not None
    planned = JobState("Active", publishes=(training.version, training.bundle_uri))
    assert (
        reconcile(current, Observations(job=planned), after(5)).status
        == reconcile(current, Observations(job=JobState("Active")), after(5)).status
    )


def test_training_on_a_serving_model_starts_a_canary() -> None:
    current = serving_v1()
    current = advance(
        current, Plan(current.status, []), spec=spec(training={**TRAINING, "scheduleSeconds": 3600})
    )
    plan = reconcile(current, Observations(ready={V1_NAME: True}), after(3600))
    assert plan.status.training.reason == "Schedule"
    current = advance(current, plan)
    uri = current.status.training.bundle_uri or ""
    plan = reconcile(
        current,
        Observations(job=JobState("Succeeded"), trained=Resolved(uri, "v2"), ready={V1_NAME: True}),
        after(3700),
    )
    assert plan.status.canary is not None
    assert plan.status.canary.bundle_uri == uri
    # the unchanged spec bundle never overrides the trained one
    assert needs(advance(current, plan), after(3700)).resolve_bundle is None


def test_failed_job_is_recorded_and_stable_keeps_serving() -> None:
    current = serving_v1()
    current = advance(
        current, Plan(current.status, []), spec=spec(training={**TRAINING, "scheduleSeconds": 60})
    )
    current = advance(current, reconcile(current, Observations(ready={V1_NAME: True}), after(60)))
    plan = reconcile(
        current,
        Observations(
            job=JobState("Failed", "BackoffLimitExceeded", "Job has reached the backoff limit"),
            ready={V1_NAME: True},
        ),
        after(90),
    )
    last = plan.status.training.last_result
    assert last is not None
    assert (last.result, last.reason) == ("Failed", "BackoffLimitExceeded")
    assert condition(plan, "Training") == ("False", "Failed")
    assert condition(plan, "Ready") == ("True", "Serving")
    assert condition(plan, "Degraded") == ("False", "AsExpected")
    assert plan.job is None  # the schedule restarts from the failure
    assert plan.events[-1].type == "Warning"


def test_failed_initial_training_is_degraded_and_not_retried_in_a_loop() -> None:
    current = trained_model()
    current = advance(current, reconcile(current, Observations(), T0))
    plan = reconcile(current, Observations(job=JobState("Missing")), after(10))
    assert condition(plan, "Degraded") == ("True", "TrainingFailed")
    assert plan.status.training.last_result is not None
    assert plan.status.training.last_result.reason == "JobMissing"
    again = reconcile(advance(current, plan), Observations(), after(20))
    assert again.job is None


def test_trained_bundle_failing_gates_is_not_rolled_out() -> None:
    current = trained_model()
    current = advance(current, reconcile(current, Observations(), T0))
    uri = current.status.training.bundle_uri or ""
    plan = reconcile(
        current,
        Observations(job=JobState("Succeeded"), trained=Resolved(uri, "vx", gates_passed=False)),
        after(60),
    )
    assert plan.status.desired is None
    assert plan.status.stable is None
    assert condition(plan, "Training") == ("False", "GatesFailed")


def test_unreadable_trained_bundle_fails_the_run() -> None:
    current = trained_model()
    current = advance(current, reconcile(current, Observations(), T0))
    plan = reconcile(
        current,
        Observations(job=JobState("Succeeded"), trained=Resolved("x", error="checksum mismatch")),
        after(60),
    )
    last = plan.status.training.last_result
    assert last is not None
    assert last.reason == "BundleUnreadable"
    assert "checksum mismatch" in last.message


def test_no_live_drift_query_without_its_threshold() -> None:
    current = serving_v1()
    current = advance(current, Plan(current.status, []), spec=spec(training=TRAINING))
    assert not needs(current, T0).drift  # retrainOnScorePSI unset: Prometheus is not asked


def test_live_drift_retrains_once_per_cool_down() -> None:
    current = serving_v1()
    drift_spec = spec(training={**TRAINING, "retrainOnScorePSI": 0.25})
    current = advance(current, Plan(current.status, []), spec=drift_spec)
    assert needs(current, T0).drift
    calm = reconcile(current, Observations(ready={V1_NAME: True}, stable_score_psi=0.1), T0)
    assert calm.job is None
    plan = reconcile(current, Observations(ready={V1_NAME: True}, stable_score_psi=0.4), T0)
    assert plan.status.training.reason == "Drift"
    assert plan.status.training.drift_retrained_for == "v1"
    assert "live score PSI 0.400" in plan.events[-1].message
    current = advance(current, plan)
    done = reconcile(current, Observations(job=JobState("Failed")), after(60))
    current = advance(current, done)
    assert not needs(current, after(60)).drift


@pytest.mark.parametrize(
    ("termination", "expected"),
    [
        (
            '{"exit_code": 3, "failed_gates": ["auc_vs_baseline", "fairness"]}',
            ("GatesFailed", "GatesFailed", "exited 3: failed gates: auc_vs_baseline, fairness"),
        ),
        (
            '{"exit_code": 2, "error": "--target: column \'risk\' not in the data"}',
            ("Failed", "BadInput", "exited 2: --target: column 'risk' not in the data"),
        ),
        ('{"exit_code": 4, "error": "NoSuchBucket"}', ("Failed", "StorageError", "NoSuchBucket")),
        ('{"exit_code": 1}', ("Failed", "TrainingError", "exited 1")),
        ("not json", ("Failed", "BackoffLimitExceeded", "backoff limit")),
        ('["a list"]', ("Failed", "BackoffLimitExceeded", "backoff limit")),
        (None, ("Failed", "BackoffLimitExceeded", "backoff limit")),
    ],
)
def test_training_failure_prefers_creditmodel_train_own_account(
    termination: str | None, expected: tuple[str, str, str]
) -> None:
    job = JobState(
        "Failed", "BackoffLimitExceeded", "Job has reached the backoff limit", termination
    )
    result, reason, message = training_failure("german-train-1", job)
    assert (result, reason) == expected[:2]
    assert expected[2] in message


def test_job_exiting_on_gates_is_recorded_as_gates_failed() -> None:
    current = trained_model()
    current = advance(current, reconcile(current, Observations(), T0))
    job = JobState(
        "Failed", "BackoffLimitExceeded", "", '{"exit_code": 3, "failed_gates": ["auc"]}'
    )
    plan = reconcile(current, Observations(job=job), after(60))
    assert condition(plan, "Training") == ("False", "GatesFailed")


def test_a_model_that_trains_is_passed_every_resync() -> None:
    """Its Job, its schedule and its drift cool-downs: nothing of them arrives as a watch event of
    its own (a Job's does, but not the schedule falling due)."""
    current = trained_model(scheduleSeconds=60)
    assert polls(current, T0)
    assert polls(advance(current, reconcile(current, Observations(), T0)), after(30))
