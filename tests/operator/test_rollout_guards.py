"""Focused tests for the guards of the rollout state machine that the other unit tests let go:
each fails when its guard is deleted or bent (hack/mutate_rollout.py, docs/rollout-mutations.md
names the mutant each one kills) and passes on the real code. Pure: no cluster, no clock."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from creditmodel.operator import builders
from creditmodel.operator.model import (
    Condition,
    Draining,
    Status,
    TrainingStatus,
    VersionRef,
)
from creditmodel.operator.rollout import (
    CreditModel,
    JobState,
    Observations,
    Plan,
    Resolved,
    canary,
    conditions,
    needs,
    reconcile,
)
from tests.operator.factories import BUNDLE_V1, BUNDLE_V2, T0, advance, model, spec
from tests.operator.test_rollout import ready_canary_v2
from tests.operator.test_rollout_safety import POLICY, step

pytestmark = pytest.mark.unit

V1 = builders.isvc_name("german", BUNDLE_V1)
V2 = builders.isvc_name("german", BUNDLE_V2)
BOTH = {V1: True, V2: True}


def serving_v1() -> CreditModel:
    """v1 stable and Ready."""
    first = model()
    current = advance(
        first, reconcile(first, Observations(spec_bundle=Resolved(BUNDLE_V1, "v1")), T0)
    )
    return advance(current, step(current, 0, {V1: True}))


def canary_v2(ready: bool = False) -> CreditModel:
    """v1 stable, v2 a canary started at T0 (Ready at T0 too when `ready`)."""
    current = serving_v1()
    current = advance(current, Plan(current.status, []), spec=spec(model={"bundleURI": BUNDLE_V2}))
    resolved = Resolved(BUNDLE_V2, "v2")
    current = advance(current, step(current, 0, {V1: True}, spec_bundle=resolved))
    return advance(current, step(current, 0, BOTH)) if ready else current


def act(
    current: CreditModel, action: str, at: float = 10, ready: dict[str, bool] | None = None
) -> Plan:
    acting = advance(current, Plan(current.status, []), action=action)
    return step(acting, at, BOTH if ready is None else ready)


# --- actions.py ------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pause_and_resume_record_the_canary_they_hold_in_the_history(action: str) -> None:
    """Kills actions.py pause/resume `status.canary.version if status.canary else None` -> None."""
    plan = act(canary_v2(ready=True), action)
    last = plan.status.history[-1]
    assert (last.verdict, last.to_version) == (action.capitalize() + "d", "v2")
    assert act(serving_v1(), action, ready={V1: True}).status.history[-1].to_version is None


def test_resume_mentions_spec_paused_only_when_the_spec_pauses() -> None:
    """Kills actions.py resume `if model.spec.rollout.paused` -> True."""
    plan = act(canary_v2(ready=True), "resume")
    (event,) = [e for e in plan.events if e.reason == "Resumed"]
    assert event.message == "rollout resumed by the action annotation"
    assert "still true" not in plan.status.history[-1].message


# --- canary.py ------------------------------------------------------------------------------------

BUNDLE_V3 = "s3://bundles/german/v3"
V3 = builders.isvc_name("german", BUNDLE_V3)


def test_a_second_version_leaving_keeps_the_first_one_draining() -> None:
    """Kills canary.py draining's filter -> False: v1 (draining after the promotion of v2) must
    stay in status.draining, and its InferenceService in the plan, when canary v3 is aborted."""
    promoted = advance(canary_v2(ready=True), Plan(canary_v2(ready=True).status, []))
    promoted = advance(promoted, act(promoted, "promote", at=10), action=None)
    assert [d.version for d in promoted.status.draining] == ["v1"]
    current = advance(
        promoted, Plan(promoted.status, []), spec=spec(model={"bundleURI": BUNDLE_V3})
    )
    resolved = Resolved(BUNDLE_V3, "v3")
    current = advance(current, step(current, 11, {V1: True, V2: True}, spec_bundle=resolved))
    assert current.status.canary is not None
    aborted = act(current, "abort", at=12, ready={V1: True, V2: True, V3: True})
    assert [d.version for d in aborted.status.draining] == ["v1", "v3"]
    assert {V1, V2, V3} <= aborted.inferenceservice_names


def test_draining_adds_a_leaving_version_once() -> None:
    """Kills canary.py draining's `leaving is None or entry.bundle_uri != leaving.bundle_uri`
    (either operand deleted): a version already draining is not listed twice."""
    v1, v2 = (
        VersionRef(version="v1", bundle_uri=BUNDLE_V1),
        VersionRef(version="v2", bundle_uri=BUNDLE_V2),
    )
    status = Status(stable=v1, draining=[Draining(version="v2", bundle_uri=BUNDLE_V2)])
    assert [d.version for d in canary.draining(status, v2, v1)] == ["v2"]
    assert [d.version for d in canary.draining(status, None, v1)] == ["v2"]


def test_events_name_the_stable_that_keeps_or_hands_over_the_traffic() -> None:
    """Kills canary.py serving's `status.stable.version if status.stable` -> "none"."""
    plan = act(canary_v2(ready=True), "promote")
    (promoted,) = [e for e in plan.events if e.reason == "Promoted"]
    assert promoted.message.startswith("v2 replaces v1 ")


def test_a_rejected_version_blocks_only_itself() -> None:
    """Kills canary.py follow_desired `status.rejected.bundle_uri == target.bundle_uri` -> True:
    after v2 was aborted, the spec naming v3 starts a canary of v3."""
    aborted = canary_v2(ready=True)
    aborted = advance(aborted, act(aborted, "abort"), action=None)
    assert aborted.status.rejected is not None
    assert aborted.status.canary is None
    current = advance(aborted, Plan(aborted.status, []), spec=spec(model={"bundleURI": BUNDLE_V3}))
    plan = step(current, 20, BOTH, spec_bundle=Resolved(BUNDLE_V3, "v3"))
    assert plan.status.canary is not None
    assert plan.status.canary.version == "v3"


def test_a_due_check_without_an_analysis_result_is_inconclusive() -> None:
    """Kills canary.py progress `observed.analysis or analysis.Result("inconclusive", ...)`
    (the fallback deleted): no result from Prometheus changes nothing but the check time."""
    current = canary_v2(ready=True)
    plan = step(current, 61, BOTH)  # intervalSeconds 60: due, and the adapter has no result
    assert plan.status.canary is not None
    assert plan.status.canary.step == 0
    assert plan.status.canary.failed_checks == 0
    assert plan.status.canary.last_analysis is not None
    assert plan.status.canary.last_analysis.verdict == "inconclusive"
    assert plan.status.canary.last_analysis.message == "no analysis result"


# --- conditions.py --------------------------------------------------------------------------------


def test_conditions_of_other_types_are_kept() -> None:
    """Kills conditions.py conditions `c.type not in ORDER` -> False: a condition another
    controller set on the object survives every pass."""
    current = serving_v1()
    foreign = Condition(
        type="example.com/Audited",
        status="True",
        reason="Checked",
        message="ok",
        last_transition_time="2026-01-01T00:00:00Z",
    )
    current = advance(
        current,
        Plan(
            current.status.model_copy(update={"conditions": [*current.status.conditions, foreign]}),
            [],
        ),
    )
    plan = step(current, 5, {V1: True})
    assert plan.status.condition("example.com/Audited") == foreign


class _Fields(BaseModel):
    a: int
    b: int
    c: int
    d: int
    e: int
    f: int


@pytest.mark.parametrize(("bad", "more"), [(5, ""), (6, " (and 1 more)")])
def test_spec_errors_are_bounded_and_say_how_many_more(bad: int, more: str) -> None:
    """Kills conditions.py describe_errors `len(errors) > limit` (True, False, negated, `>=`)."""
    document = {name: "x" if n < bad else 1 for n, name in enumerate("abcdef")}
    with pytest.raises(ValidationError) as caught:
        _Fields.model_validate(document)
    message = conditions.describe_errors(caught.value)
    assert message.count("spec.") == 5
    assert message.endswith("integer" + more)


def test_ready_names_no_kserve_reason_when_kserve_said_none() -> None:
    """Kills conditions.py _kserve_says `... if said else ""` -> always the suffix."""
    plan = step(serving_v1(), 5, {V1: False})
    ready = plan.status.condition("Ready")
    assert ready is not None
    assert ready.message == "InferenceService of v1 not Ready"


def test_a_canary_without_history_still_reports_progress() -> None:
    """Kills conditions.py progressing `status.history[-1] if status.history` -> always, and its
    `last and ...` operand deleted: a status written before the history existed (operator 0.1.0)
    has a canary and no history; the pass goes on instead of failing on history[-1]."""
    current = canary_v2(ready=True)
    old = current.status.model_copy(update={"history": []})
    plan = step(advance(current, Plan(old, [])), 5, BOTH)
    assert plan.status.condition("Progressing") is not None
    assert (plan.status.condition("Progressing") or pytest.fail("none")).reason == "CanaryAnalysis"


def test_a_refusal_about_no_canary_does_not_take_over_progressing() -> None:
    """Kills conditions.py progressing `last.to_version == canary.version` -> True: a refused
    rollback (toVersion none) during a canary leaves Progressing on the canary's analysis."""
    plan = act(canary_v2(ready=True), "rollback")
    assert plan.status.history[-1].verdict == "Refused"
    progressing = plan.status.condition("Progressing")
    assert progressing is not None
    assert progressing.reason == "CanaryAnalysis"


def test_phase_is_pending_while_nothing_is_published_or_training() -> None:
    """Kills conditions.py phase `status.training.job_name` operand -> True (Training) and
    `"Ready" if stable_ready` -> True (Ready): the bundle is not resolved yet, no Job runs."""
    plan = reconcile(model(), Observations(), T0, POLICY)
    assert plan.status.stable is None
    assert plan.status.phase == "Pending"


def test_phase_is_progressing_while_a_retrain_runs_beside_a_stable() -> None:
    """Kills conditions.py phase `status.stable is None` operand -> True: phase Training is for
    a model with nothing published yet, not for a retrain of a serving one."""
    current = serving_v1()
    training = TrainingStatus(runs=1, job_name="german-train-1", version="v9", reason="Schedule")
    current = advance(current, Plan(current.status.model_copy(update={"training": training}), []))
    plan = step(current, 5, {V1: True}, job=JobState("Active"))
    assert plan.status.training.job_name == "german-train-1"
    assert plan.status.phase == "Progressing"


# --- desired.py -----------------------------------------------------------------------------------


def test_a_bundle_with_a_version_and_an_error_is_not_adopted() -> None:
    """Kills desired.py adopt `resolved.error` operand -> False: a manifest that names a version
    but fails its checks (a checksum) is unusable all the same."""
    resolved = Resolved(BUNDLE_V1, "v1", error="model.onnx: sha256 mismatch")
    plan = reconcile(model(), Observations(spec_bundle=resolved), T0, POLICY)
    assert plan.status.desired is None
    assert plan.status.stable is None
    degraded = plan.status.condition("Degraded")
    assert degraded is not None
    assert (degraded.reason, degraded.status) == ("BundleUnavailable", "True")
    assert "sha256 mismatch" in degraded.message


def test_a_bundle_without_a_version_is_not_adopted_and_says_so() -> None:
    """Kills desired.py adopt `resolved.version is None` -> False and `'no version'` -> False."""
    plan = reconcile(model(), Observations(spec_bundle=Resolved(BUNDLE_V1)), T0, POLICY)
    assert plan.status.desired is None
    degraded = plan.status.condition("Degraded")
    assert degraded is not None
    assert degraded.message == f"spec.model.bundleURI {BUNDLE_V1}: no version"


UNPUBLISHED = "s3://bundles/german/v3-never-published"


def test_a_spec_moved_off_the_canary_to_an_unusable_bundle_cancels_the_canary() -> None:
    """The canary v2 kept its traffic, and a promote made it the stable, after the spec had
    moved on to a bundle that cannot be used: traffic went to a version the spec no longer
    names. Now the rollout falls back to the stable and waits for the spec's bundle."""
    current = ready_canary_v2()
    assert current.status.canary is not None
    assert current.status.canary.version == "v2"
    moved = advance(current, Plan(current.status, []), spec=spec(model={"bundleURI": UNPUBLISHED}))
    unusable = Resolved(UNPUBLISHED, error="no manifest.json")
    plan = reconcile(moved, Observations(spec_bundle=unusable, ready=BOTH), T0, POLICY)
    assert plan.status.canary is None
    assert [d.version for d in plan.status.draining] == ["v2"]
    assert plan.status.stable is not None
    assert plan.status.stable.version == "v1"
    degraded = plan.status.condition("Degraded")
    assert degraded is not None
    assert degraded.reason == "BundleUnavailable"
    promoted = reconcile(
        advance(moved, plan, action="promote"),
        Observations(spec_bundle=unusable, ready=BOTH),
        T0,
        POLICY,
    )
    assert promoted.status.stable is not None
    assert promoted.status.stable.version == "v1"
    assert needs(advance(moved, promoted), T0).resolve_bundle == UNPUBLISHED  # still looked for
    back = advance(moved, promoted, spec=spec(model={"bundleURI": BUNDLE_V2}))
    assert needs(back, T0).resolve_bundle == BUNDLE_V2
    again = reconcile(back, Observations(spec_bundle=Resolved(BUNDLE_V2, "v2"), ready=BOTH), T0)
    assert again.status.canary is not None
    assert again.status.canary.version == "v2"


def test_a_promote_in_the_pass_the_spec_moves_off_the_canary_is_refused() -> None:
    """The action runs before the canary follows the desired version: the promote saw the canary
    still there and made the version the spec had just left the stable."""
    current = ready_canary_v2()
    for bundle, resolved in (
        (UNPUBLISHED, Resolved(UNPUBLISHED, error="no manifest.json")),
        (BUNDLE_V3, Resolved(BUNDLE_V3, "v3")),
    ):
        moved = advance(
            current,
            Plan(current.status, []),
            spec=spec(model={"bundleURI": bundle}),
            action="promote",
        )
        plan = reconcile(moved, Observations(spec_bundle=resolved, ready=BOTH), T0, POLICY)
        assert plan.status.stable == current.status.stable
        refused = [e for e in plan.events if e.reason == "PromoteRefused"]
        assert refused
        assert "no longer the desired version" in refused[0].message
        assert plan.clear_action


def test_without_a_canary_a_spec_moved_to_an_unusable_bundle_changes_nothing_but_degraded() -> None:
    from tests.operator.test_rollout import serving_v1

    current = serving_v1()
    moved = advance(current, Plan(current.status, []), spec=spec(model={"bundleURI": UNPUBLISHED}))
    unusable = Resolved(UNPUBLISHED, error="no manifest.json")
    plan = reconcile(moved, Observations(spec_bundle=unusable, ready=BOTH), T0, POLICY)
    assert plan.status.desired == current.status.desired
    assert plan.status.stable == current.status.stable
    degraded = plan.status.condition("Degraded")
    assert degraded is not None
    assert degraded.reason == "BundleUnavailable"


def test_a_canary_from_training_stays_while_the_spec_names_an_unusable_bundle() -> None:
    """Only a spec that moved off a canary it had asked for cancels it: a canary a training run
    produced keeps its rollout while the spec names a bundle that cannot be used."""
    current = ready_canary_v2()
    assert current.status.desired is not None
    trained = current.status.model_copy(
        update={"desired": current.status.desired.model_copy(update={"source": "training"})}
    )
    from_training = advance(current, Plan(trained, []), spec=spec(model={"bundleURI": UNPUBLISHED}))
    unusable = Resolved(UNPUBLISHED, error="no manifest.json")
    plan = reconcile(from_training, Observations(spec_bundle=unusable, ready=BOTH), T0, POLICY)
    assert plan.status.canary is not None
    assert plan.status.canary.version == "v2"


def test_the_rejected_version_is_cleared_only_when_the_spec_names_it_again() -> None:
    """Kills desired.py adopt `None if rejected and rejected.bundle_uri == uri else rejected`
    (True, negated, the comparison deleted)."""
    aborted = canary_v2(ready=True)
    aborted = advance(aborted, act(aborted, "abort"), action=None)

    def named(current: CreditModel, uri: str, version: str, at: float) -> CreditModel:
        current = advance(current, Plan(current.status, []), spec=spec(model={"bundleURI": uri}))
        return advance(current, step(current, at, BOTH, spec_bundle=Resolved(uri, version)))

    other = named(aborted, BUNDLE_V3, "v3", 20)
    assert other.status.rejected is not None
    assert other.status.rejected.version == "v2"  # another version does not clear it
    again = named(other, BUNDLE_V2, "v2", 30)
    assert again.status.rejected is None  # named again: a new attempt
    assert again.status.canary is not None
    assert again.status.canary.version == "v2"


def test_an_abort_without_a_canary_is_refused_and_changes_nothing() -> None:
    """Kills actions.py abort's `if running is None` early exit: with no canary there is nothing
    to roll back, and the stable keeps all traffic."""
    from tests.operator.test_rollout import V1_NAME, serving_v1

    current = serving_v1()
    asked = advance(current, Plan(current.status, []), action="abort")
    plan = reconcile(asked, Observations(ready={V1_NAME: True}), T0, POLICY)
    assert plan.status.stable == current.status.stable
    assert plan.status.canary is None
    assert [e.message for e in plan.events if e.reason == "AbortRefused"] == [
        "abort: no canary to abort"
    ]
    assert plan.clear_action


def test_the_stables_own_path_spelt_with_file_is_the_stable() -> None:
    """Kills desired.py adopt's `same_bundle` (-> False): `file:///opt/x` and `/opt/x` name the
    same bundle inside the image (the CRD, training and the predictor read them alike); it was
    taken for a new bundle with the stable's version, refused as BundleUnavailable and Stalled."""
    local = "/opt/creditmodel/models/german-credit"
    first = model(spec(model={"bundleURI": local}))
    resolved = Resolved(local, "v1")
    current = advance(first, reconcile(first, Observations(spec_bundle=resolved), T0))
    name = builders.isvc_name("german", local)
    current = advance(current, step(current, 0, {name: True}))
    spelt = f"file://{local}"
    moved = advance(current, Plan(current.status, []), spec=spec(model={"bundleURI": spelt}))
    plan = step(moved, 5, {name: True}, spec_bundle=Resolved(spelt, "v1"))
    assert plan.status.canary is None
    assert plan.status.stable == current.status.stable
    assert plan.inferenceservice_names == {name}
    degraded = plan.status.condition("Degraded")
    assert degraded is not None
    assert degraded.status == "False"
