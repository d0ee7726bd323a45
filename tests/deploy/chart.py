"""Render the chart and the kustomize manifests with the real helm and kubectl binaries."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.support.process import REPO_ROOT, tool

CHART = REPO_ROOT / "charts" / "creditmodel-operator"
MANIFESTS = REPO_ROOT / "manifests"
# The Kubernetes version of the kube-apiserver fixture (hack/tools.sh): offline rendering and schema
# validation use the same one.
KUBE_VERSION = "1.34.4"
KUBE_SCHEMA_VERSION = "1.34.0"
ALL_MONITORING = (
    "monitoring.podMonitor.enabled=true",
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.grafanaDashboard.enabled=true",
)
# The Prometheus Operator kinds, as `--api-versions` for offline rendering (the chart renders a
# monitoring object only where the cluster serves its kind).
MONITORING_APIS = tuple(
    f"monitoring.coreos.com/v1/{kind}"
    for kind in ("PodMonitor", "ServiceMonitor", "PrometheusRule")
)
# `helm lint` takes no --api-versions: it renders the monitoring objects unchecked.
LINT_MONITORING = "monitoring.ifCRDsMissing=render"
Object = dict[str, Any]


def helm(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("helm")), *map(str, args)], capture_output=True, text=True, check=check
    )


def render(
    release: str = "creditmodel-operator",
    namespace: str = "creditmodel-system",
    values: Sequence[str] = (),
    values_files: Sequence[Path] = (),
    include_crds: bool = False,
    json_values: Sequence[str] = (),
    api_versions: Sequence[str] = MONITORING_APIS,
    string_values: Sequence[str] = (),
) -> list[Object]:
    """`values` go through --set (numbers there are integers or strings, as in Helm);
    `json_values` through --set-json (floats, lists, objects), `string_values` through
    --set-string. `api_versions`: what the cluster
    serves beyond the built-in kinds (by default the Prometheus Operator's, as where the monitoring
    objects are installed)."""
    args: list[str | Path] = [
        "template",
        release,
        CHART,
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ]
    for api in api_versions:
        args += ["--api-versions", api]
    for value in values:
        args += ["--set", value]
    for value in json_values:
        args += ["--set-json", value]
    for value in string_values:
        args += ["--set-string", value]
    for path in values_files:
        args += ["--values", path]
    if include_crds:
        args.append("--include-crds")
    run = helm(*args, check=False)
    assert run.returncode == 0, run.stderr
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def kustomize(directory: Path) -> list[Object]:
    run = subprocess.run(
        [str(tool("kubectl")), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def key(obj: Object) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def by_key(objects: Sequence[Object]) -> dict[tuple[str, str, str], Object]:
    result = {key(obj): obj for obj in objects}
    assert len(result) == len(objects), "two rendered objects share kind, namespace and name"
    return result


def one(objects: Sequence[Object], kind: str) -> Object:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def without_labels(obj: Object) -> Object:
    """The object minus metadata labels and annotations (the install paths label differently)."""
    result = copy.deepcopy(obj)
    result["metadata"].pop("labels", None)
    result["metadata"].pop("annotations", None)
    return result


def manifests_module() -> ModuleType:
    """hack/manifests.py, the `make manifests` generator, imported from its file."""
    path = REPO_ROOT / "hack" / "manifests.py"
    spec = importlib.util.spec_from_file_location("creditmodel_hack_manifests", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def crd_documents() -> list[Object]:
    return [
        doc
        for path in sorted((MANIFESTS / "crd").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
