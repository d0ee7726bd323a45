"""Operator test fixtures: our CRDs plus minimal KServe/Gateway API CRDs, and a ServiceAccount
bound to exactly the ClusterRole in manifests/rbac, whose kubeconfig the operator runs with."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.operator.running import bind_operator_service_account, crd_documents
from tests.predictor.conftest import champion  # noqa: F401 (trained bundle, session-scoped)
from tests.support.kube import Kube


@pytest.fixture
def crds(kube: Kube) -> Kube:
    kube.apply_crds(crd_documents())
    return kube


@pytest.fixture
def operator_kubeconfig(crds: Kube) -> Path:
    """Credentials of a ServiceAccount in the test namespace bound to exactly our ClusterRole."""
    return bind_operator_service_account(crds)
