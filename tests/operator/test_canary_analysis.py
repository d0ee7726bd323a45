"""Canary analysis end to end: the operator's rollout driven by a real Prometheus scraping real
`creditmodel-predictor` processes, each started from the pod template KServe rendered into the
version's Deployment (args, env, the storage Secret resolved; tests/support/rendered.py). KServe
makes each InferenceService Ready through KWOK's pods; nothing here writes a status.

The stable and the canary get identical traffic, as the HTTPRoute's weights would split one
population. In the promotion test the canary is the same model republished as v2 (PSI ~ 0); in
the rollback test the canary's points scaling is shifted, so its score distribution moves away
from the stable's and the PSI check fails.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from creditmodel.core import bundle
from creditmodel.operator import builders
from tests.operator.running import (
    Api,
    Operator,
    condition,
    eventually,
    rendered_predictor,
    running_operator,
    storage,
)
from tests.predictor.conftest import TrainedBundle
from tests.predictor.server import PredictorServer
from tests.support.cluster import HOLD_TAG
from tests.support.kube import Kube
from tests.support.minio import S3Bucket
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.integration
NAME = "german-credit"


def publish_as(trained: TrainedBundle, uri: str, version: str) -> str:
    """The trained bundle's files under `uri`, its manifest naming `version`."""
    manifest = trained.bundle.manifest.model_copy(update={"version": version})
    bundle.publish_bundle(uri, dict(trained.bundle.files), manifest)
    return uri


class Traffic:
    """Identical V2 requests to every predictor, in a background thread, until stopped."""

    def __init__(self, trained: TrainedBundle, servers: Sequence[PredictorServer]) -> None:
        self.trained, self.servers = trained, list(servers)
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = 0
        while not self.stop.is_set():
            offset = start % (len(self.trained.applicants) - 16)
            body = json.dumps({"inputs": self.trained.v2_inputs(16, offset)}).encode()
            for server in self.servers:
                request = urllib.request.Request(
                    server.infer_url, body, {"Content-Type": "application/json"}
                )
                with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=5):
                    self.sent += 1
            start += 16
            self.stop.wait(0.05)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)


def container_args(isvc: dict[str, Any]) -> dict[str, str]:
    args = isvc["spec"]["predictor"]["containers"][0]["args"]
    return dict(zip(args[::2], args[1::2], strict=True))


def serve(
    api: Api, isvc: dict[str, Any], log_dir: Path, extra: Sequence[str] = ()
) -> contextlib.AbstractContextManager[PredictorServer]:
    """Run the predictor KServe rendered for the InferenceService, on free local ports; `extra`
    are this test's own flags on top (a shifted points scaling)."""
    return rendered_predictor(api.kube, isvc["metadata"]["name"], log_dir, extra_args=extra)


@dataclass
class Rig:
    """Everything these tests start: the API, MinIO, the trained bundle, Prometheus, the operator."""

    api: Api
    s3: S3Bucket
    trained: TrainedBundle
    kubeconfig: Path
    workdir: Path
    prometheus: Callable[[Sequence[str]], PrometheusServer]

    def operator(self) -> contextlib.AbstractContextManager[Operator]:
        # The test Prometheus scrapes static targets: no `namespace` target label to match.
        env = {**self.s3.env(), "CREDITMODEL_OPERATOR_PROMETHEUS_NAMESPACE_LABEL": ""}
        return running_operator(self.api.kube, self.kubeconfig, self.workdir, env)


@pytest.fixture
def rig(
    crds: Kube,
    s3: S3Bucket,
    champion: TrainedBundle,
    operator_kubeconfig: Path,
    tmp_path: Path,
    prometheus: Callable[[Sequence[str]], PrometheusServer],
) -> Rig:
    return Rig(Api(crds), s3, champion, operator_kubeconfig, tmp_path, prometheus)


def spec_for(
    s3: S3Bucket, prometheus_url: str = "http://127.0.0.1:1", kube: Kube | None = None
) -> dict[str, Any]:
    """The CreditModel these tests apply; with `kube`, its storage Secret is created there and
    named in spec.storage, so the rendered predictors get MinIO's endpoint and keys from it."""
    body: dict[str, Any] = {
        "apiVersion": "scoring.creditmodel.io/v1alpha1",
        "kind": "CreditModel",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"bundleURI": f"{s3.uri}/{NAME}/v1"},
            "rollout": {
                "gateway": {"name": "gw"},
                "steps": [20, 60],
                "intervalSeconds": 3,
                "analysis": {
                    "prometheusURL": prometheus_url,
                    "windowSeconds": 15,
                    "minRequests": 10,
                    "successRate": 0.99,
                    "p99LatencySeconds": 1.0,
                    "maxScorePSI": 0.25,
                    "maxFailedChecks": 2,
                },
            },
        },
    }
    if kube is not None:
        body["spec"]["storage"] = storage(kube, s3.env())
    return body


def status_when(
    api: Api, predicate: Callable[[dict[str, Any]], Any], timeout: float, what: str
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = api.model(NAME).get("status", {})
        return status if predicate(status) else None

    return eventually(probe, timeout=timeout, what=what)


@contextlib.contextmanager
def canary_under_analysis(
    rig: Rig, canary_extra: Sequence[str] = ()
) -> Iterator[tuple[Operator, str, str]]:
    """v1 stable and serving; v2 canary paused until both predictors run under traffic and
    Prometheus scrapes them; then the rollout is unpaused and the operator's analysis takes over."""
    api, s3, trained, tmp_path, prometheus = (
        rig.api,
        rig.s3,
        rig.trained,
        rig.workdir,
        rig.prometheus,
    )
    v1 = publish_as(trained, f"{s3.uri}/{NAME}/v1", "v1")
    v2 = publish_as(trained, f"{s3.uri}/{NAME}/v2", "v2")
    with contextlib.ExitStack() as stack:
        operator = stack.enter_context(rig.operator())
        body = spec_for(s3, kube=api.kube)
        api.create_model(body)
        v1_isvc = eventually(lambda: api.isvcs().get(builders.isvc_name(NAME, v1)), what="v1 ISVC")
        stable = stack.enter_context(serve(api, v1_isvc, tmp_path))
        api.wait_model_ready(NAME)  # KServe: v1's Deployment available
        api.patch_model(NAME, {"spec": {"rollout": {"paused": True}, "model": {"bundleURI": v2}}})
        v2_isvc = eventually(
            lambda: api.isvcs().get(builders.isvc_name(NAME, v2)), what="canary ISVC"
        )
        canary = stack.enter_context(serve(api, v2_isvc, tmp_path, canary_extra))
        server = prometheus([f"127.0.0.1:{stable.http_port}", f"127.0.0.1:{canary.http_port}"])
        server.wait_for_targets_up()
        stack.enter_context(Traffic(trained, [stable, canary]))
        server.wait_for('sum(increase(creditmodel_requests_total{version="v2"}[10s])) > 20', 30)
        api.wait_isvc_ready(v2_isvc["metadata"]["name"])
        api.patch_model(
            NAME,
            {"spec": {"rollout": {"paused": False, "analysis": {"prometheusURL": server.url}}}},
        )
        yield operator, v1, v2


def reasons_of(api: Api) -> set[str]:
    """Reasons of the Events about the CreditModel."""
    events = client.CoreV1Api(api.kube.api).list_namespaced_event(api.namespace).items
    return {e.reason for e in events if e.involved_object.name == NAME}


def test_healthy_canary_is_promoted_across_an_operator_restart(
    rig: Rig,
) -> None:
    api = rig.api
    with canary_under_analysis(rig) as (operator, v1, v2):
        at_step_two = status_when(
            api, lambda s: s.get("canary", {}).get("step") == 1, 60, "canary advanced to step 2"
        )
        assert at_step_two["canaryWeight"] == 60
        assert at_step_two["canary"]["lastAnalysis"]["verdict"] == "passed"
        message = at_step_two["canary"]["lastAnalysis"]["message"]
        assert "success rate 1.0000" in message
        assert "score PSI" in message
        # kopf posts events in the background; let this one land before the restart cuts it off.
        eventually(lambda: "CanaryAdvanced" in reasons_of(api), what="CanaryAdvanced event")
        operator.restart()  # mid-rollout: all progress is in the status
        promoted = status_when(
            api, lambda s: s.get("stable", {}).get("version") == "v2", 60, "promotion"
        )
        # v1 drains (the route holds it at 0% for the drain period) before it goes
        eventually(
            lambda: set(api.isvcs()) == {builders.isvc_name(NAME, v2)}, what="v1 ISVC removed"
        )
        eventually(lambda: api.model(NAME)["status"]["phase"] == "Ready", what="drained: Ready")
    assert "canary" not in promoted
    assert promoted["canaryWeight"] == 0
    assert (condition(api.model(NAME), "Ready") or {}).get("message") == "v2 serves 100% of traffic"
    backends = api.route(NAME)["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        (f"{builders.isvc_name(NAME, v2)}-predictor", 100)
    ]
    assert {"CanaryStarted", "CanaryAdvanced", "Promoted"} <= reasons_of(api)
    assert v1 != v2


def test_canary_with_shifted_scores_is_rolled_back(
    rig: Rig,
) -> None:
    api = rig.api
    shift = ["--base_score", "750", "--base_odds", "50", "--points_to_double_odds", "20"]
    with canary_under_analysis(rig, canary_extra=shift) as (_, v1, v2):
        rolled_back = status_when(api, lambda s: "rejected" in s, 60, "rollback")
        eventually(  # the canary drains before it goes
            lambda: set(api.isvcs()) == {builders.isvc_name(NAME, v1)}, what="canary removed"
        )
    assert "canary" not in rolled_back
    assert rolled_back["stable"]["version"] == "v1"
    assert rolled_back["canaryWeight"] == 0
    assert rolled_back["rejected"]["version"] == "v2"
    assert "score PSI" in rolled_back["rejected"]["reason"]
    degraded = condition(api.model(NAME), "Degraded") or {}
    assert (degraded.get("status"), degraded.get("reason")) == ("True", "RolledBack")
    assert (condition(api.model(NAME), "Ready") or {}).get("status") == "True"
    assert v2


def scores(server: PredictorServer, trained: TrainedBundle, rows: int) -> list[int]:
    """Scores of the first `rows` applicants, from the predictor itself."""
    result: list[int] = []
    for start in range(0, rows, 200):
        body = json.dumps({"inputs": trained.v2_inputs(200, start)}).encode()
        request = urllib.request.Request(
            server.infer_url, body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            outputs = {o["name"]: o["data"] for o in json.load(response)["outputs"]}
        result += [int(score) for score in outputs["score"]]
    return result


def test_live_score_drift_starts_a_retraining_job(
    rig: Rig,
) -> None:
    """Only the riskiest applicants arrive: the stable's live score PSI against its reference
    deciles crosses retrainOnScorePSI and the operator starts a training Job (reason Drift)."""
    api, s3, champion, tmp_path = rig.api, rig.s3, rig.trained, rig.workdir
    v1 = publish_as(champion, f"{s3.uri}/{NAME}/v1", "v1")
    with rig.operator(), contextlib.ExitStack() as stack:
        body = spec_for(s3, kube=api.kube)
        body["spec"]["training"] = {
            # Held running (tests/support/kwok/pod-hold.yaml): the Job stays in status to read.
            "image": f"ghcr.io/creditmodel/training:{HOLD_TAG}",
            "dataURI": f"{s3.uri}/data/applicants.csv",
            "target": "default",
            "positiveLabel": "1",
            "outputURI": f"{s3.uri}/{NAME}/trained",
            "retrainOnScorePSI": 0.25,
        }
        api.create_model(body)
        isvc = eventually(lambda: api.isvcs().get(builders.isvc_name(NAME, v1)), what="v1 ISVC")
        # A short PSI window so the shifted traffic dominates within seconds.
        stable = stack.enter_context(serve(api, isvc, tmp_path, ["--drift_window_seconds", "5"]))
        api.wait_model_ready(NAME)
        every = scores(stable, champion, 2_000)
        riskiest = sorted(range(len(every)), key=every.__getitem__)[:300]
        shifted = TrainedBundle(
            champion.uri, champion.bundle, champion.applicants.iloc[riskiest].reset_index(drop=True)
        )
        server = rig.prometheus([f"127.0.0.1:{stable.http_port}"])
        server.wait_for_targets_up()
        stack.enter_context(Traffic(shifted, [stable]))
        server.wait_for(f'creditmodel_score_psi{{model="{NAME}",version="v1"}} > 0.25', 30)
        api.patch_model(NAME, {"spec": {"rollout": {"analysis": {"prometheusURL": server.url}}}})
        training = status_when(
            api, lambda s: s.get("training", {}).get("jobName"), 60, "a drift-triggered Job"
        )["training"]
    assert training["reason"] == "Drift"
    assert training["driftRetrainedFor"] == "v1"
    job = api.batch.read_namespaced_job(training["jobName"], api.namespace)
    args = job.spec.template.spec.containers[0].args
    assert args[args.index("--output") + 1] == training["bundleURI"]
    events = client.CoreV1Api(api.kube.api).list_namespaced_event(api.namespace).items
    started = [e.message for e in events if e.reason == "TrainingStarted"]
    assert any("live score PSI" in message for message in started), started
