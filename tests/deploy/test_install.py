"""The chart and the kustomize manifests against the real kube-apiserver fixture: helm install,
upgrade and uninstall; the chart's ServiceAccount gets exactly the operator's rules; server-side
dry-runs of the kustomize output."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.deploy.chart import ALL_MONITORING, CHART, MANIFESTS, helm, kustomize
from tests.support.kube import Kube, load_yaml_documents
from tests.support.process import tool
from tests.support.stack import stack_env, third_party_crds

pytestmark = pytest.mark.integration


@pytest.fixture
def monitoring_crds(kube: Kube) -> None:
    """The real Prometheus Operator CRDs (from the Go module cache, via ./bin/stack.env)."""
    crds = third_party_crds(stack_env())
    kube.apply_crds([c for c in crds if c["spec"]["group"] == "monitoring.coreos.com"], timeout=120)


def helm_as_admin(kube: Kube, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return helm(*args, "--kubeconfig", kube.kubeconfig, check=False)


def kubectl(kube: Kube, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("kubectl")), "--kubeconfig", str(kube.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def can_i(api: client.ApiClient, namespace: str, group: str, resource: str, verb: str) -> bool:
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                namespace=namespace,
                group=group,
                resource=resource.split("/")[0],
                subresource=resource.split("/")[1] if "/" in resource else None,
                verb=verb,
            )
        )
    )
    result = client.AuthorizationV1Api(api).create_self_subject_access_review(review)
    return bool(result.status.allowed)


@pytest.mark.usefixtures("monitoring_crds")
def test_helm_install_upgrade_uninstall(kube: Kube) -> None:
    release = f"it-{uuid.uuid4().hex[:6]}"
    fullname = f"{release}-creditmodel-operator"
    install = helm_as_admin(
        kube,
        "install",
        release,
        CHART,
        "--namespace",
        kube.namespace,
        "--set",
        ",".join(ALL_MONITORING),
    )
    assert install.returncode == 0, install.stderr
    assert "STATUS: deployed" in install.stdout
    assert f"rollout status deployment/{fullname}" in install.stdout  # NOTES.txt
    assert "PodMonitor ServiceMonitor PrometheusRule Grafana dashboard ConfigMap" in install.stdout

    apps = client.AppsV1Api(kube.api)
    deployment = apps.read_namespaced_deployment(fullname, kube.namespace)
    assert deployment.spec.strategy.type == "Recreate"
    pod = deployment.spec.template.spec
    assert pod.service_account_name == fullname
    assert pod.containers[0].security_context.read_only_root_filesystem is True
    core = client.CoreV1Api(kube.api)
    core.read_namespaced_service_account(fullname, kube.namespace)
    core.read_namespaced_config_map(f"{fullname}-dashboard", kube.namespace)
    client.NetworkingV1Api(kube.api).read_namespaced_network_policy(fullname, kube.namespace)
    rbac = client.RbacAuthorizationV1Api(kube.api)
    binding = rbac.read_cluster_role_binding(fullname)
    assert [(s.name, s.namespace) for s in binding.subjects] == [(fullname, kube.namespace)]
    custom = client.CustomObjectsApi(kube.api)
    for plural, name in (
        ("podmonitors", f"{fullname}-predictors"),
        ("servicemonitors", f"{fullname}-predictors"),
        ("prometheusrules", fullname),
    ):
        custom.get_namespaced_custom_object(
            "monitoring.coreos.com", "v1", kube.namespace, plural, name
        )
    ext = client.ApiextensionsV1Api(kube.api)
    crd = ext.read_custom_resource_definition("creditmodels.scoring.creditmodel.io")
    assert crd.spec.names.kind == "CreditModel"

    # A CreditModel is accepted once the chart is in (its CRD is served).
    sample = yaml.safe_load((MANIFESTS / "samples" / "creditmodel.yaml").read_text())
    custom.create_namespaced_custom_object(
        "scoring.creditmodel.io", "v1alpha1", kube.namespace, "creditmodels", sample
    )

    upgrade = helm_as_admin(
        kube,
        "upgrade",
        release,
        CHART,
        "--namespace",
        kube.namespace,
        "--reuse-values",
        "--set",
        "operator.verbose=true,monitoring.serviceMonitor.enabled=false",
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert "REVISION: 2" in upgrade.stdout
    args = (
        apps.read_namespaced_deployment(fullname, kube.namespace)
        .spec.template.spec.containers[0]
        .args
    )
    assert "--verbose" in args
    with pytest.raises(ApiException) as gone:
        custom.get_namespaced_custom_object(
            "monitoring.coreos.com",
            "v1",
            kube.namespace,
            "servicemonitors",
            f"{fullname}-predictors",
        )
    assert gone.value.status == 404

    uninstall = helm_as_admin(kube, "uninstall", release, "--namespace", kube.namespace)
    assert uninstall.returncode == 0, uninstall.stderr
    for read in (
        lambda: apps.read_namespaced_deployment(fullname, kube.namespace),
        lambda: rbac.read_cluster_role(fullname),
        lambda: rbac.read_cluster_role_binding(fullname),
    ):
        with pytest.raises(ApiException) as deleted:
            read()
        assert deleted.value.status == 404
    # Helm never deletes CRDs (and so never the users' CreditModels).
    ext.read_custom_resource_definition("creditmodels.scoring.creditmodel.io")
    custom.get_namespaced_custom_object(
        "scoring.creditmodel.io", "v1alpha1", kube.namespace, "creditmodels", "german-credit"
    )


def test_chart_service_account_has_exactly_the_operators_rules(kube: Kube) -> None:
    """With a TokenRequest token of the chart's ServiceAccount (what the operator pod gets), every
    rule of manifests/rbac is allowed and what the operator does not need is denied."""
    release = f"sa-{uuid.uuid4().hex[:6]}"
    fullname = f"{release}-creditmodel-operator"
    install = helm_as_admin(kube, "install", release, CHART, "--namespace", kube.namespace)
    assert install.returncode == 0, install.stderr
    try:
        api = kube.plane.api_client(kube.plane.service_account_kubeconfig(kube.namespace, fullname))
        rules = client.RbacAuthorizationV1Api(kube.api).read_cluster_role(fullname).rules
        checked = 0
        for rule in rules:
            for group in rule.api_groups:
                for resource in rule.resources:
                    for verb in rule.verbs:
                        assert can_i(api, "tenant-a", group, resource, verb), (
                            f"{verb} {resource}.{group} denied to the chart's ServiceAccount"
                        )
                        checked += 1
        assert checked >= 20
        for group, resource, verb in (
            ("", "secrets", "get"),
            ("", "pods", "create"),
            ("scoring.creditmodel.io", "creditmodels", "delete"),
            ("rbac.authorization.k8s.io", "clusterroles", "create"),
            ("apps", "deployments", "create"),
        ):
            assert not can_i(api, "tenant-a", group, resource, verb), f"{verb} {resource} granted"
        api.close()
    finally:
        helm_as_admin(kube, "uninstall", release, "--namespace", kube.namespace)


def _into_namespace(objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """Move the kustomize output into the test namespace (the fixture's control plane is shared)."""
    moved = []
    for obj in objects:
        if obj["kind"] == "Namespace":
            continue
        if obj["metadata"].get("namespace"):
            obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects", []):
            subject["namespace"] = namespace
        moved.append(obj)
    return moved


@pytest.mark.usefixtures("monitoring_crds")
@pytest.mark.parametrize("directory", ["default", "monitoring", "samples"])
def test_kustomize_output_passes_server_side_dry_run(kube: Kube, directory: str) -> None:
    """Everything `kubectl apply -k manifests/<dir>` sends is accepted by the API server (schema,
    CRD validation incl. CEL rules, admission), without persisting anything."""
    objects = _into_namespace(kustomize(MANIFESTS / directory), kube.namespace)
    # As on a cluster where `make install-crds` ran: the peering object needs kopf's CRDs served.
    kube.apply_crds(load_yaml_documents(MANIFESTS / "crd" / "kopf.dev_peerings.yaml"))
    if directory == "samples":  # the other two carry or need no CreditModel CRD
        kube.apply_crds(
            load_yaml_documents(MANIFESTS / "crd" / "scoring.creditmodel.io_creditmodels.yaml")
        )
    run = kubectl(
        kube,
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=creditmodel-tests",
        "--force-conflicts",
        "--namespace",
        kube.namespace,
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )
    assert run.returncode == 0, run.stderr
    applied = [line for line in run.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(objects), run.stdout
