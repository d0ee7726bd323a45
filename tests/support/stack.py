"""The third-party inputs of the `cluster` stack, all from the Go module cache (nothing committed):
./bin/stack.env (written by hack/tools.sh) names the directories of KServe's CRDs, config and webhook
configurations, the Gateway API and Prometheus Operator CRDs and KWOK's stage files.

Creating ~4 MB of CRDs takes the API server 10-30 s on two busy cores, most of the start budget, so
the etcd data directory holding them is made once per tool versions and copied for each start.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.support.kube import apply_crds, control_plane
from tests.support.process import BIN, tool, unavailable

STACK_ENV = BIN / "stack.env"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "creditmodel"
SEED_FORMAT = "1"  # bump when what the seeded etcd holds changes
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# What hack/kind-up.sh installs KServe with: Standard (raw Deployment) mode, Gateway API ingress.
KSERVE_DEFAULTS: dict[str, dict[str, Any]] = {
    "deploy": {"defaultDeploymentMode": "Standard"},
    "ingress": {
        "enableGatewayApi": True,
        "kserveIngressGateway": "gateway-system/creditmodel-gateway",
        "disableIstioVirtualHost": True,  # no Istio: else an error event on every reconcile
    },
}


def stack_env() -> dict[str, str]:
    """./bin/stack.env (written by hack/tools.sh): where the third-party CRDs and config are."""
    if not STACK_ENV.exists():
        unavailable(f"{STACK_ENV} not found; run `make tools`")
    env = dict(line.split("=", 1) for line in STACK_ENV.read_text().splitlines() if "=" in line)
    missing = [v for k, v in env.items() if k.endswith("_DIR") and not Path(v).is_dir()]
    if missing:
        unavailable(f"{missing} missing from the Go module cache; run `make tools`")
    return env


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml when available (the CRDs are megabytes); a bare `=` is a string, as in YAML 1.2
    (PyYAML's YAML 1.1 `value` tag fails on the Prometheus Operator CRDs' `- =` enum items)."""


_Loader.add_constructor("tag:yaml.org,2002:value", _Loader.construct_yaml_str)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_Loader) if doc]


def _documents(paths: list[Path]) -> list[dict[str, Any]]:
    return [doc for path in sorted(paths) for doc in load_yaml_documents(path)]


def third_party_crds(env: dict[str, str]) -> list[dict[str, Any]]:
    """The KServe CRDs the manager serves (not llmisvc/localmodel, which need other controllers),
    the Gateway API standard channel and the Prometheus Operator CRDs. Parsing ~10 MB of YAML
    takes seconds, so the result is cached as JSON next to the tools, keyed by stack.env."""
    key = hashlib.sha256(STACK_ENV.read_bytes()).hexdigest()[:16]
    cached = CACHE / "stack-crds" / f"{key}.json"
    with contextlib.suppress(OSError, ValueError):
        return list(json.loads(cached.read_text()))
    documents = _third_party_crds(env)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(documents))
    partial.replace(cached)
    return documents


def _third_party_crds(env: dict[str, str]) -> list[dict[str, Any]]:
    kserve = Path(env["KSERVE_CRD_DIR"])
    paths = [
        *kserve.glob("serving.kserve.io_*.yaml"),
        *kserve.glob("clusterstoragecontainer/*_*.yaml"),
    ]
    paths += Path(env["GATEWAY_API_CRD_DIR"]).glob("*.yaml")
    paths += Path(env["PROMETHEUS_OPERATOR_CRD_DIR"]).glob("*.yaml")
    # The Gateway API directory also holds a ValidatingAdmissionPolicy guarding CRD upgrades.
    return [doc for doc in _documents(paths) if doc.get("kind") == "CustomResourceDefinition"]


def kserve_config(
    env: dict[str, str], namespace: str, overrides: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """KServe's own inferenceservice-config, with `overrides` merged into its JSON sections."""
    (document,) = load_yaml_documents(Path(env["KSERVE_CONFIGMAP_DIR"]) / "inferenceservice.yaml")
    data = {k: v for k, v in document["data"].items() if not k.startswith("_")}
    for section, values in overrides.items():
        data[section] = json.dumps({**json.loads(data.get(section) or "{}"), **values})
    return {
        **document,
        "metadata": {"name": document["metadata"]["name"], "namespace": namespace},
        "data": data,
    }


def kserve_webhooks(env: dict[str, str], port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    """KServe's webhook configurations, pointed at https://127.0.0.1:<port> instead of a Service."""
    documents = load_yaml_documents(Path(env["KSERVE_WEBHOOK_DIR"]) / "manifests.yaml")
    ca_bundle = base64.b64encode(ca_pem).decode()
    for document in documents:
        document["metadata"] = {"name": document["metadata"]["name"]}
        for hook in document["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
    return documents


def kwok_node(name: str) -> dict[str, Any]:
    resources = {"cpu": "64", "memory": "256Gi", "pods": "250"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1],
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"allocatable": resources, "capacity": resources},
    }


def seeded_etcd(env: dict[str, str], scratch: Path) -> Path:
    """An etcd data directory in which kube-apiserver has stored the third-party CRDs; made on
    first use (per stack.env and apiserver/etcd build), then only copied."""
    versions = [STACK_ENV.read_text(), SEED_FORMAT]
    versions += [str(tool(name).resolve()) for name in ("etcd", "kube-apiserver")]
    key = hashlib.sha256("\n".join(versions).encode()).hexdigest()[:16]
    seed = CACHE / "stack-etcd" / key
    if (seed / "member").is_dir():
        return seed
    documents = third_party_crds(env)
    workdir = Path(tempfile.mkdtemp(prefix="seed-", dir=scratch))
    with control_plane(workdir) as plane:
        api = plane.api_client()
        try:
            apply_crds(api, documents, timeout=120)
        finally:
            api.close()
    seed.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # a concurrent run made it first: use theirs
        (workdir / "etcd").rename(seed)
    shutil.rmtree(workdir, ignore_errors=True)
    return seed


def missing_crds(api: client.ApiClient, env: dict[str, str]) -> list[dict[str, Any]]:
    """The third-party CRDs that the API server does not have (none, from a seeded etcd)."""
    raw = client.ApiextensionsV1Api(api).list_custom_resource_definition(_preload_content=False)
    present = {crd["metadata"]["name"] for crd in json.loads(raw.data)["items"]}
    return [doc for doc in third_party_crds(env) if doc["metadata"]["name"] not in present]
