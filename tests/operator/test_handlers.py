"""The operator for real (a process, as the RBAC-bound ServiceAccount) on the real stack and MinIO:
KServe (webhooks and controller) renders each InferenceService into a Deployment, Service and HPA,
KWOK makes the pods Ready and KServe the InferenceService; the garbage collector cascades deletion.
No test writes a child's status. What is written before readiness is read back from a watch."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from creditmodel.core import bundle
from creditmodel.operator import builders
from tests.core import bundles as fake
from tests.operator.running import (
    GROUP,
    PLURAL,
    READY_TIMEOUT,
    VERSION,
    Api,
    Operator,
    Recorder,
    condition,
    eventually,
    running_operator,
)
from tests.support.kube import Kube, load_yaml_documents
from tests.support.minio import S3Bucket
from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.integration


def publish(uri: str, version: str, gates_passed: bool = True) -> str:
    files = fake.files()
    manifest = fake.manifest(files, version)
    if not gates_passed:
        manifest = manifest.model_copy(
            update={"gates": [bundle.Gate(name="auc", passed=False, value=0.5, threshold=0.7)]}
        )
    bundle.publish_bundle(uri, files, manifest)
    return uri


def sample(s3: S3Bucket, **rollout: Any) -> dict[str, Any]:
    body = copy.deepcopy(
        load_yaml_documents(REPO_ROOT / "manifests" / "samples" / "creditmodel.yaml")[0]
    )
    body["spec"]["model"]["bundleURI"] = f"{s3.uri}/german-credit/v1"
    body["spec"]["rollout"].update({"intervalSeconds": 1, **rollout})
    return body


@pytest.fixture
def api(crds: Kube) -> Api:
    return Api(crds)


@pytest.fixture
def s3_operator(
    crds: Kube, operator_kubeconfig: Path, tmp_path: Path, s3: S3Bucket
) -> Iterator[Operator]:
    with running_operator(crds, operator_kubeconfig, tmp_path, s3.env()) as running:
        yield running


def isvc_for(uri: str) -> str:
    return builders.isvc_name("german-credit", uri)


def serving_v1(api: Api, s3: S3Bucket, **rollout: Any) -> str:
    """Apply the sample with v1 published; KServe makes its InferenceService Ready."""
    v1 = publish(f"{s3.uri}/german-credit/v1", "v1")
    api.create_model(sample(s3, **rollout))
    eventually(lambda: isvc_for(v1) in api.isvcs(), what="stable InferenceService")
    api.wait_model_ready("german-credit")
    return v1


def test_apply_creates_inferenceservice_and_route_then_ready(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    v1 = publish(f"{s3.uri}/german-credit/v1", "v1")
    routes = Recorder(api.kube, "gateway.networking.k8s.io", "v1", "httproutes")
    models = Recorder(api.kube, GROUP, VERSION, PLURAL)
    try:
        api.create_model(sample(s3))
        isvcs = eventually(api.isvcs, what="an InferenceService")
        isvc = isvcs[isvc_for(v1)]
        container = isvc["spec"]["predictor"]["containers"][0]
        assert container["args"][:4] == ["--model_name", "german-credit", "--model_dir", v1]
        assert isvc["spec"]["predictor"]["maxReplicas"] == 4
        owner = isvc["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == (
            "CreditModel",
            "german-credit",
            True,
        )
        # KServe's defaulting webhook ran on what the operator wrote.
        assert isvc["spec"]["predictor"]["containers"][0]["resources"]["requests"]
        ready = api.wait_model_ready("german-credit")
    finally:
        routes.close()
        models.close()
    # No route until KServe reported the version Ready (a route at 0% would only be created to
    # be patched): the one route write sends it everything.
    (first,) = routes.of("german-credit")
    backends = first["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [(f"{isvc_for(v1)}-predictor", 100)]
    assert first["spec"]["parentRefs"][0]["name"] == "creditmodel-gateway"
    # Children are written before the status: the first status told the same story.
    told = [condition(m, "Ready") for m in models.of("german-credit") if condition(m, "Ready")]
    assert (told[0]["status"], told[0]["reason"]) == ("False", "Deploying"), told

    assert api.isvc_ready(isvc_for(v1)), "CreditModel Ready before KServe's InferenceService"
    assert (condition(ready, "Ready") or {}).get("message") == "v1 serves 100% of traffic"
    assert weights(api) == [(isvc_for(v1), 100)]
    model = api.model("german-credit")
    assert model["status"]["phase"] == "Ready"
    assert model["status"]["stable"] == {"version": "v1", "bundleURI": v1}
    assert model["status"]["observedGeneration"] == model["metadata"]["generation"]

    # The HPA KServe made from the predictor's scaling fields (sample: 1..4 at 70% CPU).
    hpa = client.AutoscalingV2Api(api.kube.api).read_namespaced_horizontal_pod_autoscaler(
        f"{isvc_for(v1)}-predictor", api.namespace
    )
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 4)
    (metric,) = hpa.spec.metrics
    assert (metric.type, metric.resource.name) == ("Resource", "cpu")
    assert (metric.resource.target.type, metric.resource.target.average_utilization) == (
        "Utilization",
        70,
    )
    assert hpa.spec.scale_target_ref.name == f"{isvc_for(v1)}-predictor"


def weights(api: Api) -> list[tuple[str, int]]:
    """The HTTPRoute's backends: (InferenceService, weight)."""
    backends = api.route("german-credit")["spec"]["rules"][0]["backendRefs"]
    return [(b["name"].removesuffix("-predictor"), b["weight"]) for b in backends]


def test_changed_bundle_starts_canary_at_step_one_once_ready(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    v1 = serving_v1(api, s3, intervalSeconds=3600)
    v2 = publish(f"{s3.uri}/german-credit/v2", "v2")
    routes = Recorder(api.kube, "gateway.networking.k8s.io", "v1", "httproutes")
    models = Recorder(api.kube, GROUP, VERSION, PLURAL)
    try:
        api.patch_model("german-credit", {"spec": {"model": {"bundleURI": v2}}})
        eventually(
            lambda: weights(api) == [(isvc_for(v1), 90), (isvc_for(v2), 10)],
            timeout=READY_TIMEOUT,
            what="10% once KServe reports the canary Ready",
        )
    finally:
        routes.close()
        models.close()
    assert api.isvc_ready(isvc_for(v2))
    now = eventually(  # the route is written before the status
        lambda: (s := api.model("german-credit")["status"])["canaryWeight"] == 10 and s,
        what="status.canaryWeight 10",
    )
    assert now["canary"]["step"] == 0
    # What was written before the canary was Ready: no traffic to it.
    status = next(
        m["status"] for m in models.of("german-credit") if m.get("status", {}).get("canary")
    )
    assert status["canary"]["version"] == "v2"
    assert status["canary"]["step"] == 0
    assert status["canaryWeight"] == 0  # not Ready: no traffic
    assert status["phase"] == "Progressing"
    assert set(api.isvcs()) == {isvc_for(v1), isvc_for(v2)}
    two = [r for r in routes.of("german-credit") if len(r["spec"]["rules"][0]["backendRefs"]) == 2]
    first = [
        (b["name"].removesuffix("-predictor"), b["weight"])
        for b in two[0]["spec"]["rules"][0]["backendRefs"]
    ]
    assert first == [(isvc_for(v1), 100), (isvc_for(v2), 0)]


def test_unpublished_bundle_is_degraded_with_the_reason(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    api.create_model(sample(s3))  # nothing published at v1
    degraded = eventually(
        lambda: condition(api.model("german-credit"), "Degraded"), what="Degraded condition"
    )
    assert degraded["status"] == "True"
    assert degraded["reason"] == "BundleUnavailable"
    assert "manifest.json" in degraded["message"]
    assert api.isvcs() == {}


def test_a_status_edited_by_hand_into_an_unreadable_one_is_reported_and_kept(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    """`kubectl edit --subresource=status` dropping a field the operator needs: the API server
    stores it (the CRD does not require it). It is reported (Degraded and Stalled,
    InvalidStatus, one Warning Event) and kept; before, an empty status replaced it and the next
    pass treated the CreditModel as new. Put right, the operator carries on."""
    v1 = serving_v1(api, s3)
    custom = client.CustomObjectsApi(api.kube.api)
    edit = {"status": {"stable": {"bundleURI": None}}}
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, api.namespace, PLURAL, "german-credit", edit
    )
    stalled = api.wait_condition("german-credit", "Stalled", 30)
    assert stalled["reason"] == "InvalidStatus"
    assert stalled["message"].startswith("status.stable.bundleURI: Field required")
    model = api.model("german-credit")
    assert model["status"]["stable"] == {"version": "v1"}  # as edited, not written over
    assert (condition(model, "Degraded") or {}).get("reason") == "InvalidStatus"
    events = client.CoreV1Api(api.kube.api).list_namespaced_event(api.namespace).items
    assert [e.reason for e in events if e.involved_object.name == "german-credit"].count(
        "InvalidStatus"
    ) == 1
    assert isvc_for(v1) in api.isvcs()
    restore = {"status": {"stable": {"bundleURI": v1}}}
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, api.namespace, PLURAL, "german-credit", restore
    )
    eventually(
        lambda: (condition(api.model("german-credit"), "Stalled") or {}).get("status") == "False",
        what="Stalled=False once the status reads again",
    )
    assert isvc_for(v1) in api.isvcs()


@pytest.mark.parametrize("action", ["promote", "abort"])
def test_manual_action_annotation(
    api: Api, s3: S3Bucket, s3_operator: Operator, action: str
) -> None:
    v1 = serving_v1(api, s3, intervalSeconds=3600)
    v2 = publish(f"{s3.uri}/german-credit/v2", "v2")
    api.patch_model("german-credit", {"spec": {"model": {"bundleURI": v2}}})
    eventually(lambda: api.model("german-credit")["status"].get("canary"), what="a canary")
    eventually(  # only a Ready canary is promoted; KServe says when it is
        lambda: api.model("german-credit")["status"]["canary"].get("readyAt"),
        timeout=READY_TIMEOUT,
        what="canary Ready",
    )
    api.patch_model(
        "german-credit", {"metadata": {"annotations": {"scoring.creditmodel.io/action": action}}}
    )
    status = eventually(
        lambda: api.model("german-credit")["status"]
        if not api.model("german-credit")["status"].get("canary")
        else None,
        what="canary resolved",
    )
    expected = ("v2", v2) if action == "promote" else ("v1", v1)
    assert (status["stable"]["version"], status["stable"]["bundleURI"]) == expected
    eventually(
        lambda: set(api.isvcs()) == {isvc_for(expected[1])}, what="old InferenceService pruned"
    )
    annotations = api.model("german-credit")["metadata"].get("annotations", {})
    assert "scoring.creditmodel.io/action" not in annotations


def test_knative_router_moves_canary_traffic_percent_on_one_isvc(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    """KServe's webhooks admit the one Serverless InferenceService and its canary; this stack has
    no Knative Serving, so KServe never reports it Ready (Event ServerlessModeRejected) and the canary
    gets canaryTrafficPercent 0: weight only on a Ready backend. The move to the first step once
    Ready is the state machine's (tests/operator/test_rollout.py); it needs Knative to run here."""
    publish(f"{s3.uri}/german-credit/v1", "v1")
    body = sample(s3, router="knative", intervalSeconds=3600)
    del body["spec"]["rollout"]["gateway"]
    body["spec"]["predictor"]["scaleMetric"] = "concurrency"
    api.create_model(body)
    isvc = eventually(lambda: api.isvcs().get("german-credit"), what="the one InferenceService")
    # The operator writes Knative, not the alias Serverless that KServe's webhook renames (which
    # the operator's compare would patch back on every resync).
    mode = isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]
    assert mode == "Knative", mode
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]

    def rejected() -> list[str]:
        events = client.CoreV1Api(api.kube.api).list_namespaced_event(api.namespace).items
        return [
            e.message
            for e in events
            if e.reason == "ServerlessModeRejected" and e.involved_object.name == "german-credit"
        ]

    assert eventually(rejected, what="KServe's verdict on Serverless without Knative")
    assert not api.isvc_ready("german-credit")
    v2 = publish(f"{s3.uri}/german-credit/v2", "v2")
    api.patch_model("german-credit", {"spec": {"model": {"bundleURI": v2}}})
    predictor = eventually(
        lambda: api.isvcs()["german-credit"]["spec"]["predictor"]
        if "canaryTrafficPercent" in api.isvcs()["german-credit"]["spec"]["predictor"]
        else None,
        what="canaryTrafficPercent",
    )
    assert predictor["canaryTrafficPercent"] == 0  # KServe does not report it Ready
    assert v2 in predictor["containers"][0]["args"]
    assert set(api.isvcs()) == {"german-credit"}
    status = eventually(  # children are written before the status
        lambda: api.model("german-credit")["status"]["canary"]
        and api.model("german-credit")["status"],
        what="status.canary",
    )
    assert (status["canary"]["version"], status["canaryWeight"]) == ("v2", 0)
    assert not api.apps_deployments(), "KServe rendered a Deployment for a Serverless ISVC"


def test_deletion_cascades_through_the_garbage_collector(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    """The finalizer is released and the real garbage collector removes every child: ours
    (InferenceService, HTTPRoute) and KServe's (Deployment, Service, HPA, pods)."""
    v1 = serving_v1(api, s3)
    uid = api.model("german-credit")["metadata"]["uid"]
    assert api.model("german-credit")["metadata"]["finalizers"]
    owned = [api.isvcs()[isvc_for(v1)], api.route("german-credit")]
    for child in owned:
        (reference,) = child["metadata"]["ownerReferences"]
        assert (reference["uid"], reference["controller"]) == (uid, True)
    predictor = f"{isvc_for(v1)}-predictor"
    apps, core = client.AppsV1Api(api.kube.api), client.CoreV1Api(api.kube.api)
    autoscaling = client.AutoscalingV2Api(api.kube.api)
    assert apps.read_namespaced_deployment(predictor, api.namespace)
    assert core.read_namespaced_service(predictor, api.namespace)
    assert autoscaling.read_namespaced_horizontal_pod_autoscaler(predictor, api.namespace)
    assert api.predictor_pods(isvc_for(v1))
    api.custom.delete_namespaced_custom_object(
        "scoring.creditmodel.io", "v1alpha1", api.namespace, "creditmodels", "german-credit"
    )

    def gone(read: Any, *args: Any) -> bool:
        try:
            read(*args)
        except client.ApiException as exc:
            return exc.status == 404
        return False

    eventually(
        lambda: gone(api.model, "german-credit"), what="CreditModel deleted (finalizer released)"
    )
    leftovers = {
        "InferenceService": lambda: not gone(api.isvc, isvc_for(v1)),
        "HTTPRoute": lambda: not gone(api.route, "german-credit"),
        "Deployment": lambda: not gone(apps.read_namespaced_deployment, predictor, api.namespace),
        "Service": lambda: not gone(core.read_namespaced_service, predictor, api.namespace),
        "HPA": lambda: not gone(
            autoscaling.read_namespaced_horizontal_pod_autoscaler, predictor, api.namespace
        ),
        "pods": lambda: bool(api.predictor_pods(isvc_for(v1))),
    }
    eventually(
        lambda: not [kind for kind, left in leftovers.items() if left()],
        timeout=READY_TIMEOUT,
        what="every child removed by the garbage collector",
    )


def test_a_route_someone_else_made_is_never_taken_over_and_an_orphan_of_ours_is_adopted(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    """Before: the operator wrote its backends over a same-named HTTPRoute it did not make, and
    never set its ownerReference on it, so deleting the CreditModel left it behind; children
    orphaned by `--cascade=orphan` stayed orphans under the re-created CreditModel."""
    routes = ("gateway.networking.k8s.io", "v1", api.namespace, "httproutes")
    theirs = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "german-credit", "labels": {"team": "payments"}},
        "spec": {
            "parentRefs": [{"name": "payments-gw"}],
            "hostnames": ["payments.example.com"],
            "rules": [{"backendRefs": [{"name": "payments", "port": 8080}]}],
        },
    }
    api.custom.create_namespaced_custom_object(*routes, theirs)
    v1 = publish(f"{s3.uri}/german-credit/v1", "v1")
    api.create_model(sample(s3))
    refused = eventually(
        lambda: (c := condition(api.model("german-credit"), "Degraded"))
        and c["reason"] == "HTTPRouteRefused"
        and c,
        timeout=READY_TIMEOUT,
        what="Degraded: the route's name is taken",
    )
    assert "exists and is not this CreditModel's" in refused["message"], refused
    route = api.route("german-credit")
    assert route["spec"]["hostnames"] == ["payments.example.com"]
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]] == ["payments"]
    assert not route["metadata"].get("ownerReferences")
    api.custom.delete_namespaced_custom_object(*routes, "german-credit")
    eventually(lambda: weights(api) == [(isvc_for(v1), 100)], 60, "our route, once theirs is gone")

    api.custom.delete_namespaced_custom_object(
        GROUP, VERSION, api.namespace, PLURAL, "german-credit", propagation_policy="Orphan"
    )
    eventually(
        lambda: not api.isvc(isvc_for(v1))["metadata"].get("ownerReferences"),
        what="the InferenceService orphaned by the garbage collector",
    )
    uid = api.create_model(sample(s3))["metadata"]["uid"]
    for read in (lambda: api.isvc(isvc_for(v1)), lambda: api.route("german-credit")):
        eventually(
            lambda read=read: [r["uid"] for r in read()["metadata"].get("ownerReferences", [])]
            == [uid],
            what="the orphans adopted by the CreditModel made again",
        )
    api.wait_model_ready("german-credit")
    s3_operator.assert_never_forbidden()


def test_children_edited_or_deleted_by_hand_are_put_back_from_the_watch(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    """The full re-read of every child is ten minutes apart (children_resync_seconds); an edit
    to a child's spec or a deletion reaches the owner's next pass from the watch stream."""
    v1 = serving_v1(api, s3)
    custom = client.CustomObjectsApi(api.kube.api)
    network = client.NetworkingV1Api(api.kube.api)
    policy = builders.predictor_networkpolicy_name("german-credit")
    network.read_namespaced_network_policy(policy, api.namespace)
    custom.patch_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", api.namespace, "httproutes", "german-credit",
        {"spec": {"rules": [{"backendRefs": [
            {"name": f"{isvc_for(v1)}-predictor", "port": 80, "weight": 0}]}]}},
    )  # fmt: skip
    custom.patch_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", api.namespace, "inferenceservices", isvc_for(v1),
        {"spec": {"predictor": {"maxReplicas": 9}}},
    )  # fmt: skip
    network.delete_namespaced_network_policy(policy, api.namespace)
    custom.patch_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", api.namespace, "httproutes", "german-credit",
        {"metadata": {"labels": {builders.MODEL_LABEL: None}}},
    )  # fmt: skip

    eventually(lambda: weights(api) == [(isvc_for(v1), 100)], 30, "route weights put back")
    eventually(
        lambda: api.route("german-credit")["metadata"]["labels"].get(builders.MODEL_LABEL)
        == "german-credit",
        30,
        "the route's model label put back (its owner found by its ownerReference)",
    )
    eventually(
        lambda: api.isvc(isvc_for(v1))["spec"]["predictor"]["maxReplicas"] == 4,
        30,
        "InferenceService spec put back",
    )
    eventually(
        lambda: network.read_namespaced_network_policy(policy, api.namespace),
        30,
        "NetworkPolicy re-created",
    )
    s3_operator.assert_never_forbidden()
