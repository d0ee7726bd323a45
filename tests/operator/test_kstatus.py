"""Conditions follow the kstatus conventions, so Flux (and anything built on
sigs.k8s.io/cli-utils/pkg/kstatus) waits for a CreditModel correctly: Reconciling and Stalled are
abnormal-true, never both True, every condition carries observedGeneration, and the status a
kstatus reader computes from the operator's own status objects is the one a platform team expects."""

from __future__ import annotations

from typing import Any

import pytest

from tests.operator.statuses import STORIES, as_object, new_object

pytestmark = pytest.mark.unit


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus's generic rules for a custom resource (cli-utils status.Compute): an unobserved
    generation or Reconciling=True is InProgress, Stalled=True is Failed, otherwise Current."""
    status = obj.get("status", {})
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return "InProgress"
    found = conditions(obj)
    if found.get("Reconciling", {}).get("status") == "True":
        return "InProgress"
    if found.get("Stalled", {}).get("status") == "True":
        return "Failed"
    return "Current"


EXPECTED = {
    # story: (Reconciling, Stalled, reason of the True one, kstatus)
    "deploying": ("True", "False", "Deploying", "InProgress"),
    "serving": ("False", "False", None, "Current"),
    "spec-changed": ("False", "False", None, "InProgress"),
    "canary-waiting": ("True", "False", "WaitingForReady", "InProgress"),
    "canary-analysis": ("True", "False", "CanaryAnalysis", "InProgress"),
    "canary-paused": ("True", "False", "Paused", "InProgress"),
    "rolled-back": ("False", "True", "RolledBack", "Failed"),
    "bundle-unavailable": ("False", "True", "BundleUnavailable", "Failed"),
    "training-first": ("True", "False", "Training", "InProgress"),
    "training-failed": ("False", "True", "TrainingFailed", "Failed"),
}


def test_every_story_is_judged() -> None:
    assert sorted(EXPECTED) == sorted(STORIES)


@pytest.mark.parametrize("story", sorted(EXPECTED))
def test_reconciling_and_stalled(story: str) -> None:
    obj = as_object(STORIES[story]())
    found = conditions(obj)
    reconciling, stalled, reason, judged = EXPECTED[story]
    assert found["Reconciling"]["status"] == reconciling
    assert found["Stalled"]["status"] == stalled
    if reason is not None:
        true = found["Reconciling"] if reconciling == "True" else found["Stalled"]
        assert true["reason"] == reason
        assert true["message"]
    assert kstatus(obj) == judged


@pytest.mark.parametrize("story", sorted(STORIES))
def test_conventions_hold(story: str) -> None:
    obj = as_object(STORIES[story]())
    found = conditions(obj)
    # abnormal-true: never both; Stalled says what Degraded says
    assert not (found["Reconciling"]["status"] == found["Stalled"]["status"] == "True")
    assert found["Stalled"]["status"] == found["Degraded"]["status"]
    if found["Stalled"]["status"] == "True":
        assert found["Stalled"]["reason"] == found["Degraded"]["reason"]
    # Ready=True and nothing abnormal: the object is done (what `kubectl wait` and Flux agree on)
    if found["Reconciling"]["status"] == found["Stalled"]["status"] == "False":
        assert found["Ready"]["status"] == "True"
    observed = obj["status"]["observedGeneration"]
    assert all(c["observedGeneration"] == observed for c in found.values())
    assert set(found) == {"Ready", "Progressing", "Degraded", "Training", "Reconciling", "Stalled"}


def test_a_new_object_is_in_progress() -> None:
    assert kstatus(new_object()) == "InProgress"


def test_transition_time_moves_only_when_the_status_flips() -> None:
    """Reconciling keeps its lastTransitionTime across the canary's steps (True all along) and
    moves when the rollout ends in a rollback (True -> False)."""
    waiting = conditions(as_object(STORIES["canary-waiting"]()))["Reconciling"]
    analysing = conditions(as_object(STORIES["canary-analysis"]()))["Reconciling"]
    rolled = conditions(as_object(STORIES["rolled-back"]()))["Reconciling"]
    assert waiting["lastTransitionTime"] == analysing["lastTransitionTime"]
    assert waiting["reason"] != analysing["reason"]
    assert rolled["lastTransitionTime"] > analysing["lastTransitionTime"]
