"""The `kube` fixture is a real, RBAC-enforcing API server: prove it with a custom resource."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.support.kube import Kube

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "fixture.creditmodel.dev", "v1", "widgets"

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, size: int) -> dict[str, object]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    }


def test_custom_resource_create_read_watch(kube: Kube) -> None:
    kube.apply_crds([WIDGET_CRD])
    objects = client.CustomObjectsApi(kube.api)
    events: list[tuple[str, int]] = []
    ready = threading.Event()

    def watch_widgets() -> None:
        stream = watch.Watch()
        ready.set()
        for event in stream.stream(
            objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            kube.namespace,
            PLURAL,
            timeout_seconds=10,
        ):
            events.append((event["type"], event["object"]["spec"]["size"]))
            if len(events) == 2:
                stream.stop()

    watcher = threading.Thread(target=watch_widgets)
    watcher.start()
    ready.wait()
    objects.create_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, widget("a", 1))
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, kube.namespace, PLURAL, "a", {"spec": {"size": 2}}
    )
    watcher.join(timeout=15)

    stored = objects.get_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, "a")
    assert stored["spec"] == {"size": 2}
    assert events == [("ADDED", 1), ("MODIFIED", 2)]


def test_schema_validation_rejects_invalid_resource(kube: Kube) -> None:
    kube.apply_crds([WIDGET_CRD])
    objects = client.CustomObjectsApi(kube.api)
    with pytest.raises(ApiException) as raised:
        objects.create_namespaced_custom_object(
            GROUP, VERSION, kube.namespace, PLURAL, widget("bad", 0)
        )
    assert raised.value.status == 422
    assert "spec.size" in raised.value.body


def test_rbac_is_enforced_for_service_accounts(kube: Kube) -> None:
    core = client.CoreV1Api(kube.api)
    core.create_namespaced_service_account(
        kube.namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    sa_api = kube.plane.api_client(kube.plane.service_account_kubeconfig(kube.namespace, "reader"))
    sa_core = client.CoreV1Api(sa_api)

    with pytest.raises(ApiException) as denied:
        sa_core.list_namespaced_config_map(kube.namespace)
    assert denied.value.status == 403

    rbac = client.RbacAuthorizationV1Api(kube.api)
    rbac.create_namespaced_role(
        kube.namespace,
        {
            "metadata": {"name": "configmap-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        kube.namespace,
        {
            "metadata": {"name": "reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "configmap-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": kube.namespace}],
        },
    )
    # The RBAC authorizer learns of new bindings through its informers: allow it a moment.
    deadline = time.monotonic() + 15
    while True:
        try:
            assert sa_core.list_namespaced_config_map(kube.namespace).items is not None
            break
        except ApiException as error:
            if error.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with pytest.raises(ApiException) as still_denied:
        sa_core.list_namespaced_secret(kube.namespace)
    assert still_denied.value.status == 403


def test_each_test_gets_its_own_namespace(kube: Kube) -> None:
    namespace = client.CoreV1Api(kube.api).read_namespace(kube.namespace)
    assert namespace.status.phase == "Active"
    assert kube.namespace.startswith("test-")


def test_apply_crds_refuses_other_kinds(kube: Kube) -> None:
    with pytest.raises(ValueError, match="'Kustomization' 'x' is not a CustomResourceDefinition"):
        kube.apply_crds([{"kind": "Kustomization", "metadata": {"name": "x"}}])
