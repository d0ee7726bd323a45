"""`make deploy` / `make undeploy` against the real kube-apiserver fixture (no nodes, so no wait)."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.kube import Kube
from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.integration


def make(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "KUBECONFIG": str(kube.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_make_deploy_installs_the_built_images_and_undeploy_removes_them(kube: Kube) -> None:
    release = f"mk-{uuid.uuid4().hex[:6]}"
    common = (
        f"HELM_RELEASE={release}",
        f"NAMESPACE={kube.namespace}",
        "DEPLOY_WAIT=",
        "IMAGE_REGISTRY=registry.test/creditmodel",
        "IMAGE_TAG=9.9.9",
    )
    deploy = make(kube, "deploy", *common)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert "STATUS: deployed" in deploy.stdout
    name = f"{release}-creditmodel-operator"
    deployment = client.AppsV1Api(kube.api).read_namespaced_deployment(name, kube.namespace)
    (container,) = deployment.spec.template.spec.containers
    assert container.image == "registry.test/creditmodel/operator:9.9.9"
    env = {item.name: item.value for item in container.env}
    assert (
        env["CREDITMODEL_OPERATOR_PREDICTOR_IMAGE"] == "registry.test/creditmodel/predictor:9.9.9"
    )
    assert env["CREDITMODEL_OPERATOR_TRAINING_IMAGE"] == "registry.test/creditmodel/training:9.9.9"
    ext = client.ApiextensionsV1Api(kube.api)
    ext.read_custom_resource_definition("creditmodels.scoring.creditmodel.io")

    again = make(kube, "deploy", *common)  # an upgrade in place
    assert again.returncode == 0, again.stdout + again.stderr
    assert "REVISION: 2" in again.stdout

    undeploy = make(kube, "undeploy", *common)
    assert undeploy.returncode == 0, undeploy.stdout + undeploy.stderr
    with pytest.raises(ApiException) as gone:
        client.AppsV1Api(kube.api).read_namespaced_deployment(name, kube.namespace)
    assert gone.value.status == 404
    ext.read_custom_resource_definition("creditmodels.scoring.creditmodel.io")  # CRDs stay
