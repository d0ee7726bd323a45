"""tests/support/rendered.py: a rendered container becomes a local process that keeps its args
and environment (Secrets and ConfigMaps resolved) and changes only the executable and the
listening ports."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.support.cluster import ClusterKube
from tests.support.rendered import VENV_BIN, image_entrypoint, local_process


@pytest.mark.unit
def test_our_images_map_to_their_console_scripts() -> None:
    assert image_entrypoint("ghcr.io/creditmodel/predictor:0.1.0") == ["creditmodel-predictor"]
    assert image_entrypoint("registry.test/creditmodel/training@sha256:ab") == ["creditmodel-train"]


@pytest.mark.integration
def test_args_and_env_are_kept_and_only_ports_change(cluster: ClusterKube) -> None:
    core = client.CoreV1Api(cluster.api)
    ns = cluster.namespace
    core.create_namespaced_secret(
        ns, client.V1Secret(metadata=client.V1ObjectMeta(name="s3"), string_data={"KEY": "k"})
    )
    core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"MODE": "fast"})
    )
    container = {
        "name": "kserve-container",
        "image": "ghcr.io/creditmodel/predictor:0.1.0",
        "args": [
            "--model_name",
            "m",
            "--http_port",
            "8080",
            "--grpc_port=8081",
            "--workers",
            "8080",
        ],
        "ports": [{"name": "http", "containerPort": 8080}, {"name": "grpc", "containerPort": 8081}],
        "envFrom": [
            {"secretRef": {"name": "s3"}},
            {"configMapRef": {"name": "cfg"}, "prefix": "C_"},
        ],
        "env": [
            {"name": "PLAIN", "value": "8080"},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "KEY_AGAIN", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "KEY"}}},
            {"name": "HTTP_PORT", "value": "8080"},
            {"name": "DERIVED", "value": "$(C_MODE)-x"},
        ],
    }
    process = local_process(cluster.api, ns, container, extra_args=["--flag"])
    http, grpc = process.port("http", container), process.port("grpc", container)
    assert {http, grpc}.isdisjoint({8080, 8081})
    assert process.argv == [
        str(VENV_BIN / "creditmodel-predictor"),
        "--model_name", "m", "--http_port", str(http), f"--grpc_port={grpc}",
        "--workers", "8080",  # a value that is not a port setting stays
        "--flag",
    ]  # fmt: skip
    env = process.env
    assert (env["KEY"], env["C_MODE"], env["NS"], env["KEY_AGAIN"]) == ("k", "fast", ns, "k")
    assert (env["PLAIN"], env["HTTP_PORT"], env["DERIVED"]) == ("8080", str(http), "fast-x")
