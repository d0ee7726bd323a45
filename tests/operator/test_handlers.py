"""The operator for real (a process, as the RBAC-bound ServiceAccount) against a real
kube-apiserver and MinIO. No KServe or Job controller runs: the tests write the children's status
through the API as those controllers would (envtest style)."""

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
from tests.operator.running import Api, Operator, condition, eventually, running_operator
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
    """Apply the sample with v1 published; play KServe: mark its InferenceService Ready."""
    v1 = publish(f"{s3.uri}/german-credit/v1", "v1")
    api.create_model(sample(s3, **rollout))
    eventually(lambda: isvc_for(v1) in api.isvcs(), timeout=10, what="stable InferenceService")
    api.mark_isvc_ready(isvc_for(v1))
    eventually(
        lambda: (condition(api.model("german-credit"), "Ready") or {}).get("status") == "True",
        what="Ready=True",
    )
    return v1


def test_apply_creates_inferenceservice_and_route_then_ready(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    v1 = publish(f"{s3.uri}/german-credit/v1", "v1")
    api.create_model(sample(s3))
    isvcs = eventually(api.isvcs, timeout=5, what="an InferenceService")
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
    route = eventually(lambda: api.route("german-credit"), what="HTTPRoute")
    backends = route["spec"]["rules"][0]["backendRefs"]
    # not Ready yet: no traffic to send it (the Gateway answers 500, not into a dead backend)
    assert [(b["name"], b["weight"]) for b in backends] == [(f"{isvc_for(v1)}-predictor", 0)]
    assert route["spec"]["parentRefs"][0]["name"] == "creditmodel-gateway"

    # Children are written before the status: wait for the status to tell the same story.
    deploying = eventually(lambda: condition(api.model("german-credit"), "Ready"), what="Ready")
    assert (deploying["status"], deploying["reason"]) == ("False", "Deploying")
    api.mark_isvc_ready(isvc_for(v1))
    ready = eventually(
        lambda: condition(api.model("german-credit"), "Ready")
        if (condition(api.model("german-credit"), "Ready") or {}).get("status") == "True"
        else None,
        what="Ready=True",
    )
    assert ready["message"] == "v1 serves 100% of traffic"
    assert weights(api) == [(isvc_for(v1), 100)]
    model = api.model("german-credit")
    assert model["status"]["phase"] == "Ready"
    assert model["status"]["stable"] == {"version": "v1", "bundleURI": v1}
    assert model["status"]["observedGeneration"] == model["metadata"]["generation"]


def weights(api: Api) -> list[tuple[str, int]]:
    """The HTTPRoute's backends: (InferenceService, weight)."""
    backends = api.route("german-credit")["spec"]["rules"][0]["backendRefs"]
    return [(b["name"].removesuffix("-predictor"), b["weight"]) for b in backends]


def test_changed_bundle_starts_canary_at_step_one_once_ready(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    v1 = serving_v1(api, s3, intervalSeconds=3600)
    v2 = publish(f"{s3.uri}/german-credit/v2", "v2")
    api.patch_model("german-credit", {"spec": {"model": {"bundleURI": v2}}})
    status = eventually(
        lambda: api.model("german-credit")["status"]
        if api.model("german-credit")["status"].get("canary")
        else None,
        what="a canary",
    )
    assert status["canary"]["version"] == "v2"
    assert status["canary"]["step"] == 0
    assert status["canaryWeight"] == 0  # not Ready: no traffic
    assert status["phase"] == "Progressing"
    assert set(api.isvcs()) == {isvc_for(v1), isvc_for(v2)}
    assert eventually(lambda: len(weights(api)) == 2 and weights(api), what="two backends") == [
        (isvc_for(v1), 100),
        (isvc_for(v2), 0),
    ]
    assert api.isvcs()[isvc_for(v2)]["metadata"]["labels"][builders.TRACK_LABEL] == "canary"
    api.mark_isvc_ready(isvc_for(v2))
    eventually(
        lambda: weights(api) == [(isvc_for(v1), 90), (isvc_for(v2), 10)], what="10% once Ready"
    )
    assert api.model("german-credit")["status"]["canaryWeight"] == 10


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


@pytest.mark.parametrize("action", ["promote", "abort"])
def test_manual_action_annotation(
    api: Api, s3: S3Bucket, s3_operator: Operator, action: str
) -> None:
    v1 = serving_v1(api, s3, intervalSeconds=3600)
    v2 = publish(f"{s3.uri}/german-credit/v2", "v2")
    api.patch_model("german-credit", {"spec": {"model": {"bundleURI": v2}}})
    eventually(lambda: api.model("german-credit")["status"].get("canary"), what="a canary")
    api.mark_isvc_ready(isvc_for(v2))  # only a Ready canary is promoted
    eventually(
        lambda: api.model("german-credit")["status"]["canary"].get("readyAt"), what="canary Ready"
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
    publish(f"{s3.uri}/german-credit/v1", "v1")
    body = sample(s3, router="knative", intervalSeconds=3600)
    del body["spec"]["rollout"]["gateway"]
    api.create_model(body)
    isvc = eventually(lambda: api.isvcs().get("german-credit"), what="the one InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    api.mark_isvc_ready("german-credit")
    v2 = publish(f"{s3.uri}/german-credit/v2", "v2")
    api.patch_model("german-credit", {"spec": {"model": {"bundleURI": v2}}})
    predictor = eventually(
        lambda: api.isvcs()["german-credit"]["spec"]["predictor"]
        if "canaryTrafficPercent" in api.isvcs()["german-credit"]["spec"]["predictor"]
        else None,
        what="canaryTrafficPercent",
    )
    assert predictor["canaryTrafficPercent"] == 10
    assert v2 in predictor["containers"][0]["args"]
    assert set(api.isvcs()) == {"german-credit"}


def test_deletion_releases_the_object_and_children_are_owned(
    api: Api, s3: S3Bucket, s3_operator: Operator
) -> None:
    """No garbage collector runs here: ownership is checked, the cascade is Kubernetes' part."""
    v1 = serving_v1(api, s3)
    uid = api.model("german-credit")["metadata"]["uid"]
    assert api.model("german-credit")["metadata"]["finalizers"]
    owned = [api.isvcs()[isvc_for(v1)], api.route("german-credit")]
    for child in owned:
        (reference,) = child["metadata"]["ownerReferences"]
        assert (reference["uid"], reference["controller"]) == (uid, True)
    api.custom.delete_namespaced_custom_object(
        "scoring.creditmodel.io", "v1alpha1", api.namespace, "creditmodels", "german-credit"
    )

    def gone() -> bool:
        try:
            api.model("german-credit")
        except client.ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone, what="CreditModel deleted (finalizer released)")
