"""Focused tests for the guards of the rollout state machine, continued (test_rollout_guards.py
has the helpers and the first modules): drift, observe, traffic, training. Each kills a mutant
that the other unit tests let survive (docs/rollout-mutations.md). Pure: no cluster, no clock."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from creditmodel.core import drift as core_drift
from creditmodel.core.drift import DriftSummary
from creditmodel.operator import analysis
from creditmodel.operator.model import (
    DriftStatus,
    Status,
    TrainingStatus,
)
from creditmodel.operator.rollout import (
    ZERO_SINCE_ANNOTATION,
    ChildRefusal,
    CreditModel,
    CronJobWrite,
    JobState,
    Observations,
    Plan,
    Resolved,
    RouteState,
    drift,
    needs,
    observed_route,
    traffic,
    training_failure,
)
from tests.operator.factories import BUNDLE_V1, BUNDLE_V2, T0, advance, after, model, spec
from tests.operator.test_rollout_guards import (
    BOTH,
    V1,
    V2,
    act,
    canary_v2,
    serving_v1,
    step,
)

pytestmark = pytest.mark.unit


# --- drift.py -------------------------------------------------------------------------------------


def test_migration_keeps_a_newer_drift_retrain_clock() -> None:
    """Kills drift.py migrate `status.training.drift_retrained_at or ...` operand -> False: the
    0.1.0 field (status.drift.lastRetrainAt) only fills the new one when it is empty."""
    current = serving_v1()
    training = current.status.training.model_copy(
        update={"drift_retrained_at": "2026-01-01T11:00:00Z"}
    )
    old = DriftStatus(last_retrain_at="2025-12-01T00:00:00Z")
    status = current.status.model_copy(update={"training": training, "drift": old})
    plan = step(advance(current, Plan(status, [])), 5, {V1: True})
    assert plan.status.training.drift_retrained_at == "2026-01-01T11:00:00Z"


WATCH = {
    "predictionLogURI": "s3://predictions",
    "sampleRate": 0.5,
    "driftSchedule": "15 * * * *",
    "driftWindow": "24h",
    "retrainCooldownSeconds": 3600,
}


def test_an_accepted_cronjob_clears_the_refusal_without_an_event() -> None:
    """Kills drift.py _cronjob `(warning(...),) if write.refused else ()` -> always a Warning."""
    current = serving_v1()
    current = advance(current, Plan(current.status, []), spec=spec(monitoring=WATCH))
    refused = step(current, 5, {V1: True}, cronjob=CronJobWrite("exceeded quota"))
    assert [e.reason for e in refused.events] == ["DriftCronJobRefused"]
    accepted = step(advance(current, refused), 6, {V1: True}, cronjob=CronJobWrite())
    assert accepted.status.drift is None
    assert accepted.events == []


def test_a_drift_signal_without_a_stable_is_blocked_and_says_none() -> None:
    """Kills drift.py blocked `stable is None` operand -> False and `stable.version if stable`
    -> True: no stable (nothing published yet), no drift retrain, and no crash."""
    why = drift.blocked(model(), Status(), "v1", T0)
    assert why == "the report is for version v1, the stable is none"


def test_the_drift_cool_down_ends_exactly_when_it_says() -> None:
    """Kills drift.py blocked `now < until` -> `<=`: at the end of the cool-down a retrain may
    start (the message said "cool-down until" that very second)."""
    current = serving_v1()
    watched = advance(current, Plan(current.status, []), spec=spec(monitoring=WATCH))
    training = watched.status.training.model_copy(
        update={"drift_retrained_at": "2026-01-01T12:00:00Z"}
    )
    status = watched.status.model_copy(update={"training": training})
    assert (
        drift.blocked(watched, status, "v1", after(3599)) == "cool-down until 2026-01-01T13:00:00Z"
    )
    assert drift.blocked(watched, status, "v1", after(3600)) is None


TRAINED = {
    "dataURI": "s3://data/german.csv",
    "target": "risk",
    "positiveLabel": "bad",
    "outputURI": "s3://bundles/german",
    "retrainOnScorePSI": 0.3,
}


def report(psi: float, version: str = "v1") -> DriftSummary:
    return DriftSummary(
        model="german",
        bundle_version=version,
        window_start=T0 - timedelta(hours=24),
        window_end=T0,
        created_at=T0,
        rows=1000,
        files_read=3,
        score_psi=psi,
        score_status=core_drift.status(psi),
        top_drifting_features=[],
        report_uri=None,
        message="",
    )


def retraining() -> CreditModel:
    """v1 stable and Ready; retrain on a drift report's PSI above 0.25, on a live one above 0.3."""
    current = serving_v1()
    watched = spec(training=TRAINED, monitoring={**WATCH, "retrainOnDriftPSI": 0.25})
    return advance(current, Plan(current.status, []), spec=watched)


def test_a_drift_report_at_the_threshold_does_not_retrain() -> None:
    """Kills drift.py decide `psi > threshold` -> `>=`."""
    current = retraining()
    at = drift.decide(current, Observations(), current.status, report(0.25), after(5))
    assert at.retrain is None
    above = drift.decide(current, Observations(), current.status, report(0.26), after(5))
    assert above.retrain is not None
    assert above.retrain[0] == "DriftReport"


def test_a_report_that_asks_nothing_gives_no_reason_not_to_retrain() -> None:
    """Kills drift.py decide `blocked(...) if asked else None` -> always asked: a quiet report
    about another version is announced without "not retraining"."""
    current = retraining()
    decided = drift.decide(current, Observations(), current.status, report(0.05, "v0"), after(5))
    (event,) = decided.events
    assert "not retraining" not in event.message


def test_the_drift_report_goes_first_when_both_signals_ask() -> None:
    """Kills drift.py decide `retrain is None` operand -> True: the live PSI does not replace a
    retrain the report already asked for."""
    current = retraining()
    observed = Observations(stable_score_psi=0.9)
    decided = drift.decide(current, observed, current.status, report(0.5), after(5))
    assert decided.retrain is not None
    assert decided.retrain[0] == "DriftReport"


def test_a_live_psi_without_training_or_a_stable_starts_nothing() -> None:
    """Kills drift.py decide `training is not None` and `measured is not None` operands -> True:
    a live score PSI with no spec.training, or no stable, retrains nothing (and does not fail)."""
    observed = Observations(stable_score_psi=0.9)
    untrained = serving_v1()
    assert drift.decide(untrained, observed, untrained.status, None, after(5)).retrain is None
    nothing = model(spec(training=TRAINED))
    assert drift.decide(nothing, observed, nothing.status, None, after(5)).retrain is None


@pytest.mark.parametrize(("threshold", "psi"), [(0, 0.9), (0.3, 0.3)])
def test_a_live_psi_retrains_only_above_a_threshold_that_is_set(
    threshold: float, psi: float
) -> None:
    """Kills drift.py decide `0 < threshold < psi`, either `<` -> `<=`: 0 turns the live signal
    off, and a PSI at the threshold is not above it."""
    current = serving_v1()
    the_spec = spec(training={**TRAINED, "retrainOnScorePSI": threshold})
    current = advance(current, Plan(current.status, []), spec=the_spec)
    observed = Observations(stable_score_psi=psi)
    assert drift.decide(current, observed, current.status, None, after(5)).retrain is None


def test_a_drift_report_is_described_in_words() -> None:
    """Kills drift.py describe's fallbacks: `message or 'no predictions'`, `... or "none"` and
    `"; report URI" if summary.report_uri` (True, False, negated)."""
    empty = report(0.0).model_copy(update={"score_psi": None, "rows": 0, "message": ""})
    assert drift.describe(empty).endswith(": no predictions")
    quiet = drift.describe(report(0.05))
    assert quiet.endswith("top drifting features: none")
    linked = drift.describe(
        report(0.05).model_copy(update={"report_uri": "s3://predictions/r.html"})
    )
    assert linked.endswith("top drifting features: none; report s3://predictions/r.html")


# --- observe.py -----------------------------------------------------------------------------------


def test_needs_the_readiness_of_the_canary_and_of_every_draining_version() -> None:
    """Kills observe.py needs `canary or ""` (canary -> False) and draining_names' knative guard
    (True, negated): router gatewayAPI looks up every InferenceService it may route to."""
    current = canary_v2(ready=True)
    assert needs(current, after(5)).inferenceservices == (V1, V2)
    promoted = advance(current, act(current, "promote"), action=None)
    assert [d.version for d in promoted.status.draining] == ["v1"]
    assert needs(promoted, after(15)).inferenceservices == (V2, V1)


def test_knative_needs_its_one_inferenceservice_whatever_status_draining_holds() -> None:
    """Kills observe.py draining_names' knative guard deleted: Knative drains its revisions itself;
    draining entries left from router gatewayAPI name InferenceServices it does not have."""
    current = canary_v2(ready=True)
    promoted = advance(current, act(current, "promote"), action=None)
    knative = spec(rollout={"router": "knative", "gateway": None})
    switched = advance(promoted, Plan(promoted.status, []), spec=knative)
    assert switched.status.draining
    assert needs(switched, after(15)).inferenceservices == ("german",)


def test_needs_nothing_of_what_does_not_exist_yet() -> None:
    """Kills observe.py needs `if name` -> True (an empty InferenceService name looked up) and
    the route's `status.stable is not None` -> True (a route read before there is one)."""
    fresh = needs(model(), T0)
    assert fresh.inferenceservices == ()
    assert fresh.route is False
    assert needs(serving_v1(), T0).route is True


def test_knative_reads_no_httproute() -> None:
    """Kills observe.py needs `router != "knative"` -> True."""
    current = serving_v1()
    knative = spec(rollout={"router": "knative", "gateway": None})
    assert needs(advance(current, Plan(current.status, []), spec=knative), T0).route is False


# --- traffic.py -----------------------------------------------------------------------------------


def route_of(plan: Plan) -> RouteState:
    (route,) = [c for c in plan.children if c["kind"] == "HTTPRoute"]
    return observed_route(route)


def promoted_v2() -> tuple[CreditModel, Plan]:
    """v2 promoted by hand 10 s after T0, both Ready: v1 drains from then (30 s)."""
    current = canary_v2(ready=True)
    plan = act(current, "promote")
    return advance(current, plan, action=None), plan


def test_the_drain_clock_is_carried_over_from_the_stored_route() -> None:
    """Kills traffic.py zero_since `... if route is not None and held else None` -> None (and
    `kept or ...` -> now): each pass would restart the clock and nothing would ever drain."""
    current, plan = promoted_v2()
    later = step(current, 25, BOTH, route_of(plan))
    assert route_of(later).zero_since == {V1: "2026-01-01T12:00:10Z"}
    assert [d.since for d in later.status.draining] == ["2026-01-01T12:00:10Z"]
    done = step(advance(current, later), 40, BOTH, route_of(later))
    assert V1 not in done.inferenceservice_names
    (drained,) = [e for e in done.events if e.reason == "Drained"]
    # traffic.py route's Drained message: `b.version.version if b.version` and the stable's name
    assert drained.message == ("v1 held 0% for 30s with v2 Ready: its InferenceService is deleted")


def test_a_rollback_onto_a_drained_version_keeps_it() -> None:
    """Kills traffic.py route `b.track == "draining"` -> True: the previous stable, drained long
    enough to go, becomes the stable again by a rollback in this pass and must not be deleted."""
    current, plan = promoted_v2()
    rolling = advance(current, Plan(current.status, []), action="rollback")
    back = step(rolling, 60, BOTH, route_of(plan))
    assert back.status.stable is not None
    assert back.status.stable.version == "v1"
    assert V1 in back.inferenceservice_names
    assert back.route_weights == {V1: 100, V2: 0}


def test_a_canary_is_analysed_only_at_a_weight_its_route_carries() -> None:
    """Kills traffic.py carries (-> True) and canary.py progress `if ready and not carried`
    (deleted): with the route write of its 10% refused, the route still gives the canary 0%; a
    passing verdict then would move it to 50% (and on to promotion) on traffic it never had."""
    current = canary_v2(ready=True)
    passed = analysis.Result("passed", "error rate 0.1% <= 1%")
    refused = ChildRefusal("HTTPRoute", "german", "denied by policy")
    held = step(current, 61, BOTH, RouteState({V1: 100, V2: 0}), analysis=passed, refused=refused)
    assert held.status.canary == current.status.canary  # no check: not even its time moves
    assert held.route_weights == {V1: 90, V2: 10}  # the write is asked for again
    assert held.status.canary_weight == 0  # status says what the route holds, not the plan
    assert not [e for e in held.events if e.reason == "CanaryAdvanced"]
    carried = step(current, 61, BOTH, RouteState({V1: 90, V2: 10}), analysis=passed)
    assert carried.status.canary is not None
    assert carried.status.canary.step == 1
    assert carried.status.canary_weight == 50  # written in this pass: the plan is what is routed
    edited = step(current, 30, BOTH, RouteState({V1: 100, V2: 0}))  # someone's edit, no refusal
    assert edited.status.canary_weight == 10  # this pass writes it back
    assert carried.route_weights == {V1: 50, V2: 50}
    # Router knative has no route to read: the check is not held.
    knative = spec(model={"bundleURI": BUNDLE_V2}, rollout={"router": "knative", "gateway": None})
    alone = advance(current, Plan(current.status, []), spec=knative)
    assert traffic.carries(alone, Observations(ready=BOTH, route=RouteState()), alone.status)


def test_only_a_refused_route_makes_the_status_report_the_stored_weights() -> None:
    """Kills traffic.py route `observed.refused.kind == "HTTPRoute"` -> True and `stored is not
    None` -> True: another child's refusal leaves the route written as planned, and a refused
    route the pass did not read has nothing else to report."""
    current = canary_v2(ready=True)
    quota = ChildRefusal("InferenceService", V2, "exceeded quota")
    other = step(current, 30, BOTH, RouteState({V1: 100, V2: 0}), refused=quota)
    assert other.status.canary_weight == 10
    denied = ChildRefusal("HTTPRoute", "german", "denied by policy")
    unread = step(current, 30, BOTH, None, refused=denied)
    assert unread.status.canary_weight == 10


def test_a_canary_not_ready_at_check_time_fails_whatever_its_route_holds() -> None:
    """Kills canary.py progress `if ready and not carried` operand `ready` -> True: a canary that
    is not Ready when its check falls due fails that check now; the route still giving it the
    10% it had (rewritten to 0% in this very pass) does not put the failure off."""
    current = canary_v2(ready=True)
    lost = {V1: True, V2: False}
    plan = step(current, 61, lost, RouteState({V1: 90, V2: 10}), analysis=None)
    assert plan.status.canary is not None
    assert plan.status.canary.failed_checks == 1
    assert plan.route_weights == {V1: 100, V2: 0}


def test_the_drain_clock_lists_only_draining_versions() -> None:
    """Kills traffic.py route `b.track == "draining"` (the backends given a drain clock) -> True:
    a canary at 0% because it is not Ready yet is not draining."""
    plan = step(canary_v2(), 5, {V1: True})
    assert plan.route_weights == {V1: 100, V2: 0}
    assert route_of(plan).zero_since == {}


def test_the_entry_url_waits_for_a_stable_behind_a_gateway_route() -> None:
    """Kills traffic.py entry_url's `status.stable is None` and `router != "gatewayAPI"` operands
    -> False: no URL before a version serves, and none for router knative (no HTTPRoute)."""
    hosts = {"hostnames": ["credit.example"]}
    assert traffic.entry_url(model(spec(rollout=hosts)), Status()) is None
    knative = spec(rollout={**hosts, "router": "knative", "gateway": None})
    assert traffic.entry_url(model(knative), serving_v1().status) is None
    assert (
        traffic.entry_url(model(spec(rollout=hosts)), serving_v1().status)
        == "http://credit.example"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"spec": {}, "metadata": {}},
        {"spec": {"rules": [{}]}, "metadata": {"annotations": None}},
        {"spec": {"rules": [{"backendRefs": None}]}, "metadata": {"annotations": {}}},
    ],
)
def test_a_route_without_rules_backends_or_annotations_reads_as_empty(body: dict[str, Any]) -> None:
    """Kills traffic.py observed_route's fallbacks `or [{}]`, `or []` and `or {}` -> False."""
    assert observed_route(body) == RouteState({}, {})


# --- training.py ----------------------------------------------------------------------------------


def test_a_failed_job_without_creditmodel_trains_account_says_what_kubernetes_said() -> None:
    """Kills training.py training_failure `summary.exit_code is None` operand -> False and
    `"JobMissing" if job.phase == "Missing"` -> True."""
    foreign = JobState("Failed", termination='{"error": "not ours"}')
    assert training_failure("j", foreign) == ("Failed", "JobFailed", "training Job j failed")
    assert training_failure("j", JobState("Missing"))[1] == "JobMissing"


def test_an_exit_without_detail_ends_the_message_there() -> None:
    """Kills training.py training_failure `f": {detail}" if detail` -> True."""
    plain = JobState("Failed", termination='{"exit_code": 1}')
    assert training_failure("j", plain)[2] == "Job j: creditmodel-train exited 1"


def test_a_job_outcome_counts_only_for_the_job_status_names() -> None:
    """Kills training.py follow's `name is None` and `job is None` operands -> False: a Job
    outcome with no Job in status is ignored; a Job in status not observed keeps running."""
    current = serving_v1()
    ignored = step(current, 5, {V1: True}, job=JobState("Succeeded"))
    assert ignored.status.training == current.status.training
    assert ignored.events == []
    training = TrainingStatus(runs=1, job_name="german-train-1", version="v9", reason="Schedule")
    running = advance(current, Plan(current.status.model_copy(update={"training": training}), []))
    unseen = step(running, 5, {V1: True})
    assert unseen.status.training.job_name == "german-train-1"


def training_v9() -> CreditModel:
    """v1 serving; Job german-train-1 runs, publishing v9."""
    current = serving_v1()
    training = TrainingStatus(
        runs=1,
        job_name="german-train-1",
        version="v9",
        bundle_uri=f"{BUNDLE_V1}9",
        reason="Schedule",
    )
    status = current.status.model_copy(update={"training": training})
    return advance(current, Plan(status, []), spec=spec(training=TRAINED))


@pytest.mark.parametrize(
    "trained",
    [None, Resolved(f"{BUNDLE_V1}9", "v9", error="sha256 mismatch"), Resolved(f"{BUNDLE_V1}9")],
)
def test_a_succeeded_job_with_an_unusable_bundle_is_a_failure(trained: Resolved | None) -> None:
    """Kills training.py _trained's `trained is None`, `trained.error`, `trained.version is None`
    operands -> False: no manifest, a bad one, or one without a version is not rolled out."""
    plan = step(training_v9(), 5, {V1: True}, job=JobState("Succeeded"), trained=trained)
    result = plan.status.training.last_result
    assert result is not None
    assert (result.result, result.reason) == ("Failed", "BundleUnreadable")
    assert plan.status.canary is None
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "TrainingFailed")]


def test_a_published_training_run_is_a_normal_event() -> None:
    """Kills training.py follow `"Normal" if result.result == "Succeeded"` -> Warning."""
    trained = Resolved(f"{BUNDLE_V1}9", "v9")
    plan = step(training_v9(), 5, {V1: True}, job=JobState("Succeeded"), trained=trained)
    assert ("Normal", "TrainingSucceeded") in [(e.type, e.reason) for e in plan.events]


def test_a_scheduled_run_is_not_counted_as_a_drift_retrain() -> None:
    """Kills training.py start `stable if drift else training.drift_retrained_for` -> stable (only
    a drift signal sets drift_retrained_for) and `detail or reason.lower()` -> False."""
    current = serving_v1()
    scheduled = spec(training={**TRAINED, "scheduleSeconds": 3600})
    current = advance(current, Plan(current.status, []), spec=scheduled)
    plan = step(current, 3600, {V1: True})
    assert plan.status.training.job_name is not None
    assert plan.status.training.reason == "Schedule"
    assert plan.status.training.drift_retrained_for is None
    assert plan.status.training.drift_retrained_at is None
    (started,) = [e for e in plan.events if e.reason == "TrainingStarted"]
    assert started.message == f"Job {plan.status.training.job_name} (schedule)"


def test_a_backend_that_is_not_a_predictor_service_keeps_its_name() -> None:
    """Kills values.py isvc_of_service `suffix and service.endswith(suffix)` (True, or its
    `endswith` operand deleted): a backendRef someone added by hand is read back as it is."""
    body = {"spec": {"rules": [{"backendRefs": [{"name": "maintenance-page", "weight": 0}]}]}}
    assert observed_route(body).weights == {"maintenance-page": 0}


@pytest.mark.parametrize(
    "since",
    ["yesterday", 5, None, "2024-12-31T00:00:00", "2024-12-31T00:00:00x5Z", "9999-12-31T23:59:59Z"],
)
def test_a_drain_clock_edited_into_no_time_is_no_clock(since: Any) -> None:
    """Anyone who may edit the route could stall its owner: the value reached datetime
    arithmetic on every pass (ValueError, or naive minus aware TypeError)."""
    clock = json.dumps({"a": since, "b": "2024-12-31t00:00:00z"})
    body = {"spec": {}, "metadata": {"annotations": {ZERO_SINCE_ANNOTATION: clock}}}
    assert observed_route(body).zero_since == {"b": "2024-12-31t00:00:00z"}


# --- traffic.py: the held stable ------------------------------------------------------------------


def test_a_stable_whose_update_fails_keeps_its_traffic_while_its_pods_serve() -> None:
    """Kills traffic.py weights `elif held ...` (deleted) and each condition of `held`: KServe marks
    the serving stable not Ready when an update of its Deployment fails (a quota, a missing
    ServiceAccount) while the old ReplicaSet's pods still serve. The route keeps 100% on it, and
    the status says so at once (Degraded, one Warning Event), not at the Ready timeout."""
    current = serving_v1()
    served = RouteState({V1: 100})
    failing = {V1: "pods is forbidden: exceeded quota"}
    held = step(current, 5, {V1: False}, served, copies={V1: 2}, waiting=failing)
    assert held.route_weights == {V1: 100}
    ready, degraded = held.status.condition("Ready"), held.status.condition("Degraded")
    assert ready is not None
    assert degraded is not None
    assert (ready.status, ready.reason) == ("False", "StableNotReady")
    assert "exceeded quota" in ready.message
    assert "ready pods keep the traffic" in ready.message
    assert (degraded.status, degraded.reason) == ("True", "StableNotReady")
    (warned,) = [e for e in held.events if e.reason == "StableNotReady"]
    assert warned.type == "Warning"
    assert "2 ready pods" in warned.message
    assert "exceeded quota" in warned.message
    # the next pass keeps it and says nothing new
    again = step(advance(current, held), 10, {V1: False}, served, copies={V1: 2})
    assert again.route_weights == {V1: 100}
    assert not [e for e in again.events if e.reason == "StableNotReady"]
    # no ready pod, or a route that no longer gives it traffic: nothing to hold
    assert step(current, 5, {V1: False}, served).route_weights == {V1: 0}
    assert step(current, 5, {V1: False}, served, copies={V1: 0}).route_weights == {V1: 0}
    assert step(current, 5, {V1: False}, RouteState({V1: 0}), copies={V1: 2}).route_weights == {
        V1: 0
    }
    # KServe saying nothing: the event says only what is known
    quiet = step(current, 5, {V1: False}, served, copies={V1: 2})
    (said,) = [e.message for e in quiet.events if e.reason == "StableNotReady"]
    assert said == "v1 is not Ready; its 2 ready pods keep all the traffic"
    # a status without conditions (hand-edited, an older operator's) still gets its one Event
    bare = advance(current, Plan(current.status.model_copy(update={"conditions": []}), []))
    assert [e.reason for e in step(bare, 5, {V1: False}, served, copies={V1: 2}).events] == [
        "StableNotReady"
    ]
    # a Ready stable with its pods is simply served: nothing held, nothing announced
    fine = step(current, 5, {V1: True}, served, copies={V1: 2})
    assert fine.route_weights == {V1: 100}
    assert not [e for e in fine.events if e.reason == "StableNotReady"]
    # KServe Ready again: Serving, Degraded clears
    back = step(advance(current, held), 15, {V1: True}, served, copies={V1: 2})
    ready = back.status.condition("Ready")
    assert ready is not None
    assert (ready.status, ready.reason) == ("True", "Serving")


def test_a_canary_is_never_held() -> None:
    """Kills traffic.py held `observed.ready.get(stable, False)` -> the canary's name: only the
    stable the route already carries is held; a canary not Ready gets nothing, whatever its pods,
    and a Ready stable takes all of it."""
    current = canary_v2(ready=True)
    plan = step(current, 5, {V1: True, V2: False}, RouteState({V1: 90, V2: 10}), copies={V2: 2})
    assert plan.route_weights == {V1: 100, V2: 0}
    neither = step(
        current, 5, {V1: False, V2: False}, RouteState({V1: 90, V2: 10}), copies={V1: 1, V2: 2}
    )
    assert neither.route_weights == {V1: 100, V2: 0}
