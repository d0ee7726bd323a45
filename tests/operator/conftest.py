"""Operator test fixtures on the real stack (the `cluster` fixture: KServe with its webhooks and
the real KServe, Gateway API and Prometheus Operator CRDs, the controller-manager, the scheduler,
KWOK): our CRDs from manifests/crd, and a ServiceAccount bound to exactly the ClusterRole in
manifests/rbac, whose kubeconfig the operator runs with."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.operator.running import (
    GROUP,
    PLURAL,
    VERSION,
    bind_operator_service_account,
    crd_documents,
)
from tests.predictor.conftest import champion  # noqa: F401 (trained bundle, session-scoped)
from tests.support.cluster import ClusterKube
from tests.support.kube import wait_established

DIGEST_ANNOTATION = "tests.creditmodel.io/applied-digest"


def _changed(api: client.ApiClient, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The CRDs the session's API server does not hold as written (each marked with a digest):
    replacing an unchanged CRD for every test makes the API server reinitialise its storage, and
    the operator's first list answers 429 "storage is (re)initializing"."""
    ext = client.ApiextensionsV1Api(api)
    changed = []
    for document in documents:
        digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
        marked = {
            **document["metadata"],
            "annotations": {
                **document["metadata"].get("annotations", {}),
                DIGEST_ANNOTATION: digest,
            },
        }
        try:
            current = ext.read_custom_resource_definition(document["metadata"]["name"])
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        else:
            if (current.metadata.annotations or {}).get(DIGEST_ANNOTATION) == digest:
                continue
        changed.append({**document, "metadata": marked})
    return changed


@pytest.fixture
def crds(cluster: ClusterKube) -> Iterator[ClusterKube]:
    documents = crd_documents()
    cluster.apply_crds(_changed(cluster.api, documents))
    # Established whether applied now or by an earlier test.
    wait_established(cluster.api, [d["metadata"]["name"] for d in documents])
    yield cluster
    _release(cluster)


def _release(cluster: ClusterKube) -> None:
    """The operator has stopped: lift its finalizer from what is left, so that the namespace the
    `cluster` fixture deletes goes away with its children instead of lingering Terminating."""
    custom = client.CustomObjectsApi(cluster.api)
    with contextlib.suppress(client.ApiException):
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL)
        for item in listed["items"]:
            with contextlib.suppress(client.ApiException):
                custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    cluster.namespace,
                    PLURAL,
                    item["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                )


@pytest.fixture
def operator_kubeconfig(crds: ClusterKube) -> Path:
    """Credentials of a ServiceAccount in the test namespace bound to exactly our ClusterRole."""
    return bind_operator_service_account(crds)
