"""The operator as the chart deploys it: `helm install` into the real stack (the `cluster` fixture:
KServe with its webhooks, the real KServe and Gateway API CRDs, the controller-manager, KWOK), then
creditmodel-operator started with exactly the rendered Deployment's command line and environment
(the Secret resolved as the kubelet would) and the chart's ServiceAccount token. It reconciles the
sample CreditModel through a stable version (Ready through KServe) and into a canary without a
single 403."""

from __future__ import annotations

import base64
import copy
import os
import shutil
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from creditmodel.core import bundle
from creditmodel.operator import builders
from tests.core import bundles as fake
from tests.deploy.chart import CHART, MANIFESTS, helm
from tests.operator.running import Api, eventually
from tests.support.cluster import ClusterKube
from tests.support.kube import Kube, load_yaml_documents
from tests.support.minio import S3Bucket
from tests.support.process import ManagedProcess, free_port

pytestmark = pytest.mark.integration


def publish(uri: str, version: str) -> str:
    files = fake.files()
    bundle.publish_bundle(uri, files, fake.manifest(files, version))
    return uri


def container_environment(kube: Kube, container: dict[str, Any]) -> dict[str, str]:
    """The environment the kubelet would give the container: values, the namespace field, and
    every key of the envFrom Secrets."""
    env: dict[str, str] = {}
    core = client.CoreV1Api(kube.api)
    for source in container.get("envFrom", []):
        secret = core.read_namespaced_secret(source["secretRef"]["name"], kube.namespace)
        env.update({k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = kube.namespace
        else:
            raise AssertionError(f"unexpected env source in the chart: {item}")
    return env


def test_operator_with_chart_credentials_reconciles_without_403(
    cluster: ClusterKube, s3: S3Bucket, tmp_path: Path
) -> None:
    kube: Kube = cluster
    s3_env = s3.server.env()
    client.CoreV1Api(kube.api).create_namespaced_secret(
        kube.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="operator-s3"),
            string_data={
                "AWS_ACCESS_KEY_ID": s3_env["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": s3_env["AWS_SECRET_ACCESS_KEY"],
            },
        ),
    )
    release = f"op-{uuid.uuid4().hex[:6]}"
    health_port = free_port()
    values = {
        "operator": {
            "watchNamespaces": [kube.namespace],
            "healthPort": health_port,
            "storage": {"endpoint": s3_env["S3_ENDPOINT_URL"], "existingSecret": "operator-s3"},
        },
        "defaults": {
            "predictorImage": {
                "repository": "registry.test/creditmodel/predictor",
                "tag": "9.9.9-chart",
            }
        },
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    install = helm(
        "install",
        release,
        CHART,
        "--namespace",
        kube.namespace,
        "--values",
        values_file,
        "--kubeconfig",
        kube.kubeconfig,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    fullname = f"{release}-creditmodel-operator"
    deployment = client.AppsV1Api(kube.api).read_namespaced_deployment(fullname, kube.namespace)
    manifest = client.ApiClient().sanitize_for_serialization(deployment)
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    # The image's entrypoint is the console script; the arguments are the chart's, untouched.
    entrypoint = shutil.which("creditmodel-operator", path=str(Path(sys.executable).parent))
    assert entrypoint is not None
    kubeconfig = kube.plane.service_account_kubeconfig(kube.namespace, pod["serviceAccountName"])
    environment = container_environment(kube, container)
    assert environment["S3_ENDPOINT_URL"] == s3_env["S3_ENDPOINT_URL"]
    process = ManagedProcess(
        "chart-operator",
        [entrypoint, *container["args"]],
        tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))},
            **environment,
            "KUBECONFIG": str(kubeconfig),
            "CREDITMODEL_OPERATOR_RESYNC_SECONDS": "1",
        },
    )
    probe = container["livenessProbe"]["httpGet"]
    try:
        # The kubelet's liveness probe, as the chart declares it.
        process.wait_ready(
            lambda: urllib.request.urlopen(
                f"http://127.0.0.1:{health_port}{probe['path']}", timeout=1
            ).status
            == 200,
            timeout=60,
            what="live on the chart's liveness probe",
        )
        api = Api(kube)
        sample = copy.deepcopy(load_yaml_documents(MANIFESTS / "samples" / "creditmodel.yaml")[0])
        v1 = publish(f"{s3.uri}/german-credit/v1", "v1")
        sample["spec"]["model"]["bundleURI"] = v1
        sample["spec"]["rollout"]["intervalSeconds"] = 1
        api.create_model(sample)
        name = sample["metadata"]["name"]

        stable = builders.isvc_name(name, v1)
        eventually(lambda: stable in api.isvcs(), timeout=30, what="the stable InferenceService")
        # The sample names no image: the chart's default reaches the InferenceService.
        (container_spec,) = api.isvcs()[stable]["spec"]["predictor"]["containers"]
        assert container_spec["image"] == "registry.test/creditmodel/predictor:9.9.9-chart"
        api.wait_model_ready(name)  # KServe: the predictor Deployment available (KWOK)
        # A new bundle: canary InferenceService and a weighted HTTPRoute (patch verbs, list, watch).
        v2 = publish(f"{s3.uri}/german-credit/v2", "v2")
        api.patch_model(name, {"spec": {"model": {"bundleURI": v2}}})
        canary = builders.isvc_name(name, v2)
        eventually(lambda: canary in api.isvcs(), timeout=30, what="the canary InferenceService")
        api.wait_isvc_ready(canary)
        eventually(
            lambda: len(api.route(name)["spec"]["rules"][0]["backendRefs"]) == 2,
            timeout=30,
            what="the HTTPRoute splitting traffic",
        )
        # The status is written after the children: wait for it rather than race it.
        status = eventually(
            lambda: api.model(name)["status"].get("canary") and api.model(name)["status"],
            timeout=30,
            what="status.canary",
        )
        assert status["stable"]["version"] == "v1"
        assert status["canary"]["version"] == "v2"
    finally:
        process.stop()
        log = process.log_path.read_text(errors="replace")
        helm("uninstall", release, "--namespace", kube.namespace, "--kubeconfig", kube.kubeconfig)
    print(f"--- operator log ---\n{log[-20000:]}")
    denied = [line for line in log.splitlines() if "forbidden" in line.lower() or " 403" in line]
    assert not denied, "the chart's ServiceAccount was refused:\n" + "\n".join(denied[:10])
