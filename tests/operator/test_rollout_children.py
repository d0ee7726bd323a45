"""The rollout state machine meets what the real API server and KServe impose (issue 11): names that
fit KServe's host label, refused children, status.url, the predictors' NetworkPolicy, specs the
operator cannot read, KServe's reasons in the conditions (pure: no cluster, no clock)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from creditmodel.operator import builders
from creditmodel.operator.model import Spec, Status
from creditmodel.operator.rollout import (
    ChildRefusal,
    CreditModel,
    Observations,
    Plan,
    Policy,
    Resolved,
    describe_errors,
    next_pass_in,
    observed_route,
    reconcile,
    unreadable,
    unreadable_spec,
)
from tests.operator.factories import BUNDLE_V1, T0, advance, after, model, spec
from tests.operator.test_rollout import (
    V1_NAME,
    V2_NAME,
    canary_v2,
    condition,
    serving_v1,
)

pytestmark = pytest.mark.unit

# --- what the real KServe and API server impose (issue 11) -----------------------------------------


def test_a_namespace_too_long_for_any_isvc_name_is_degraded_and_deploys_nothing() -> None:
    """KServe's host label <isvc>-predictor-<namespace> must fit 63: past 42 characters of
    namespace no InferenceService name fits, and writing one would only loop on KServe's failure."""
    long = CreditModel(**{**model().__dict__, "namespace": "n" * 43})
    plan = reconcile(long, Observations(spec_bundle=Resolved(BUNDLE_V1, "v1")), T0)
    assert plan.children == []
    assert condition(plan, "Degraded") == ("True", "InvalidSpec")
    degraded = plan.status.condition("Degraded")
    assert degraded is not None
    assert "longer than 42" in degraded.message
    # Nothing is deploying: Ready and Progressing say why instead of "deploying v1".
    assert condition(plan, "Ready") == ("False", "InvalidSpec")
    assert condition(plan, "Progressing") == ("False", "InvalidSpec")
    for kind in ("Ready", "Progressing"):
        found = plan.status.condition(kind)
        assert found is not None
        assert "longer than 42" in found.message
    assert plan.status.phase == "Degraded"
    # Should the stable's InferenceService be there and Ready anyway (written by an operator that
    # named it differently), Ready says so.
    name = builders.isvc_name("german", BUNDLE_V1, "n" * 43)
    served = reconcile(advance(long, plan), Observations(ready={name: True}), T0)
    assert condition(served, "Ready") == ("True", "Serving")


def test_a_refused_child_is_degraded_with_the_api_servers_message_until_it_is_accepted() -> None:
    current = serving_v1()
    refusal = ChildRefusal("InferenceService", V1_NAME, 'admission webhook "x" denied: no')
    plan = reconcile(current, Observations(ready={V1_NAME: True}, refused=refusal), after(1))
    assert condition(plan, "Degraded") == ("True", "InferenceServiceRefused")
    degraded = plan.status.condition("Degraded")
    assert degraded is not None
    assert 'admission webhook "x" denied: no' in degraded.message
    assert V1_NAME in degraded.message
    assert plan.children  # the other children are still written
    healed = reconcile(advance(current, plan), Observations(ready={V1_NAME: True}), after(2))
    assert condition(healed, "Degraded") == ("False", "AsExpected")


def test_status_url_is_the_routes_first_hostname_whichever_version_serves() -> None:
    hosts = spec(rollout={"hostnames": ["credit.example.com", "score.example.com"]})
    first = model(hosts)
    plan = reconcile(first, Observations(spec_bundle=Resolved(BUNDLE_V1, "v1")), T0)
    assert plan.status.url == "http://credit.example.com"
    assert serving_v1().status.url is None  # no hostname: the Gateway's own address


def test_the_predictor_networkpolicy_comes_first_when_the_operator_writes_one() -> None:
    first = model()
    observed = Observations(spec_bundle=Resolved(BUNDLE_V1, "v1"))
    guarded = Policy(network_policy=builders.IngressPolicy())
    kinds = [child["kind"] for child in reconcile(first, observed, T0, guarded).children]
    assert kinds == ["NetworkPolicy", "InferenceService"]
    assert "NetworkPolicy" not in [c["kind"] for c in reconcile(first, observed, T0).children]


def test_an_unreadable_spec_keeps_the_rollout_and_reports_degraded_and_stalled() -> None:
    current = serving_v1()
    with pytest.raises(ValidationError) as caught:
        Spec.model_validate({"model": {"bundleURI": "s3://"}, "rollout": {"router": "knative"}})
    message = describe_errors(caught.value)
    assert message.startswith("spec.model.bundleURI: ")
    status = unreadable_spec(current.status, 7, message, after(5))
    assert status.stable == current.status.stable  # serving goes on as it was
    assert status.observed_generation == 7
    assert status.phase == "Degraded"
    kinds = {c.type: (c.status, c.reason) for c in status.conditions}
    assert kinds["Degraded"] == ("True", "InvalidSpec")
    assert kinds["Stalled"] == ("True", "InvalidSpec")
    assert kinds["Reconciling"] == ("False", "Stalled")
    assert kinds["Ready"] == ("True", "Serving")
    assert [c.type for c in status.conditions][:3] == ["Ready", "Progressing", "Degraded"]


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["canary"].pop("startedAt"),
        lambda s: s["stable"].pop("bundleURI"),
        lambda s: s.update(conditions=[{"type": "Ready"}]),
        # What the CRD's date-time format stores but no clock can read or compute with:
        lambda s: s["canary"].update(lastCheckAt="2024-12-31T00:00:00x5Z"),
        lambda s: s["canary"].update(startedAt="2024-12-31T00:00:00+99:00"),
        lambda s: s["canary"].update(readyAt="2024-12-31T00:00:00"),
        lambda s: s.update(training={"driftRetrainedAt": "9999-12-31T23:59:59Z"}),
        lambda s: s["canary"].update(step=-10),  # IndexError, or the last step's weight at once
        lambda s: s.update(training={"runs": 10**60}),  # a training Job name beyond 63
        lambda s: s["stable"].update(bundleURI="--help"),  # on the predictor's command line
    ],
)
def test_a_hand_edited_status_that_cannot_be_read_is_reported_not_written_over(edit: Any) -> None:
    """An empty status was written in its place: the next pass took the canary for a new stable
    at 100% and deleted the old stable at once, with no drain."""
    stored = canary_v2().status.dump()
    edit(stored)
    with pytest.raises(ValidationError) as caught:
        Status.model_validate(stored)
    message = describe_errors(caught.value, part="status")
    assert message.startswith("status.")
    written = unreadable(stored, "status", message, 7, after(5))
    assert {
        k: v for k, v in written.items() if k not in ("observedGeneration", "phase", "conditions")
    } == {k: v for k, v in stored.items() if k not in ("observedGeneration", "phase", "conditions")}
    reasons = {c["type"]: c.get("reason") for c in written["conditions"]}
    assert (written["phase"], reasons["Degraded"], reasons["Stalled"]) == (
        "Degraded", "InvalidStatus", "InvalidStatus",
    )  # fmt: skip
    readable = canary_v2().status.dump()
    assert unreadable(readable, "spec", "spec.x: bad", 7, after(5))["canary"] == readable["canary"]


def test_conditions_repeat_what_kserve_says_keeps_a_version_from_ready() -> None:
    first = model()
    plan = reconcile(first, Observations(spec_bundle=Resolved(BUNDLE_V1, "v1")), T0)
    waiting = {V1_NAME: "Predictor HttpRouteNotReady"}
    plan = reconcile(advance(first, plan), Observations(waiting=waiting), after(1))
    ready = plan.status.condition("Ready")
    assert ready is not None
    assert ready.message == "InferenceService of v1 not Ready (KServe: Predictor HttpRouteNotReady)"
    current = canary_v2()
    said = {V2_NAME: "Deployment does not have minimum availability."}
    plan = reconcile(current, Observations(ready={V1_NAME: True}, waiting=said), after(2))
    progressing = plan.status.condition("Progressing")
    assert progressing is not None
    assert progressing.reason == "WaitingForReady"
    assert progressing.message.endswith("(KServe: Deployment does not have minimum availability.)")


def test_the_route_names_at_most_16_backends_however_many_versions_drain() -> None:
    """Gateway API allows 16 backendRefs in a rule: before, 16 bundles applied within one drain
    period made the API server refuse the route, and the canary the status called "routed" got
    nothing. Draining versions at 0% beyond the limit are left out of the route, keep their
    InferenceService and their drain clock, and are deleted only after the drain period."""
    policy = Policy(drain_seconds=30)
    current, ready, route = serving_v1(), {V1_NAME: True}, None
    for i in range(2, 22):  # 20 bundles within one drain period: 1 stable, 1 canary, 19 draining
        uri = f"s3://bundles/german/r{i}"
        current = advance(current, Plan(current.status, []), spec=spec(model={"bundleURI": uri}))
        ready = {**ready, builders.isvc_name("german", uri): True}
        seen = Observations(spec_bundle=Resolved(uri, f"r{i}"), ready=ready, route=route)
        plan = reconcile(current, seen, after(i), policy)
        (child,) = [c for c in plan.children if c["kind"] == "HTTPRoute"]
        assert len(child["spec"]["rules"][0]["backendRefs"]) <= builders.HTTPROUTE_MAX_BACKENDS
        weights = plan.route_weights or {}
        canary = builders.isvc_name("german", uri)
        assert weights[V1_NAME] + weights[canary] == 100
        assert plan.status.canary_weight == weights[canary]
        route = observed_route(child)
        current = advance(current, plan)
    draining = {builders.isvc_name("german", d.bundle_uri) for d in current.status.draining}
    assert len(draining) == 19
    assert draining <= plan.inferenceservice_names  # every one still there, listed or not
    assert set(route.zero_since) >= draining  # and its drain clock with it
    # r2 left the rollout at 3 s: held 0% for the drain period at 33 s, when r3 has not yet.
    early = reconcile(current, Observations(ready=ready, route=route), after(33), policy)
    first = builders.isvc_name("german", "s3://bundles/german/r2")
    assert early.inferenceservice_names & draining == draining - {first}
    late = reconcile(current, Observations(ready=ready, route=route), after(60), policy)
    assert not late.inferenceservice_names & draining


def test_a_first_version_never_ready_is_degraded_after_the_ready_timeout_and_heals() -> None:
    """A first version that never came up stayed Progressing forever, Degraded and Stalled
    False: nothing told a dashboard or `kubectl wait` that it was stuck."""
    policy = Policy(ready_timeout_seconds=300)
    first = model()
    plan = reconcile(first, Observations(spec_bundle=Resolved(BUNDLE_V1, "v1")), T0, policy)
    current = advance(first, plan)
    waiting = {V1_NAME: "pods not ready: ImagePullBackOff"}
    assert next_pass_in(current, after(1), policy) == 299
    early = reconcile(current, Observations(waiting=waiting), after(299), policy)
    assert condition(early, "Degraded") == ("False", "AsExpected")
    late = reconcile(current, Observations(waiting=waiting), after(300), policy)
    assert condition(late, "Degraded") == ("True", "StableNotReady")
    assert condition(late, "Stalled") == ("True", "StableNotReady")
    message = late.status.condition("Degraded")
    assert message is not None
    assert "ImagePullBackOff" in message.message
    assert late.children  # still written: KServe may yet make it Ready
    assert next_pass_in(advance(current, late), after(301), policy) is None  # reported: no clock
    assert next_pass_in(current, after(300), policy) is None  # due now: this pass reports it
    healed = reconcile(
        advance(current, late), Observations(ready={V1_NAME: True}), after(400), policy
    )
    assert condition(healed, "Degraded") == ("False", "AsExpected")
    assert condition(healed, "Ready") == ("True", "Serving")
    # Ready since T0 and not Ready since this pass: the timeout counts from now, not from T0.
    serving = advance(current, healed)
    assert next_pass_in(serving, after(401), policy) is None  # Ready: no clock
    dropped = reconcile(serving, Observations(waiting=waiting), after(1000), policy)
    assert condition(dropped, "Degraded") == ("False", "AsExpected")
    assert next_pass_in(advance(serving, dropped), after(1001), policy) == 299
    stuck = reconcile(advance(serving, dropped), Observations(), after(1300), policy)
    assert condition(stuck, "Degraded") == ("True", "StableNotReady")


def test_nothing_published_or_nothing_reconciled_yet_has_no_ready_clock() -> None:
    """The stable's Ready timeout needs a stable and a Ready condition that says False."""
    policy = Policy(ready_timeout_seconds=300)
    fresh = model()
    assert next_pass_in(fresh, T0, policy) is None  # no conditions yet
    unpublished = reconcile(fresh, Observations(), T0, policy)
    assert condition(unpublished, "Ready") == ("False", "NoModel")
    assert next_pass_in(advance(fresh, unpublished), after(1), policy) is None


def test_times_in_the_api_servers_lower_case_read_the_same() -> None:
    """The API server stores `...t...z` as a date-time; the clocks read it like `...T...Z`."""
    current = canary_v2()
    stored = current.status.dump()
    stored["canary"]["startedAt"] = stored["canary"]["startedAt"].lower()
    lowered = advance(current, Plan(Status.model_validate(stored), []))
    observed = Observations(ready={V1_NAME: True, V2_NAME: True})
    plans = [reconcile(m, observed, after(30)) for m in (lowered, current)]
    seen = [(p.children, p.route_weights, p.status.canary_weight, p.status.phase) for p in plans]
    assert seen[0] == seen[1]
