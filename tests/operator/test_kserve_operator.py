"""The operator process meets the real stack's refusals (issue 11): a child the API server will not
store (a real ValidatingAdmissionPolicy standing for a platform team's rule) and a spec stored under
an older CRD that the operator cannot read. Each is reported in status and one Event, never as a
retry loop without status."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from creditmodel.operator import builders
from tests.operator.factories import spec
from tests.operator.running import (
    GROUP,
    PLURAL,
    VERSION,
    Api,
    condition,
    crd_documents,
    running_operator,
)
from tests.operator.test_handlers import publish, sample
from tests.operator.test_kserve import KSERVE, NAME, V1
from tests.support.cluster import ClusterKube
from tests.support.kube import apply_crds
from tests.support.minio import S3Bucket
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def image_policy(namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A platform team's rule, as a real ValidatingAdmissionPolicy: predictor images come from
    the internal registry. The sample's ghcr.io image breaks it."""
    name = f"internal-images-{namespace}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["serving.kserve.io"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["inferenceservices"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "object.spec.predictor.containers.all(c,"
                    " c.image.startsWith('registry.internal/'))",
                    "message": "predictor images must come from registry.internal",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    return policy, binding


def test_a_refused_inferenceservice_is_degraded_with_one_event_and_backs_off(
    crds: ClusterKube, operator_kubeconfig: Path, tmp_path: Path, s3: S3Bucket
) -> None:
    """Before: a child the API server refused (a CreditModel named credit.v2 then, an admission
    policy here) left no status and no Event while the operator retried every 5 s forever. Now:
    Degraded with the API server's message, one Warning Event, retries at 5 s doubling; once the
    policy goes, the next retry deploys and Degraded clears. status.url names the route's host."""
    api = Api(crds)
    registration = client.AdmissionregistrationV1Api(crds.api)
    policy, binding = image_policy(crds.namespace)
    registration.create_validating_admission_policy(policy)
    registration.create_validating_admission_policy_binding(binding)
    refused_probe = builders.build_inferenceservice(
        builders.Owner("probe", crds.namespace, "uid"), spec(), V1
    )
    refused_probe["metadata"].pop("ownerReferences")

    def policy_active() -> bool:  # the API server loads policies through an informer
        try:
            client.CustomObjectsApi(crds.api).create_namespaced_custom_object(
                *KSERVE[:2], crds.namespace, KSERVE[2], refused_probe, dry_run="All"
            )
        except ApiException as exc:
            return "registry.internal" in exc.body
        return False

    try:
        eventually(policy_active, 30, "admission policy in force")
        publish(f"{s3.uri}/german-credit/v1", "v1")
        body = sample(s3, hostnames=["credit.example.com"])
        with running_operator(crds, operator_kubeconfig, tmp_path, s3.env()) as operator:
            api.create_model(body)
            degraded = api.wait_condition(NAME, "Degraded", 60)
            assert degraded["reason"] == "InferenceServiceRefused"
            assert "predictor images must come from registry.internal" in degraded["message"]
            time.sleep(20)  # backoff 5 s, 10 s, 20 s: at most four writes in this window
            attempts = operator.log().count("retrying refused InferenceService")
            assert 1 <= attempts <= 4, operator.log()[-4000:]
            warnings = [
                e
                for e in client.CoreV1Api(crds.api).list_namespaced_event(crds.namespace).items
                if e.involved_object.name == NAME and e.reason == "InferenceServiceRefused"
            ]
            assert len(warnings) == 1, [(e.reason, e.count, e.message) for e in warnings]
            assert api.isvcs() == {}

            registration.delete_validating_admission_policy_binding(binding["metadata"]["name"])
            ready = eventually(
                lambda: (m := api.model(NAME))
                and (condition(m, "Ready") or {}).get("status") == "True"
                and m,
                90,
                "Ready after the policy went",
            )
            assert (condition(ready, "Degraded") or {}).get("status") == "False"
            assert ready["status"]["url"] == "http://credit.example.com"
            shown = subprocess.run(
                ["kubectl", "--kubeconfig", str(crds.kubeconfig), "-n", crds.namespace, "get",
                 "creditmodel", NAME],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout  # fmt: skip
            header, row = shown.splitlines()
            assert "URL" in header.split()
            assert "http://credit.example.com" in row.split()
    finally:
        with contextlib.suppress(ApiException):
            registration.delete_validating_admission_policy_binding(binding["metadata"]["name"])
        registration.delete_validating_admission_policy(policy["metadata"]["name"])


def test_a_spec_the_operator_cannot_read_is_degraded_and_stalled_with_one_event(
    crds: ClusterKube, operator_kubeconfig: Path, tmp_path: Path, s3: S3Bucket
) -> None:
    """An operator newer than the CRD in the cluster (an upgrade in the wrong order): the API server
    stores a spec the operator's model refuses. Before, that was one log line per resync and no
    status; now Degraded and Stalled name the field, with one Warning Event."""
    extensions = client.ApiextensionsV1Api(crds.api)
    crd_name = f"{PLURAL}.{GROUP}"
    current = extensions.read_custom_resource_definition(crd_name)
    assert current.spec.versions[0].name == VERSION
    older = client.ApiClient().sanitize_for_serialization(current)
    older["metadata"] = {"name": crd_name}
    older.pop("status", None)
    schema = older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules = schema["properties"]["spec"]["x-kubernetes-validations"]
    schema["properties"]["spec"]["x-kubernetes-validations"] = [
        rule for rule in rules if "scaleMetric" not in rule["rule"]
    ]
    apply_crds(crds.api, [older])
    try:
        publish(f"{s3.uri}/german-credit/v1", "v1")
        body = sample(s3, router="knative")
        body["spec"]["predictor"] = {"scaleMetric": "cpu"}
        api = Api(crds)
        eventually(lambda: api.create_model(body), 30, "the older CRD in force")
        with running_operator(crds, operator_kubeconfig, tmp_path, s3.env()):
            stalled = api.wait_condition(NAME, "Stalled", 60)
            model = api.model(NAME)
            assert stalled["reason"] == "InvalidSpec"
            assert "scaleMetric must be cpu or memory with router gatewayAPI" in stalled["message"]
            assert (condition(model, "Degraded") or {}).get("reason") == "InvalidSpec"
            assert model["status"]["observedGeneration"] == model["metadata"]["generation"]
            time.sleep(3)  # several resyncs (1 s here): still one Event
            events = [
                e
                for e in client.CoreV1Api(crds.api).list_namespaced_event(crds.namespace).items
                if e.involved_object.name == NAME and e.reason == "InvalidSpec"
            ]
            assert len(events) == 1, events
            assert (events[0].count or 1) == 1, events
            assert api.isvcs() == {}
    finally:
        apply_crds(crds.api, crd_documents())


def test_a_failed_predictor_edit_keeps_the_old_pods_serving_and_says_so(
    crds: ClusterKube, operator_kubeconfig: Path, tmp_path: Path, s3: S3Bucket
) -> None:
    """The real KServe marks the stable's InferenceService not Ready when an update of its
    Deployment fails (here a ServiceAccount that does not exist: the ReplicaSet's pods are
    forbidden) while the old ReplicaSet's pods still serve. The route keeps its 100% on them
    (it went to 0% before: an outage for a typo), and the CreditModel says so at once: Degraded
    StableNotReady quoting KServe, one Warning Event. Fixing the spec brings Ready back."""
    api = Api(crds)
    publish(f"{s3.uri}/german-credit/v1", "v1")
    with running_operator(crds, operator_kubeconfig, tmp_path, s3.env()):
        api.create_model(sample(s3))
        api.wait_model_ready(NAME)
        (stable,) = api.isvcs()

        def weights() -> dict[str, int]:
            refs = api.route(NAME)["spec"]["rules"][0]["backendRefs"]
            return {ref["name"].removesuffix("-predictor"): ref["weight"] for ref in refs}

        assert weights() == {stable: 100}
        api.patch_model(NAME, {"spec": {"predictor": {"serviceAccountName": "typo-sa"}}})
        degraded = api.wait_condition(NAME, "Degraded", 90)
        assert degraded["reason"] == "StableNotReady", degraded
        assert "typo-sa" in degraded["message"], degraded
        assert not api.isvc_ready(stable)
        assert weights() == {stable: 100}
        assert any(p.status.phase == "Running" for p in api.predictor_pods(stable))
        time.sleep(5)  # later passes keep it, and announce it only once
        assert weights() == {stable: 100}
        warnings = [
            e
            for e in client.CoreV1Api(crds.api).list_namespaced_event(crds.namespace).items
            if e.involved_object.name == NAME and e.reason == "StableNotReady"
        ]
        assert len(warnings) == 1, [(e.reason, e.count, e.message) for e in warnings]
        assert warnings[0].type == "Warning"

        api.patch_model(NAME, {"spec": {"predictor": {"serviceAccountName": None}}})
        api.wait_model_ready(NAME)
        assert (condition(api.model(NAME), "Degraded") or {}).get("status") == "False"
        assert weights() == {stable: 100}


def namespace_to_delete(crds: ClusterKube, prefix: str) -> tuple[ClusterKube, Api]:
    """A namespace of its own (this test deletes it) with the operator's peering object."""
    doomed = dataclasses.replace(crds, namespace=crds.cluster.create_namespace(crds.api, prefix))
    api = Api(doomed)
    api.custom.create_namespaced_custom_object(
        "kopf.dev", "v1", doomed.namespace, "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
         "metadata": {"name": "creditmodel-operator"}},
    )  # fmt: skip
    return doomed, api


def namespace_gone(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except ApiException as exc:
        return exc.status == 404
    return False


def test_a_namespace_being_deleted_ends_its_creditmodel_without_errors(
    crds: ClusterKube, operator_kubeconfig: Path, tmp_path: Path, s3: S3Bucket
) -> None:
    """Deleting a namespace deletes its CreditModels and their children in no set order: a
    child gone first woke its CreditModel, whose pass wrote it again into a namespace the API
    server creates nothing in any more (403 NamespaceTerminating), warned of a refusal and
    retried its Warning Event as ERROR lines. Worse, with --namespace (the chart's
    watchNamespaces) kopf stops watching a namespace as soon as its deletion starts, so kopf's
    finalizer on the CreditModel was never removed and the namespace stayed Terminating for good.
    The loop now releases the finalizer and ends with one INFO line."""
    doomed, api = namespace_to_delete(crds, "doomed")
    publish(f"{s3.uri}/german-credit/v1", "v1")
    with running_operator(doomed, operator_kubeconfig, tmp_path, s3.env()) as operator:
        api.create_model(sample(s3))
        api.wait_model_ready(NAME)
        core = client.CoreV1Api(crds.api)
        serving = len(operator.log())
        core.delete_namespace(doomed.namespace)
        eventually(
            lambda: namespace_gone(core, doomed.namespace),
            120,
            "the namespace controller emptied and removed the namespace",
        )
        time.sleep(2)  # anything the operator still had to say
        log = operator.log()[serving:]
    lines = log.splitlines()
    assert not [line for line in lines if "ERROR" in line], log[-4000:]
    assert not [line for line in lines if "refused" in line], log[-4000:]
    assert f"namespace {doomed.namespace} is being deleted: {NAME} stops" in log


def test_a_namespace_deleted_while_the_operator_is_down_is_released_when_it_starts(
    crds: ClusterKube, operator_kubeconfig: Path, tmp_path: Path, s3: S3Bucket
) -> None:
    """kopf does not watch a namespace that is already Terminating when it starts (with
    --namespace), so the finalizer its daemon put on a CreditModel there was never removed: a
    namespace deleted during an operator upgrade stayed Terminating. The operator's namespace
    watch releases it."""
    doomed, api = namespace_to_delete(crds, "gone")
    publish(f"{s3.uri}/german-credit/v1", "v1")
    core = client.CoreV1Api(crds.api)
    with running_operator(doomed, operator_kubeconfig, tmp_path, s3.env()) as operator:
        api.create_model(sample(s3))
        api.wait_model_ready(NAME)
        operator.stop()
        core.delete_namespace(doomed.namespace)
        eventually(
            lambda: (condition(api.model(NAME), "Ready") is not None)
            and bool(api.model(NAME)["metadata"].get("deletionTimestamp")),
            60,
            "the CreditModel marked for deletion, held by the finalizer",
        )
        operator.start()
        eventually(
            lambda: namespace_gone(core, doomed.namespace),
            120,
            "the namespace removed once the operator runs",
        )
        assert f"released {NAME}" in operator.log()
