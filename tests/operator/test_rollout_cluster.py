"""Rollout safety with the operator as a real process on the real stack (KServe makes each
InferenceService Ready once KWOK's pods are): manual controls act within 2 s of the annotation (a
watch event, not the timer: the resync is 5 minutes here), a promote of a canary that never became
Ready is refused and the stable survives, a canary that never becomes Ready stays at 0% and times
out into a clear condition, and a promotion removes the old stable only after the route has held
it at 0% for the drain period, replacing no pod of either version on the way.

A canary that never becomes Ready is a real one: its bundle lives under a `kwok-never-ready` path
segment, so the predictor pods KServe's Deployment starts run but never pass readiness (our KWOK
stage tests/support/kwok/pod-not-ready.yaml), and KServe never reports the InferenceService Ready."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from creditmodel.operator import builders
from creditmodel.operator.rollout import ZERO_SINCE_ANNOTATION, parse_time
from tests.operator.running import (
    READY_TIMEOUT,
    Api,
    Operator,
    condition,
    eventually,
    running_operator,
)
from tests.operator.test_handlers import publish, sample
from tests.support.cluster import NEVER_READY_SEGMENT
from tests.support.kube import Kube
from tests.support.minio import S3Bucket

pytestmark = pytest.mark.integration
NAME = "german-credit"
ACTION = "scoring.creditmodel.io/action"
LATENCY_BUDGET = 2.0
DRAIN = 4.0


def isvc_for(uri: str) -> str:
    return builders.isvc_name(NAME, uri)


@pytest.fixture
def api(crds: Kube) -> Api:
    return Api(crds)


@pytest.fixture
def operator(
    crds: Kube, operator_kubeconfig: Path, tmp_path: Path, s3: S3Bucket
) -> Iterator[Operator]:
    """The timer cannot explain a quick reaction: a full resync only every 5 minutes."""
    env = {
        **s3.env(),
        "CREDITMODEL_OPERATOR_RESYNC_SECONDS": "300",
        "CREDITMODEL_OPERATOR_DRAIN_SECONDS": f"{DRAIN:g}",
        "CREDITMODEL_OPERATOR_CANARY_READY_TIMEOUT_SECONDS": "5",
    }
    with running_operator(crds, operator_kubeconfig, tmp_path, env) as running:
        yield running


def status(api: Api) -> dict[str, Any]:
    return dict(api.model(NAME).get("status") or {})


def weights(api: Api) -> dict[str, int]:
    backends = api.route(NAME)["spec"]["rules"][0]["backendRefs"]
    return {b["name"].removesuffix("-predictor"): b["weight"] for b in backends}


def events(api: Api, reason: str) -> list[client.CoreV1Event]:
    listed = client.CoreV1Api(api.kube.api).list_namespaced_event(api.namespace).items
    return [e for e in listed if e.reason == reason and e.involved_object.name == NAME]


def serving_v1(api: Api, s3: S3Bucket) -> str:
    v1 = publish(f"{s3.uri}/{NAME}/v1", "v1")
    api.create_model(sample(s3, intervalSeconds=3600))
    eventually(lambda: isvc_for(v1) in api.isvcs(), what="v1 InferenceService")
    eventually(
        lambda: weights(api) == {isvc_for(v1): 100},
        timeout=READY_TIMEOUT,
        what="v1 at 100% (KServe Ready)",
    )
    return v1


def start_canary(api: Api, s3: S3Bucket, version: str, ready: bool) -> str:
    """A canary whose predictor becomes Ready through KServe, or never does (its bundle under a
    path that KWOK's pod-not-ready stage selects)."""
    path = f"{NAME}/{version}" if ready else f"{NAME}/{NEVER_READY_SEGMENT}/{version}"
    uri = publish(f"{s3.uri}/{path}", version)
    api.patch_model(NAME, {"spec": {"model": {"bundleURI": uri}}})
    eventually(
        lambda: status(api).get("canary", {}).get("version") == version, what=f"canary {version}"
    )
    if ready:
        try:
            eventually(
                lambda: status(api)["canary"].get("readyAt"),
                timeout=READY_TIMEOUT,
                what=f"canary {version} Ready (KServe)",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{api.describe()}") from None
    return uri


def act(api: Api, action: str, done: Callable[[dict[str, Any]], bool]) -> float:
    """Annotate, and return the seconds until the status shows the action done and the operator
    has removed the annotation."""
    start = time.monotonic()
    api.patch_model(NAME, {"metadata": {"annotations": {ACTION: action}}})
    deadline = start + 30
    while time.monotonic() < deadline:
        model = api.model(NAME)
        if done(model.get("status") or {}) and ACTION not in model["metadata"].get(
            "annotations", {}
        ):
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"{action} not done within 30 s: {status(api)}")


def test_manual_controls_act_within_two_seconds(
    api: Api, s3: S3Bucket, operator: Operator, record_property: Callable[[str, Any], None]
) -> None:
    v1 = serving_v1(api, s3)
    v2 = start_canary(api, s3, "v2", ready=True)
    latency = {
        "pause": act(api, "pause", lambda s: "pausedAt" in s),
        "resume": act(api, "resume", lambda s: "pausedAt" not in s),
        "promote": act(api, "promote", lambda s: s["stable"]["version"] == "v2"),
    }
    assert weights(api) == {isvc_for(v2): 100, isvc_for(v1): 0}
    latency["rollback"] = act(api, "rollback", lambda s: s["stable"]["version"] == "v1")
    assert status(api)["rejected"]["version"] == "v2"
    # Recreated if it had drained away: KServe makes it Ready again.
    eventually(
        lambda: weights(api).get(isvc_for(v1)) == 100, timeout=READY_TIMEOUT, what="v1 back at 100%"
    )
    start_canary(api, s3, "v3", ready=True)
    latency["abort"] = act(
        api, "abort", lambda s: "canary" not in s and s["rejected"]["version"] == "v3"
    )
    assert weights(api)[isvc_for(v1)] == 100
    print(f"manual control latency (s): {latency}")
    for action, seconds in latency.items():
        record_property(f"latency_{action}_seconds", round(seconds, 3))
    slow = {action: s for action, s in latency.items() if s > LATENCY_BUDGET}
    assert not slow, f"slower than {LATENCY_BUDGET} s: {slow} (all: {latency})"
    history = [(h["verdict"], h.get("toVersion")) for h in status(api)["history"]]
    assert ("Reverted", "v1") in history
    assert history[-1] == ("Aborted", "v3")


def test_promote_of_a_canary_never_ready_is_refused_and_the_stable_survives(
    api: Api, s3: S3Bucket, operator: Operator
) -> None:
    operator.stop()  # a timeout that never fires here
    operator.env["CREDITMODEL_OPERATOR_CANARY_READY_TIMEOUT_SECONDS"] = "3600"
    operator.start()
    v1 = serving_v1(api, s3)
    v2 = start_canary(api, s3, "v2", ready=False)
    act(api, "promote", lambda s: (s.get("history") or [{}])[-1].get("verdict") == "Refused")
    (refused,) = eventually(lambda: events(api, "PromoteRefused"), what="PromoteRefused Event")
    assert refused.type == "Warning"
    assert "canary v2 is not Ready" in refused.message
    now = status(api)
    assert (now["stable"]["version"], now["canary"]["version"]) == ("v1", "v2")
    progressing = condition(api.model(NAME), "Progressing") or {}
    assert progressing.get("reason") == "PromoteRefused"
    assert (condition(api.model(NAME), "Ready") or {}).get("status") == "True"
    assert weights(api) == {isvc_for(v1): 100, isvc_for(v2): 0}
    assert set(api.isvcs()) == {isvc_for(v1), isvc_for(v2)}
    # The canary's pods run but are not Ready, so KServe does not report it Ready. The refusal can
    # come before the Deployment's pods exist (it needs only the canary's status), so wait for them.
    eventually(lambda: api.predictor_pods(isvc_for(v2)), what="the canary's predictor pods")
    assert not api.isvc_ready(isvc_for(v2))


def test_canary_never_ready_keeps_zero_weight_then_times_out(
    api: Api, s3: S3Bucket, operator: Operator
) -> None:
    v1 = serving_v1(api, s3)
    v2 = start_canary(api, s3, "v2", ready=False)
    seen: list[dict[str, int]] = []

    def timed_out() -> bool:
        seen.append(weights(api))
        return (condition(api.model(NAME), "Degraded") or {}).get("reason") == "CanaryNotReady"

    eventually(timed_out, timeout=60, what="Degraded CanaryNotReady")
    assert all(w.get(isvc_for(v2), 0) == 0 and w[isvc_for(v1)] == 100 for w in seen), seen
    degraded = condition(api.model(NAME), "Degraded") or {}
    assert degraded["message"] == "CanaryNotReady: canary v2 was not Ready within 5s"
    now = status(api)
    assert "canary" not in now
    assert now["rejected"]["version"] == "v2"
    assert (condition(api.model(NAME), "Ready") or {}).get("status") == "True"
    eventually(lambda: set(api.isvcs()) == {isvc_for(v1)}, what="the canary drained and removed")
    assert weights(api) == {isvc_for(v1): 100}


def test_promotion_removes_the_old_stable_only_after_the_drain(
    api: Api, s3: S3Bucket, operator: Operator
) -> None:
    v1 = serving_v1(api, s3)
    v2 = start_canary(api, s3, "v2", ready=True)
    templates = {isvc: api.pod_templates(isvc) for isvc in (isvc_for(v1), isvc_for(v2))}
    assert all(len(hashes) == 1 for hashes in templates.values()), templates
    act(api, "promote", lambda s: s["stable"]["version"] == "v2")
    route = api.route(NAME)
    assert weights(api) == {isvc_for(v2): 100, isvc_for(v1): 0}
    since = parse_time(
        json.loads(route["metadata"]["annotations"][ZERO_SINCE_ANNOTATION])[isvc_for(v1)]
    )
    drained_at = since.timestamp() + DRAIN
    last_seen = 0.0
    while time.time() < drained_at + 20:
        now = time.time()
        if isvc_for(v1) not in api.isvcs():
            break
        last_seen = now
        assert weights(api).get(isvc_for(v1), 0) == 0
        # A promotion moves traffic and nothing else: no pod of either version is replaced.
        assert api.pod_templates(isvc_for(v2)) == templates[isvc_for(v2)]
        assert api.pod_templates(isvc_for(v1)) <= templates[isvc_for(v1)]
        time.sleep(0.05)
    else:
        raise AssertionError("the old stable was never removed")
    assert last_seen >= drained_at - 0.5, "the old stable went before the drain period was over"
    assert weights(api) == {isvc_for(v2): 100}
    assert api.pod_templates(isvc_for(v2)) == templates[isvc_for(v2)]
    (drained,) = eventually(lambda: events(api, "Drained"), what="Drained Event")
    assert "v1 held 0% for 4s" in drained.message
    eventually(lambda: status(api).get("phase") == "Ready", what="Ready after the drain")
    assert "draining" not in status(api) or status(api)["draining"] == []
    # A version the operator removed comes back when asked for again: what it remembers having
    # written goes with what it deleted (before, the rollback waited for v1 forever).
    act(api, "rollback", lambda s: s["stable"]["version"] == "v1")
    eventually(lambda: isvc_for(v1) in api.isvcs(), what="v1 created again by the rollback")
    eventually(
        lambda: weights(api).get(isvc_for(v1)) == 100,
        timeout=READY_TIMEOUT,
        what="v1 back at 100% (KServe Ready)",
    )
