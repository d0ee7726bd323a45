"""The kustomize manifests install what the chart installs, and nothing generated has drifted."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.chart import (
    MANIFESTS,
    Object,
    by_key,
    crd_documents,
    kustomize,
    manifests_module,
    render,
    without_labels,
)
from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.integration


def without_helm_labels(obj: Object) -> Object:
    """The chart's and kustomize's objects differ only in who manages them: normalise both the way
    `make manifests` turns the chart's objects into kustomize's."""
    return manifests_module().strip_helm_labels(copy.deepcopy(obj))


def test_generated_files_have_not_drifted() -> None:
    """`make manifests` output is committed: the chart's crds/ and files/rbac/ are byte copies of
    manifests/crd and manifests/rbac, and manifests/operator + manifests/monitoring are the chart's
    rendering. Fails with the list of files to regenerate."""
    problems = manifests_module().drift(REPO_ROOT)
    assert not problems, "run `make manifests`:\n" + "\n".join(problems)


def test_drift_check_notices_a_changed_crd(tmp_path: Any) -> None:
    """The drift check compares content: an edited copy is reported."""
    module = manifests_module()
    for path, content in module.expected_files():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    assert module.drift(tmp_path) == []
    crd_copy = next((tmp_path / "charts/creditmodel-operator/crds").glob("scoring.*.yaml"))
    crd_copy.write_text(crd_copy.read_text().replace("maxReplicas", "maximumReplicas"))
    (tmp_path / "manifests/operator/stale.yaml").write_text("kind: Leftover\n")
    problems = module.drift(tmp_path)
    assert any(p.startswith(str(crd_copy.relative_to(tmp_path))) for p in problems)
    assert "manifests/operator/stale.yaml: stale (no longer generated)" in problems


def test_kustomize_default_installs_what_the_chart_installs() -> None:
    """`kubectl apply -k manifests/default` == `helm install creditmodel-operator -n
    creditmodel-system` with default values (plus the Namespace, which Helm's --create-namespace
    makes). RBAC comes from the operator's manifests/rbac on one side and from the chart's
    re-rendering on the other: same names, rules and subjects; labels may differ."""
    chart = by_key(render(include_crds=True))
    kustomized = by_key(kustomize(MANIFESTS / "default"))
    namespace = kustomized.pop(("Namespace", "", "creditmodel-system"))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert sorted(chart) == sorted(kustomized)
    for key, obj in chart.items():
        other = kustomized[key]
        if key[0] in ("Deployment", "NetworkPolicy"):
            assert without_helm_labels(obj) == without_helm_labels(other), key
        else:
            assert without_labels(obj) == without_labels(other), key


def test_kustomize_monitoring_matches_the_chart() -> None:
    chart = render(
        values=[
            "monitoring.podMonitor.enabled=true",
            "monitoring.prometheusRule.enabled=true",
            "monitoring.grafanaDashboard.enabled=true",
        ]
    )
    monitoring = {k: v for k, v in by_key(chart).items() if k[0] not in _OPERATOR_KINDS}
    kustomized = by_key(kustomize(MANIFESTS / "monitoring"))
    assert sorted(monitoring) == sorted(kustomized)
    assert {k[0] for k in kustomized} == {"PodMonitor", "PrometheusRule", "ConfigMap"}
    for key, obj in monitoring.items():
        assert without_helm_labels(obj) == without_helm_labels(kustomized[key]), key


_OPERATOR_KINDS = {
    "Deployment",
    "NetworkPolicy",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterKopfPeering",
}


def test_kustomize_output_is_stable() -> None:
    """GitOps tools diff the output: two builds are identical, names are fixed, no Helm hooks."""
    first = kustomize(MANIFESTS / "default") + kustomize(MANIFESTS / "monitoring")
    assert first == kustomize(MANIFESTS / "default") + kustomize(MANIFESTS / "monitoring")
    for obj in first:
        metadata = obj["metadata"]
        assert "generateName" not in metadata
        assert not any(a.startswith("helm.sh/") for a in metadata.get("annotations", {}))


def _openapi_to_jsonschema(node: Any) -> Any:
    """A CRD's structural OpenAPI v3 schema as JSON Schema draft 4 (drop x-kubernetes-* keys)."""
    if isinstance(node, dict):
        return {k: _openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-")}
    if isinstance(node, list):
        return [_openapi_to_jsonschema(v) for v in node]
    return node


def _crd_validator(kind: str) -> jsonschema.Draft4Validator:
    crd = next(
        doc
        for doc in crd_documents()
        if doc["kind"] == "CustomResourceDefinition" and doc["spec"]["names"]["kind"] == kind
    )
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema = _openapi_to_jsonschema(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft4Validator(schema)


def test_samples_match_the_crd_schema() -> None:
    """Offline check of our CRs against our CRD: what `kubectl apply -k manifests/samples` sends."""
    validator = _crd_validator("CreditModel")
    samples = kustomize(MANIFESTS / "samples")
    assert {s["metadata"]["name"] for s in samples} == {"german-credit", "german-credit-trained"}
    for sample in samples:
        errors = sorted(validator.iter_errors(sample), key=str)
        assert not errors, f"{sample['metadata']['name']}: {errors[0].message}"


def test_crd_schema_check_catches_a_bad_sample() -> None:
    validator = _crd_validator("CreditModel")
    sample = yaml.safe_load((MANIFESTS / "samples" / "creditmodel.yaml").read_text())
    sample["spec"]["predictor"]["maxReplicas"] = "four"
    sample["spec"]["rollout"]["router"] = "istio"
    messages = {error.message for error in validator.iter_errors(sample)}
    assert "'four' is not of type 'integer'" in messages
    assert any("'istio' is not one of" in message for message in messages)
