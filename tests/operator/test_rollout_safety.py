"""Rollout safety, transition by transition (docs/rollouts.md): weights follow readiness, drains
before deletion, promote only a Ready canary, abort, pause and resume, rollback to the previous
stable, a canary that is never Ready, the history, the CronJob refusal in status."""

from __future__ import annotations

import json
from typing import Any

import pytest

from creditmodel.operator import analysis, builders
from creditmodel.operator.model import Status
from creditmodel.operator.rollout import (
    ZERO_SINCE_ANNOTATION,
    CreditModel,
    CronJobWrite,
    Observations,
    Plan,
    Policy,
    Resolved,
    RouteState,
    needs,
    next_pass_in,
    observed_route,
    reconcile,
)
from creditmodel.operator.rollout.traffic import Backend, weights
from tests.operator.factories import BUNDLE_V1, BUNDLE_V2, T0, advance, after, model, spec
from tests.operator.test_drift import monitored
from tests.operator.test_rollout import (
    BOTH_READY,
    PASSED,
    TRAINING,
    V1_NAME,
    V2_NAME,
    canary_v2,
    condition,
    ready_canary_v2,
    serving_v1,
)

pytestmark = pytest.mark.unit

POLICY = Policy(drain_seconds=30, ready_timeout_seconds=300)
V1_ONLY = {V1_NAME: True}
V2_ONLY = {V2_NAME: True}


def route_of(plan: Plan) -> RouteState:
    (route,) = [c for c in plan.children if c["kind"] == "HTTPRoute"]
    return observed_route(route)


def step(
    current: CreditModel,
    at: float,
    ready: dict[str, bool],
    route: RouteState | None = None,
    **observed: Any,
) -> Plan:
    return reconcile(current, Observations(ready=ready, route=route, **observed), after(at), POLICY)


def promoted_v2(at: float = 120) -> tuple[CreditModel, Plan]:
    """v2 promoted by hand at `at`, both Ready; v1 starts draining."""
    current = advance(ready_canary_v2(), Plan(ready_canary_v2().status, []), action="promote")
    plan = step(current, at, BOTH_READY)
    return advance(current, plan, action=None), plan


def events(plan: Plan) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in plan.events]


# --- weights --------------------------------------------------------------------------------------

STABLE = Backend("s", None, "stable", 90)
CANARY = Backend("c", None, "canary", 10)
OLD = Backend("o", None, "draining", 0)


@pytest.mark.parametrize(
    ("ready", "expected"),
    [
        ({"s": True, "c": True, "o": True}, {"s": 90, "c": 10, "o": 0}),
        ({"s": True, "o": True}, {"s": 100, "c": 0, "o": 0}),  # canary not Ready: 0
        ({"c": True, "o": True}, {"s": 0, "c": 100, "o": 0}),  # stable down: the canary serves
        ({"o": True}, {"s": 0, "c": 0, "o": 100}),  # only the draining one can answer
        ({}, {"s": 0, "c": 0, "o": 0}),  # nothing Ready: nothing to send traffic to
    ],
)
def test_weight_only_on_ready_backends_and_100_over_them(
    ready: dict[str, bool], expected: dict[str, int]
) -> None:
    assert weights([STABLE, CANARY, OLD], ready) == expected


def test_stable_at_zero_target_still_gets_all_when_the_canary_is_down() -> None:
    at_last_step = [Backend("s", None, "stable", 0), Backend("c", None, "canary", 100)]
    assert weights(at_last_step, {"s": True}) == {"s": 100, "c": 0}


def test_first_version_gets_traffic_only_once_ready() -> None:
    first = reconcile(model(), Observations(spec_bundle=Resolved(BUNDLE_V1, "v1")), T0, POLICY)
    assert first.route_weights is None  # nothing Ready: no route to create and then patch
    deployed = first.status.history[-1]
    assert (deployed.verdict, deployed.from_version, deployed.to_version) == (
        "Deployed",
        None,
        "v1",
    )
    assert step(advance(model(), first), 1, V1_ONLY).route_weights == {V1_NAME: 100}
    assert reconcile(model(), Observations(), T0, POLICY).route_weights is None  # no version yet


def test_the_route_waits_for_a_ready_backend_and_then_stays_whatever_it_holds() -> None:
    first = reconcile(model(), Observations(spec_bundle=Resolved(BUNDLE_V1, "v1")), T0, POLICY)
    current = advance(model(), first)
    assert step(current, 1, {}, RouteState()).route_weights is None  # read: there is none
    ready = step(current, 2, V1_ONLY, RouteState())
    assert ready.route_weights == {V1_NAME: 100}
    # the stable goes not Ready: the route stays, at 0%, rather than being left as it was
    down = step(advance(current, ready), 3, {}, route_of(ready))
    assert down.route_weights == {V1_NAME: 0}


# --- promotion and the drain -----------------------------------------------------------------------


def test_promote_of_a_canary_not_ready_is_refused_and_the_stable_serves_on() -> None:
    current = advance(canary_v2(), Plan(canary_v2().status, []), action="promote")
    plan = step(current, 5, V1_ONLY)
    assert plan.status.stable == current.status.stable
    assert plan.status.canary == current.status.canary
    assert plan.route_weights == {V1_NAME: 100, V2_NAME: 0}
    assert plan.inferenceservice_names == {V1_NAME, V2_NAME}
    assert ("Warning", "PromoteRefused") in events(plan)
    assert condition(plan, "Progressing") == ("True", "PromoteRefused")
    assert condition(plan, "Ready") == ("True", "Serving")
    refused = plan.status.history[-1]
    assert (refused.verdict, refused.from_version, refused.to_version) == ("Refused", "v1", "v2")
    assert "canary v2 is not Ready" in refused.message
    assert plan.clear_action
    # once the canary is Ready and a later decision is taken, the refusal is history only
    later = step(advance(current, plan, action=None), 6, BOTH_READY)
    assert condition(later, "Progressing") == ("True", "CanaryAnalysis")


def test_promote_without_a_canary_is_refused() -> None:
    current = advance(serving_v1(), Plan(serving_v1().status, []), action="promote")
    plan = step(current, 5, V1_ONLY)
    assert plan.status.stable == current.status.stable
    assert ("Warning", "PromoteRefused") in events(plan)
    assert plan.status.history[-1].message == "promote: no canary to promote"


def test_promotion_keeps_the_old_stable_until_the_route_held_it_at_zero_for_the_drain() -> None:
    current, plan = promoted_v2(at=120)
    assert plan.status.stable is not None
    assert plan.status.stable.version == "v2"
    assert plan.route_weights == {V2_NAME: 100, V1_NAME: 0}
    route = route_of(plan)
    assert route.zero_since == {V1_NAME: "2026-01-01T12:02:00Z"}
    assert needs(current, after(121)).route
    assert next_pass_in(current, after(130), POLICY) == 20  # the drain ends at 150
    assert V1_NAME in step(current, 149, BOTH_READY, route).inferenceservice_names
    # the drain is over, but the new stable is not Ready: the old one stays (and serves)
    down = step(current, 150, V1_ONLY, route)
    assert V1_NAME in down.inferenceservice_names
    assert down.route_weights == {V2_NAME: 0, V1_NAME: 100}
    # drained and the new stable Ready: deleted, with an Event
    done = step(current, 150, BOTH_READY, route)
    assert done.inferenceservice_names == {V2_NAME}
    assert done.route_weights == {V2_NAME: 100}
    assert done.status.draining == []
    assert ("Normal", "Drained") in events(done)
    assert condition(done, "Progressing") == ("False", "Stable")


def test_drain_clock_starts_over_when_the_stored_route_gave_it_traffic() -> None:
    """A pass whose status write failed sent traffic to the old stable (its stable was down): the
    route says so, and the drain counts from the pass that takes it away again."""
    current, _ = promoted_v2(at=120)
    failover = RouteState({V2_NAME: 0, V1_NAME: 100}, {})
    again = step(current, 200, BOTH_READY, failover)
    assert V1_NAME in again.inferenceservice_names
    assert again.route_weights == {V2_NAME: 100, V1_NAME: 0}
    assert [d.since for d in again.status.draining] == ["2026-01-01T12:03:20Z"]
    assert route_of(again).zero_since[V1_NAME].startswith("2026-01-01T12:03:20")
    assert V1_NAME in step(current, 229, BOTH_READY, route_of(again)).inferenceservice_names
    assert V1_NAME not in step(current, 230, BOTH_READY, route_of(again)).inferenceservice_names


def test_route_weights_edited_by_hand_restart_the_drain() -> None:
    """Someone gave the draining version traffic in the route by hand, leaving our annotation as
    it was: the weight, not the stale annotation, says whether the route held 0%."""
    current, plan = promoted_v2(at=120)
    edited = RouteState({V2_NAME: 50, V1_NAME: 50}, route_of(plan).zero_since)
    again = step(current, 200, BOTH_READY, edited)
    assert V1_NAME in again.inferenceservice_names  # not deleted: it had traffic just now
    assert again.route_weights == {V2_NAME: 100, V1_NAME: 0}
    assert route_of(again).zero_since == {V1_NAME: "2026-01-01T12:03:20Z"}  # the clock restarts


def test_draining_version_serves_when_nothing_else_is_ready_and_its_clock_stops() -> None:
    current, _ = promoted_v2(at=120)
    plan = step(current, 130, V1_ONLY)
    assert plan.route_weights == {V2_NAME: 0, V1_NAME: 100}
    assert [d.since for d in plan.status.draining] == [None]
    assert condition(plan, "Ready") == ("False", "Deploying")
    # no drain to wait for: only a change (v2 Ready again) moves it on, or, once v2 has not been
    # Ready for the Ready timeout, the pass that reports it (Degraded StableNotReady)
    assert next_pass_in(advance(current, plan), after(131), POLICY) == 299
    late = step(advance(current, plan), 430, V1_ONLY)
    assert condition(late, "Degraded") == ("True", "StableNotReady")
    assert late.route_weights == {V2_NAME: 0, V1_NAME: 100}  # v1 keeps serving meanwhile


def test_backend_in_the_route_unknown_to_the_status_is_drained_before_deletion() -> None:
    """The route holds a backend the stored status never heard of (written by a pass whose status
    write failed): it is kept, at 0%, and deleted only once drained."""
    current = advance(ready_canary_v2(), Plan(ready_canary_v2().status, []))
    assert current.status.draining == []
    assert needs(current, after(10)).route  # read on every pass, not only while draining
    stray = builders.isvc_name("german", "s3://bundles/german/v9")
    stored = RouteState({V1_NAME: 80, V2_NAME: 10, stray: 10}, {})
    plan = step(current, 10, {**BOTH_READY, stray: True}, stored)
    assert plan.route_weights == {V1_NAME: 90, V2_NAME: 10, stray: 0}
    assert plan.retained == (stray,)
    assert stray not in plan.inferenceservice_names  # kept, never written
    route = route_of(plan)
    assert step(current, 39, BOTH_READY, route).retained == (stray,)
    done = step(current, 40, BOTH_READY, route)
    assert done.retained == ()
    assert done.route_weights == {V1_NAME: 90, V2_NAME: 10}


def test_stored_route_annotation_is_read_back() -> None:
    _, plan = promoted_v2()
    (route,) = [c for c in plan.children if c["kind"] == "HTTPRoute"]
    assert json.loads(route["metadata"]["annotations"][ZERO_SINCE_ANNOTATION]) == {
        V1_NAME: "2026-01-01T12:02:00Z"
    }
    assert observed_route(route) == RouteState(
        {V2_NAME: 100, V1_NAME: 0}, {V1_NAME: "2026-01-01T12:02:00Z"}
    )
    assert observed_route(None) == RouteState()
    route["metadata"]["annotations"][ZERO_SINCE_ANNOTATION] = "not json"
    assert observed_route(route).zero_since == {}
    route["metadata"]["annotations"][ZERO_SINCE_ANNOTATION] = "[1]"
    assert observed_route(route).zero_since == {}


def test_restart_mid_drain_resumes_from_the_status_and_the_route() -> None:
    current, plan = promoted_v2()
    stored = Status.model_validate(json.loads(json.dumps(plan.status.dump())))
    resumed = advance(current, Plan(stored, []))
    a = step(resumed, 160, BOTH_READY, route_of(plan))
    b = step(current, 160, BOTH_READY, route_of(plan))
    assert a.status.dump() == b.status.dump()
    assert a.inferenceservice_names == {V2_NAME}


# --- abort, timeout ---------------------------------------------------------------------------------


def test_abort_returns_all_traffic_to_a_ready_stable() -> None:
    current = advance(ready_canary_v2(), Plan(ready_canary_v2().status, []), action="abort")
    plan = step(current, 5, BOTH_READY)
    assert plan.status.canary is None
    assert plan.route_weights == {V1_NAME: 100, V2_NAME: 0}
    assert plan.status.rejected is not None
    assert plan.status.rejected.reason == "ManualAbort: aborted by the action annotation"
    assert plan.status.history[-1].verdict == "Aborted"
    assert condition(plan, "Degraded") == ("True", "RolledBack")


def test_abort_while_the_stable_is_down_keeps_the_canary_serving_until_the_stable_is_ready() -> (
    None
):
    current = advance(ready_canary_v2(), Plan(ready_canary_v2().status, []), action="abort")
    plan = step(current, 5, V2_ONLY)
    assert plan.status.canary is None
    assert plan.route_weights == {V1_NAME: 0, V2_NAME: 100}
    current = advance(current, plan, action=None)
    later = step(current, 100, V2_ONLY, route_of(plan))
    assert V2_NAME in later.inferenceservice_names  # never deleted while the stable is down
    back = step(current, 101, BOTH_READY, route_of(later))
    assert back.route_weights == {V1_NAME: 100, V2_NAME: 0}
    assert V2_NAME in back.inferenceservice_names  # and drains first


def test_canary_never_ready_keeps_zero_then_times_out_into_canary_not_ready() -> None:
    current = canary_v2()
    assert next_pass_in(current, after(100), POLICY) == 200
    held = step(current, 299, V1_ONLY)
    assert held.status.canary is not None
    assert held.route_weights == {V1_NAME: 100, V2_NAME: 0}
    plan = step(current, 300, V1_ONLY)
    assert plan.status.canary is None
    assert plan.route_weights == {V1_NAME: 100, V2_NAME: 0}
    assert condition(plan, "Degraded") == ("True", "CanaryNotReady")
    degraded = plan.status.condition("Degraded")
    assert degraded is not None
    assert degraded.message == "CanaryNotReady: canary v2 was not Ready within 300s"
    assert ("Warning", "RolledBack") in events(plan)
    # a paused rollout does not time out
    paused = advance(current, Plan(current.status.model_copy(update={"paused_at": "x"}), []))
    assert step(paused, 3000, V1_ONLY).status.canary is not None


# --- pause, resume ---------------------------------------------------------------------------------


def test_pause_and_resume_actions() -> None:
    current = advance(ready_canary_v2(), Plan(ready_canary_v2().status, []), action="pause")
    plan = step(current, 5, BOTH_READY)
    assert plan.clear_action
    assert plan.status.paused_at == "2026-01-01T12:00:05Z"
    assert condition(plan, "Progressing") == ("True", "Paused")
    assert plan.route_weights == {V1_NAME: 90, V2_NAME: 10}  # the weight holds
    paused = advance(current, plan, action=None)
    again = step(advance(paused, Plan(paused.status, []), action="pause"), 300, BOTH_READY)
    assert again.status.paused_at == "2026-01-01T12:00:05Z"  # paused since the first time
    assert not needs(paused, after(600)).analysis
    assert next_pass_in(paused, after(600), POLICY) is None
    held = reconcile(paused, Observations(ready=BOTH_READY, analysis=PASSED), after(600), POLICY)
    assert held.status.canary == paused.status.canary
    resumed = advance(paused, Plan(paused.status, []), action="resume")
    plan = step(resumed, 601, BOTH_READY)
    assert plan.status.paused_at is None
    assert [h.verdict for h in plan.status.history[-2:]] == ["Paused", "Resumed"]
    assert needs(advance(resumed, plan, action=None), after(602)).analysis


def test_resume_says_when_the_spec_still_pauses() -> None:
    current = ready_canary_v2()
    paused_spec = spec(
        model={"bundleURI": BUNDLE_V2}, rollout={"gateway": {"name": "gw"}, "paused": True}
    )
    current = advance(current, Plan(current.status, []), spec=paused_spec, action="resume")
    plan = step(current, 5, BOTH_READY)
    assert "spec.rollout.paused is still true" in plan.events[-1].message
    assert condition(plan, "Progressing") == ("True", "Paused")


# --- rollback to the previous stable ----------------------------------------------------------------


def test_rollback_to_the_previous_stable_without_retraining() -> None:
    current, plan = promoted_v2(at=120)
    current = advance(current, step(current, 150, BOTH_READY, route_of(plan)))  # v1 drained
    assert current.status.previous_stable is not None
    route = RouteState({V2_NAME: 100}, {})
    current = advance(current, Plan(current.status, []), action="rollback")
    plan = step(current, 200, {V2_NAME: True}, route)
    assert plan.job is None  # the previous bundle is served again: no training
    assert plan.status.stable is not None
    assert plan.status.stable.version == "v1"
    assert plan.status.previous_stable is None
    assert plan.status.rejected is not None
    assert plan.status.rejected.version == "v2"
    assert plan.inferenceservice_names == {V1_NAME, V2_NAME}  # v1 again, v2 draining
    assert plan.route_weights == {V1_NAME: 0, V2_NAME: 100}  # until v1 is Ready
    assert ("Warning", "RolledBackToPrevious") in events(plan)
    last = plan.status.history[-1]
    assert (last.verdict, last.from_version, last.to_version) == ("Reverted", "v2", "v1")
    current = advance(current, plan, action=None)
    ready = step(current, 210, BOTH_READY, route_of(plan))
    assert ready.route_weights == {V1_NAME: 100, V2_NAME: 0}
    assert ready.status.canary is None  # the spec still names v2: rejected, not rolled out again
    assert condition(ready, "Degraded") == ("True", "RolledBack")
    gone = step(current, 240, BOTH_READY, route_of(ready))
    assert gone.inferenceservice_names == {V1_NAME}


@pytest.mark.parametrize("during_canary", [True, False])
def test_rollback_refused_during_a_canary_or_without_a_previous_stable(
    during_canary: bool,
) -> None:
    current = ready_canary_v2() if during_canary else serving_v1()
    current = advance(current, Plan(current.status, []), action="rollback")
    plan = step(current, 5, BOTH_READY)
    assert plan.status.stable == current.status.stable
    assert plan.status.canary == current.status.canary
    assert ("Warning", "RollbackRefused") in events(plan)
    expected = "abort it first" if during_canary else "no previous stable"
    assert expected in plan.status.history[-1].message


# --- history ---------------------------------------------------------------------------------------


def test_history_keeps_the_last_ten_decisions_with_the_analysis_numbers() -> None:
    current = ready_canary_v2()
    checks = analysis.Result(
        "passed",
        "all good",
        (
            analysis.Check("successRate", "passed", "", 0.995),
            analysis.Check("p99LatencySeconds", "passed", "", 0.012),
            analysis.Check("scorePSI", "passed", "", 0.01),
        ),
        requests=120,
    )
    plan = reconcile(current, Observations(ready=BOTH_READY, analysis=checks), after(60), POLICY)
    advanced = plan.status.history[-1]
    assert (advanced.verdict, advanced.reason, advanced.to_version) == (
        "Advanced",
        "AnalysisPassed",
        "v2",
    )
    assert advanced.analysis is not None
    assert advanced.analysis.dump() == {
        "requests": 120,
        "successRate": 0.995,
        "p99LatencySeconds": 0.012,
        "scorePSI": 0.01,
    }
    assert advanced.at == "2026-01-01T12:01:00Z"
    assert plan.status.dump()["history"][-1]["fromVersion"] == "v1"
    for n in range(12):
        current = advance(current, Plan(plan.status, []), action="pause" if n % 2 else "resume")
        plan = step(current, 61 + n, BOTH_READY)
    assert len(plan.status.history) == 10
    assert plan.status.history[-1].verdict == "Paused"


# --- the drift CronJob refused --------------------------------------------------------------------


def test_refused_cronjob_is_an_observation_reported_in_status() -> None:
    current = monitored()
    refused = CronJobWrite("exceeded quota: no-cronjobs")
    plan = reconcile(current, Observations(ready=V1_ONLY, cronjob=refused), after(5), POLICY)
    assert plan.status.drift is not None
    assert plan.status.drift.cron_job_error == "exceeded quota: no-cronjobs"
    assert condition(plan, "Degraded") == ("True", "DriftCronJobRefused")
    assert condition(plan, "Ready") == ("True", "Serving")
    assert ("Warning", "DriftCronJobRefused") in events(plan)
    current = advance(current, plan)
    again = reconcile(current, Observations(ready=V1_ONLY, cronjob=refused), after(6), POLICY)
    assert again.events == []  # announced once
    restarted = reconcile(current, Observations(ready=V1_ONLY), after(7), POLICY)
    assert restarted.status.drift == plan.status.drift  # not written since the start: kept
    accepted = reconcile(current, Observations(ready=V1_ONLY, cronjob=CronJobWrite()), after(8))
    assert accepted.status.drift is None
    assert condition(accepted, "Degraded") == ("False", "AsExpected")


def test_monitoring_off_forgets_the_refusal() -> None:
    current = monitored()
    current = advance(
        current,
        reconcile(current, Observations(ready=V1_ONLY, cronjob=CronJobWrite("no")), after(5)),
        spec=spec(training=TRAINING),
    )
    plan = reconcile(current, Observations(ready=V1_ONLY), after(6), POLICY)
    assert plan.status.drift is None
