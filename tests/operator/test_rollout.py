"""The rollout state machine, transition by transition (pure: no cluster, no clock)."""

from __future__ import annotations

import pytest

from creditmodel.operator import analysis, builders
from creditmodel.operator.model import Status
from creditmodel.operator.rollout import (
    CreditModel,
    Observations,
    Plan,
    Policy,
    Resolved,
    needs,
    next_pass_in,
    polls,
    reconcile,
)
from tests.operator.factories import BUNDLE_V1, BUNDLE_V2, T0, advance, after, model, spec

pytestmark = pytest.mark.unit

PASSED = analysis.Result("passed", "all good")
FAILED = analysis.Result("failed", "success rate 0.5 (min 0.99)")
INCONCLUSIVE = analysis.Result("inconclusive", "3 canary requests")
V1_NAME = builders.isvc_name("german", BUNDLE_V1)
V2_NAME = builders.isvc_name("german", BUNDLE_V2)


def condition(plan: Plan, kind: str) -> tuple[str, str]:
    found = plan.status.condition(kind)
    assert found is not None
    return found.status, found.reason


def serving_v1() -> CreditModel:
    """A model whose v1 is stable and Ready."""
    first = model()
    plan = reconcile(first, Observations(spec_bundle=Resolved(BUNDLE_V1, "v1")), T0)
    current = advance(first, plan)
    plan = reconcile(current, Observations(ready={V1_NAME: True}), T0)
    return advance(current, plan)


def canary_v2() -> CreditModel:
    """v1 stable, v2 just started as canary at step 0, not Ready yet (0%)."""
    current = serving_v1()
    current = advance(current, Plan(current.status, []), spec=spec(model={"bundleURI": BUNDLE_V2}))
    plan = reconcile(
        current, Observations(spec_bundle=Resolved(BUNDLE_V2, "v2"), ready={V1_NAME: True}), T0
    )
    return advance(current, plan)


def ready_canary_v2() -> CreditModel:
    """v1 stable, v2 canary at step 0 and Ready since T0 (10%; the analysis clock starts)."""
    current = canary_v2()
    return advance(current, reconcile(current, Observations(ready=BOTH_READY), T0))


BOTH_READY = {V1_NAME: True, V2_NAME: True}
TRAINING = {
    "dataURI": "s3://data/german.csv",
    "target": "risk",
    "positiveLabel": "bad",
    "outputURI": "s3://bundles/german",
}
"""spec.training of the trained-model tests (test_rollout_training.py, test_drift.py, ...)."""


def check(current: CreditModel, result: analysis.Result | None, at: float) -> Plan:
    ready = {V1_NAME: True, V2_NAME: result is not None}
    return reconcile(current, Observations(ready=ready, analysis=result), after(at))


# --- first deployment ------------------------------------------------------------------------------


def test_new_object_asks_to_resolve_its_bundle() -> None:
    assert needs(model(), T0).resolve_bundle == BUNDLE_V1


def test_first_version_goes_straight_to_stable_with_its_isvc_and_no_route_yet() -> None:
    plan = reconcile(model(), Observations(spec_bundle=Resolved(BUNDLE_V1, "v1")), T0)
    assert plan.status.stable is not None
    assert plan.status.stable.version == "v1"
    assert plan.status.canary is None
    # the route comes with the first Ready backend (test_rollout_safety)
    assert [c["kind"] for c in plan.children] == ["InferenceService"]
    assert condition(plan, "Ready") == ("False", "Deploying")
    assert condition(plan, "Progressing") == ("True", "Deploying")
    assert plan.status.phase == "Progressing"
    (event,) = plan.events  # one Event: the first version is announced once
    assert (event.reason, event.message) == (
        "Deploying",
        f"first version v1 ({BUNDLE_V1}) goes straight to stable",
    )


def test_ready_once_the_stable_isvc_is_ready() -> None:
    current = serving_v1()
    assert current.status.phase == "Ready"
    ready = current.status.condition("Ready")
    assert ready is not None
    assert ready.status == "True"
    assert ready.message == "v1 serves 100% of traffic"
    assert ready.observed_generation == 1
    assert current.status.observed_generation == 1


def test_condition_transition_time_only_moves_on_status_change() -> None:
    current = serving_v1()
    plan = reconcile(current, Observations(ready={V1_NAME: True}), after(600))
    before, later = current.status.condition("Ready"), plan.status.condition("Ready")
    assert before is not None
    assert later is not None
    assert later.last_transition_time == before.last_transition_time
    plan = reconcile(current, Observations(ready={V1_NAME: False}), after(600))
    moved = plan.status.condition("Ready")
    assert moved is not None
    assert moved.last_transition_time == "2026-01-01T12:10:00Z"


def test_unreadable_bundle_is_degraded_and_serves_nothing_new() -> None:
    plan = reconcile(
        model(), Observations(spec_bundle=Resolved(BUNDLE_V1, error="no manifest.json")), T0
    )
    assert plan.status.stable is None
    assert plan.children == []
    assert condition(plan, "Degraded") == ("True", "BundleUnavailable")
    assert (
        "no manifest.json" in (plan.status.condition("Degraded") or pytest.fail("missing")).message
    )
    assert plan.status.phase == "Degraded"


def test_bundle_with_failed_gates_is_refused() -> None:
    plan = reconcile(
        model(), Observations(spec_bundle=Resolved(BUNDLE_V1, "v1", gates_passed=False)), T0
    )
    assert plan.status.stable is None
    assert condition(plan, "Degraded") == ("True", "BundleUnavailable")


def test_a_bundle_with_the_stables_version_at_another_uri_is_refused_as_a_canary() -> None:
    """Metrics tell versions apart by their label: a canary of the stable's version would be
    judged on the stable's traffic too (and its score PSI against itself would be 0)."""
    current = serving_v1()
    current = advance(current, Plan(current.status, []), spec=spec(model={"bundleURI": BUNDLE_V2}))
    observed = Observations(spec_bundle=Resolved(BUNDLE_V2, "v1"), ready={V1_NAME: True})
    plan = reconcile(current, observed, T0)
    assert plan.status.canary is None
    assert plan.status.stable == current.status.stable
    assert plan.route_weights == {V1_NAME: 100}
    degraded = plan.status.condition("Degraded")
    assert degraded is not None
    assert (degraded.status, degraded.reason) == ("True", "BundleUnavailable")
    assert "its manifest's version v1 is the stable's" in degraded.message


def test_adopted_bundle_is_not_resolved_again() -> None:
    assert needs(serving_v1(), T0).resolve_bundle is None


# --- canary -----------------------------------------------------------------------------------------


def test_a_version_after_the_first_is_announced_then_started() -> None:
    current = serving_v1()
    current = advance(current, Plan(current.status, []), spec=spec(model={"bundleURI": BUNDLE_V2}))
    observed = Observations(spec_bundle=Resolved(BUNDLE_V2, "v2"), ready={V1_NAME: True})
    plan = reconcile(current, observed, T0)
    assert [e.reason for e in plan.events] == ["NewVersion", "CanaryStarted"]
    assert plan.events[0].message == f"spec asks for version v2 ({BUNDLE_V2})"


def test_changed_bundle_starts_a_canary_at_zero_until_it_is_ready() -> None:
    current = canary_v2()
    canary = current.status.canary
    assert canary is not None
    assert (canary.version, canary.step, canary.ready_at) == ("v2", 0, None)
    assert current.status.canary_weight == 0
    assert current.status.phase == "Progressing"
    plan = reconcile(current, Observations(ready={V1_NAME: True}), after(5))
    assert plan.route_weights == {V1_NAME: 100, V2_NAME: 0}
    assert plan.inferenceservice_names == {V1_NAME, V2_NAME}
    assert condition(plan, "Ready") == ("True", "Serving")
    assert condition(plan, "Progressing") == ("True", "WaitingForReady")
    assert not needs(current, after(600)).analysis  # no analysis of a canary never Ready

    plan = reconcile(current, Observations(ready=BOTH_READY), after(5))
    assert plan.route_weights == {V1_NAME: 90, V2_NAME: 10}
    assert plan.status.canary_weight == 10
    assert plan.status.canary is not None
    assert plan.status.canary.ready_at == plan.status.canary.last_check_at == "2026-01-01T12:00:05Z"
    assert [e.reason for e in plan.events] == ["CanaryReady"]
    assert condition(plan, "Progressing") == ("True", "CanaryAnalysis")
    route = plan.children[-1]
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [90, 10]


def test_no_analysis_before_the_interval() -> None:
    current = ready_canary_v2()
    assert not needs(current, after(59)).analysis
    assert needs(current, after(60)).analysis
    assert next_pass_in(current, after(45), Policy()) == 15
    plan = check(current, PASSED, 30)
    assert plan.status.canary == current.status.canary


def test_passed_check_advances_a_step() -> None:
    plan = check(ready_canary_v2(), PASSED, 60)
    assert plan.status.canary is not None
    assert plan.status.canary.step == 1
    assert plan.status.canary_weight == 50
    assert plan.status.canary.last_check_at == "2026-01-01T12:01:00Z"
    assert [e.reason for e in plan.events] == ["CanaryAdvanced"]


def test_passing_the_last_step_promotes_and_drains_the_old_stable() -> None:
    current = ready_canary_v2()
    current = advance(current, check(current, PASSED, 60))
    plan = check(current, PASSED, 120)
    assert plan.status.stable is not None
    assert plan.status.stable.version == "v2"
    assert plan.status.previous_stable is not None
    assert plan.status.previous_stable.version == "v1"
    assert plan.status.canary is None
    assert plan.status.canary_weight == 0
    assert plan.inferenceservice_names == {V1_NAME, V2_NAME}  # v1 drains first
    assert plan.route_weights == {V2_NAME: 100, V1_NAME: 0}
    assert [(d.version, d.since) for d in plan.status.draining] == [("v1", "2026-01-01T12:02:00Z")]
    assert [e.reason for e in plan.events] == ["Promoted"]
    assert condition(plan, "Progressing") == ("True", "Draining")
    assert condition(plan, "Ready") == ("True", "Serving")


def test_inconclusive_check_neither_advances_nor_counts() -> None:
    plan = check(ready_canary_v2(), INCONCLUSIVE, 60)
    canary = plan.status.canary
    assert canary is not None
    assert (canary.step, canary.failed_checks) == (0, 0)
    assert canary.last_analysis is not None
    assert canary.last_analysis.verdict == "inconclusive"
    assert plan.status.canary_weight == 10


def test_failed_checks_roll_back_at_the_limit() -> None:
    current = ready_canary_v2()
    plan = check(current, FAILED, 60)
    assert plan.status.canary is not None
    assert plan.status.canary.failed_checks == 1
    assert [e.type for e in plan.events] == ["Warning"]
    current = advance(current, plan)
    plan = check(current, FAILED, 120)
    assert plan.status.canary is None
    assert plan.status.canary_weight == 0
    assert plan.status.stable is not None
    assert plan.status.stable.version == "v1"
    assert plan.status.rejected is not None
    assert plan.status.rejected.version == "v2"
    assert plan.inferenceservice_names == {V1_NAME, V2_NAME}  # v2 drains first
    assert plan.route_weights == {V1_NAME: 100, V2_NAME: 0}
    assert condition(plan, "Degraded") == ("True", "RolledBack")
    assert condition(plan, "Ready") == ("True", "Serving")
    assert plan.status.phase == "Degraded"
    assert "AnalysisFailed: 2/2 checks failed" in (plan.status.rejected.reason)


def test_rolled_back_version_is_not_retried_until_the_spec_changes() -> None:
    current = ready_canary_v2()
    current = advance(current, check(current, FAILED, 60))
    current = advance(current, check(current, FAILED, 120))
    plan = reconcile(current, Observations(ready={V1_NAME: True}), after(180))
    assert plan.status.canary is None
    assert condition(plan, "Degraded") == ("True", "RolledBack")
    # back to v1 in the spec: nothing to roll out, no longer degraded
    current = advance(current, plan, spec=spec())
    plan = reconcile(
        current, Observations(spec_bundle=Resolved(BUNDLE_V1, "v1"), ready={V1_NAME: True}), T0
    )
    assert condition(plan, "Degraded") == ("False", "AsExpected")
    # named again: a new attempt
    current = advance(current, plan, spec=spec(model={"bundleURI": BUNDLE_V2}))
    plan = reconcile(
        current, Observations(spec_bundle=Resolved(BUNDLE_V2, "v2"), ready={V1_NAME: True}), T0
    )
    assert plan.status.rejected is None
    assert plan.status.canary is not None
    assert plan.status.canary.version == "v2"


def test_a_resolution_of_another_uri_is_not_adopted() -> None:
    """The spec moved on while its previous bundle was being resolved: wait for the new one."""
    current = advance(
        serving_v1(), Plan(serving_v1().status, []), spec=spec(model={"bundleURI": BUNDLE_V2})
    )
    stale = Observations(spec_bundle=Resolved(BUNDLE_V1, "v1-again"), ready={V1_NAME: True})
    plan = reconcile(current, stale, after(5))
    assert plan.status.desired == current.status.desired
    assert plan.status.canary is None
    assert needs(advance(current, plan), after(6)).resolve_bundle == BUNDLE_V2


def test_canary_not_ready_at_check_time_counts_as_failed_and_loses_its_weight() -> None:
    plan = check(ready_canary_v2(), None, 60)
    assert plan.status.canary is not None
    assert plan.status.canary.failed_checks == 1
    assert "not Ready" in (plan.status.canary.last_analysis or pytest.fail("missing")).message
    assert plan.route_weights == {V1_NAME: 100, V2_NAME: 0}
    stale = reconcile(  # a verdict from before the canary lost its Ready condition
        ready_canary_v2(), Observations(ready={V1_NAME: True}, analysis=PASSED), after(60)
    )
    assert stale.status.canary is not None
    assert (stale.status.canary.step, stale.status.canary.failed_checks) == (0, 1)


def test_paused_canary_holds_its_weight() -> None:
    current = ready_canary_v2()
    paused = spec(
        model={"bundleURI": BUNDLE_V2}, rollout={"gateway": {"name": "gw"}, "paused": True}
    )
    current = advance(current, Plan(current.status, []), spec=paused)
    assert not needs(current, after(600)).analysis
    assert next_pass_in(current, after(600), Policy()) is None
    plan = check(current, FAILED, 600)
    assert plan.status.canary == current.status.canary
    assert condition(plan, "Progressing") == ("True", "Paused")


@pytest.mark.parametrize(("action", "stable"), [("promote", "v2"), ("abort", "v1")])
def test_manual_action_promotes_or_aborts(action: str, stable: str) -> None:
    current = ready_canary_v2()
    current = advance(current, Plan(current.status, []), action=action)
    assert not needs(current, after(600)).analysis
    plan = reconcile(current, Observations(ready={V1_NAME: True, V2_NAME: True}), after(5))
    assert plan.status.canary is None
    assert plan.status.stable is not None
    assert plan.status.stable.version == stable
    assert plan.clear_action


def test_unknown_action_is_refused_and_removed() -> None:
    current = canary_v2()
    current = advance(current, Plan(current.status, []), action="yolo")
    plan = reconcile(current, Observations(ready={V1_NAME: True}), after(5))
    assert plan.status.canary == current.status.canary
    assert plan.clear_action
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "UnknownAction")]
    # refused like every other action: a history entry, which `kubectl describe` shows later
    last = plan.status.history[-1]
    assert (last.verdict, last.reason) == ("Refused", "UnknownAction")
    assert last.message.startswith("action 'yolo' is not one of promote")
    # a client string in status is bounded
    huge = advance(current, Plan(current.status, []), action="x" * 100_000)
    said = reconcile(huge, Observations(ready={V1_NAME: True}), after(5)).status.history[-1]
    assert said.message.startswith(f"action {'x' * 64!r} (100000 characters) is not one of")
    exact = advance(current, Plan(current.status, []), action="y" * 64)  # not cut: no count
    said = reconcile(exact, Observations(ready={V1_NAME: True}), after(5)).status.history[-1]
    assert said.message.startswith(f"action {'y' * 64!r} is not one of")


def test_new_bundle_during_a_canary_replaces_it() -> None:
    current = ready_canary_v2()
    current = advance(current, check(current, PASSED, 60))
    v3 = "s3://bundles/german/v3"
    current = advance(current, Plan(current.status, []), spec=spec(model={"bundleURI": v3}))
    observed = Observations(spec_bundle=Resolved(v3, "v3"), ready=BOTH_READY)
    plan = reconcile(current, observed, after(70))
    canary = plan.status.canary
    assert canary is not None
    assert (canary.version, canary.step) == ("v3", 0)
    assert plan.status.canary_weight == 0  # v3 is not Ready yet; v2 drains at 0%
    assert plan.route_weights == {V1_NAME: 100, builders.isvc_name("german", v3): 0, V2_NAME: 0}
    assert [d.version for d in plan.status.draining] == ["v2"]
    assert "replaces canary v2" in plan.events[-1].message


def test_reverting_the_spec_to_the_stable_cancels_the_canary() -> None:
    current = ready_canary_v2()
    current = advance(current, Plan(current.status, []), spec=spec())
    observed = Observations(spec_bundle=Resolved(BUNDLE_V1, "v1"), ready=BOTH_READY)
    plan = reconcile(current, observed, after(5))
    assert plan.status.canary is None
    assert "CanaryCancelled" in [e.reason for e in plan.events]
    assert [d.version for d in plan.status.draining] == ["v2"]  # it had traffic: it drains
    assert plan.route_weights == {V1_NAME: 100, V2_NAME: 0}


def test_restart_continues_from_status_alone() -> None:
    """A fresh operator sees only the stored status: the same step comes out."""
    current = ready_canary_v2()
    current = advance(current, check(current, PASSED, 60))
    stored = current.status.model_validate(current.status.dump())
    resumed = advance(current, Plan(stored, []))
    assert check(resumed, PASSED, 120).status.dump() == check(current, PASSED, 120).status.dump()


def test_knative_router_drives_one_isvc_through_canary_traffic_percent() -> None:
    knative = {"router": "knative", "steps": [20, 60]}
    current = model(spec(rollout=knative))
    current = advance(current, reconcile(current, Observations(Resolved(BUNDLE_V1, "v1")), T0))
    current = advance(
        current,
        Plan(current.status, []),
        spec=spec(model={"bundleURI": BUNDLE_V2}, rollout=knative),
    )
    plan = reconcile(current, Observations(Resolved(BUNDLE_V2, "v2"), ready={"german": True}), T0)
    (isvc,) = plan.children
    assert isvc["metadata"]["name"] == "german"
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert plan.status.knative_hold is None  # a canary carries its own percent
    assert BUNDLE_V2 in isvc["spec"]["predictor"]["containers"][0]["args"]
    assert needs(advance(current, plan), T0).inferenceservices == ("german",)
    not_ready = reconcile(advance(current, plan), Observations(ready={"german": False}), T0)
    (isvc,) = not_ready.children
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0  # the new revision is not Ready
    assert not_ready.status.canary_weight == 0
    assert not_ready.status.knative_hold is None  # a running canary is no hold
    # promoted: Knative drains the old revision itself, nothing waits in status.draining
    promoting = advance(advance(current, plan), Plan(plan.status, []), action="promote")
    promoted = reconcile(promoting, Observations(ready={"german": True}), after(1))
    assert promoted.status.stable is not None
    assert promoted.status.stable.version == "v2"
    assert promoted.status.draining == []
    assert condition(promoted, "Progressing") == ("False", "Stable")
    assert promoted.children[0]["spec"]["predictor"]["canaryTrafficPercent"] is None  # removed
    assert promoted.status.knative_hold is None


@pytest.mark.parametrize("action", ["abort", "rollback-by-spec"])
def test_knative_router_keeps_the_stables_revision_after_a_canary_ends_without_promotion(
    action: str,
) -> None:
    """With the canary's revision the newest Ready one, leaving canaryTrafficPercent out after an
    abort sent it 100% (KServe's split without a percent is all to the latest Ready revision);
    0 keeps all traffic on the last rolled-out revision, the stable's, until a new canary starts
    or a version is promoted (a restart reads the hold back from status)."""
    knative = {"router": "knative", "steps": [20, 60]}
    current = model(spec(rollout=knative))
    nothing_yet = reconcile(current, Observations(Resolved(BUNDLE_V1, error="no manifest")), T0)
    assert nothing_yet.children == []
    assert nothing_yet.status.knative_hold is None
    current = advance(current, reconcile(current, Observations(Resolved(BUNDLE_V1, "v1")), T0))
    first = reconcile(current, Observations(ready={"german": True}), T0)
    assert first.children[0]["spec"]["predictor"]["canaryTrafficPercent"] is None
    current = advance(current, first)
    current = advance(
        current,
        Plan(current.status, []),
        spec=spec(model={"bundleURI": BUNDLE_V2}, rollout=knative),
    )
    current = advance(
        current,
        reconcile(current, Observations(Resolved(BUNDLE_V2, "v2"), ready={"german": True}), T0),
    )
    assert current.status.canary is not None
    if action == "abort":
        ending = advance(current, Plan(current.status, []), action="abort")
        ended = reconcile(ending, Observations(ready={"german": True}), after(1))
    else:  # the spec goes back to the stable's bundle: the canary is cancelled
        ending = advance(
            current,
            Plan(current.status, []),
            spec=spec(model={"bundleURI": BUNDLE_V1}, rollout=knative),
        )
        ended = reconcile(
            ending, Observations(Resolved(BUNDLE_V1, "v1"), ready={"german": True}), after(1)
        )
    (isvc,) = ended.children
    assert ended.status.canary is None
    assert ended.status.stable is not None
    assert ended.status.stable.version == "v1"
    assert BUNDLE_V1 in isvc["spec"]["predictor"]["containers"][0]["args"]
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0
    later = reconcile(
        advance(ending, ended, action=None), Observations(ready={"german": True}), after(2)
    )
    assert later.children[0]["spec"]["predictor"]["canaryTrafficPercent"] == 0  # held
    assert Status.model_validate(later.status.dump()).knative_hold is True  # survives a restart


def test_only_a_pass_that_looks_outside_the_watch_is_repeated_every_resync() -> None:
    """A new CreditModel resolves its bundle (it may be published later) and a canary due for a
    check asks Prometheus: those are passed every resync period. A stable serving with nothing to
    check, or a canary waiting for KServe's Ready (which comes as a watch event), is not."""
    assert polls(model(), T0)
    assert not polls(serving_v1(), after(3600))
    serving = serving_v1()
    training = {"dataURI": "s3://data/german.csv", "target": "risk", "positiveLabel": "bad",
                "outputURI": "s3://bundles/german"}  # fmt: skip
    for extra in ({"training": training}, {"monitoring": {"predictionLogURI": "s3://log"}}):
        looked_after = CreditModel(**{**serving.__dict__, "spec": spec(**extra)})
        assert polls(looked_after, after(3600)), extra  # schedules, drift reports: no watch
    assert not polls(canary_v2(), after(30))
    assert polls(ready_canary_v2(), after(60))
