"""Operator test fixtures: our CRD plus minimal KServe/Gateway API CRDs, and a ServiceAccount bound to
exactly the ClusterRole in manifests/rbac, whose kubeconfig the operator runs with."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client

from tests.predictor.conftest import champion  # noqa: F401 (trained bundle, session-scoped)
from tests.support.kube import Kube, load_yaml_documents
from tests.support.process import REPO_ROOT

if TYPE_CHECKING:
    from tests.operator.running import Operator

CRD_DIR = REPO_ROOT / "manifests" / "crd"
RBAC = REPO_ROOT / "manifests" / "rbac" / "operator.yaml"
TEST_CRDS = Path(__file__).parent / "crds" / "minimal.yaml"
GROUP, VERSION, PLURAL = "scoring.creditmodel.io", "v1alpha1", "creditmodels"


def crd_documents() -> list[dict[str, Any]]:
    documents = [
        doc for path in sorted(CRD_DIR.glob("*.yaml")) for doc in load_yaml_documents(path)
    ]
    return [
        doc
        for doc in documents + load_yaml_documents(TEST_CRDS)
        if doc.get("kind") == "CustomResourceDefinition"
    ]


@pytest.fixture
def crds(kube: Kube) -> Kube:
    kube.apply_crds(crd_documents())
    return kube


@pytest.fixture
def operator_kubeconfig(crds: Kube) -> Path:
    """Credentials of a ServiceAccount in the test namespace bound to exactly our ClusterRole."""
    rbac = client.RbacAuthorizationV1Api(crds.api)
    core = client.CoreV1Api(crds.api)
    for document in copy.deepcopy(load_yaml_documents(RBAC)):
        kind = document["kind"]
        if kind == "ServiceAccount":
            document["metadata"]["namespace"] = crds.namespace
            core.create_namespaced_service_account(crds.namespace, document)
        elif kind == "ClusterRole":
            _create_or_replace(rbac.create_cluster_role, rbac.replace_cluster_role, document)
        elif kind == "ClusterRoleBinding":
            document["metadata"]["name"] = f"creditmodel-operator-{crds.namespace}"
            for subject in document["subjects"]:
                subject["namespace"] = crds.namespace
            rbac.create_cluster_role_binding(document)
    # The namespaced twin of manifests/rbac/peering.yaml: the operator runs with --namespace here.
    client.CustomObjectsApi(crds.api).create_namespaced_custom_object(
        "kopf.dev",
        "v1",
        crds.namespace,
        "kopfpeerings",
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": "creditmodel-operator"},
        },
    )
    return crds.plane.service_account_kubeconfig(crds.namespace, "creditmodel-operator")


def _create_or_replace(create: Any, replace: Any, document: dict[str, Any]) -> None:
    try:
        create(document)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        replace(document["metadata"]["name"], document)


@pytest.fixture
def operator(crds: Kube, operator_kubeconfig: Path, tmp_path: Path) -> Iterator[Operator]:
    """The operator running for real in the test namespace, as the RBAC-bound ServiceAccount."""
    from tests.operator.running import running_operator

    with running_operator(crds, operator_kubeconfig, tmp_path) as running:
        yield running
