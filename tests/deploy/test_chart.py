"""The Helm chart, rendered by the real helm binary: lint, defaults, non-default values, schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

from tests.deploy.chart import (
    ALL_MONITORING,
    CHART,
    KUBE_SCHEMA_VERSION,
    KUBE_VERSION,
    LINT_MONITORING,
    MANIFESTS,
    Object,
    by_key,
    helm,
    one,
    render,
)
from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.integration

NONDEFAULT = Path(__file__).parent / "values-nondefault.yaml"
KIND_VALUES = REPO_ROOT / "hack" / "kind-values.yaml"
# Custom resources: the install tests create them against their CRDs in the real API server.
CUSTOM_KINDS = {
    "PodMonitor",
    "ServiceMonitor",
    "PrometheusRule",
    "ClusterKopfPeering",
    "KopfPeering",
}
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--set", ",".join(ALL_MONITORING)),
        ("--values", str(NONDEFAULT)),
        ("--values", str(KIND_VALUES)),
    ],
    ids=["defaults", "monitoring", "non-default", "kind"],
)
def test_helm_lint_strict(args: tuple[str, ...]) -> None:
    lint = ("lint", "--strict", CHART, "--kube-version", KUBE_VERSION, "--set", LINT_MONITORING)
    run = helm(*lint, *args, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 chart(s) failed" in run.stdout


def test_defaults_render_the_operator_and_nothing_optional() -> None:
    objects = render()
    assert sorted(obj["kind"] for obj in objects) == [
        "ClusterKopfPeering",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "ServiceAccount",
    ]
    for obj in objects:
        labels = obj["metadata"]["labels"]
        missing = [label for label in RECOMMENDED_LABELS if label not in labels]
        assert not missing, f"{obj['kind']} lacks {missing}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert obj["metadata"]["name"].startswith("creditmodel-operator")


def test_operator_deployment_is_locked_down() -> None:
    deployment = one(render(), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "creditmodel-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/creditmodel/operator:0.1.0"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"].keys() == {"cpu", "memory"}
    probe = container["livenessProbe"]["httpGet"]
    port = next(p for p in container["ports"] if p["name"] == probe["port"])
    assert probe["path"] == "/healthz"
    assert f"--liveness=http://0.0.0.0:{port['containerPort']}/healthz" in container["args"]
    assert "--all-namespaces" in container["args"]
    # kopf peering on top: one replica leads (--priority=auto), any others stand by.
    assert "--peering=creditmodel-operator" in container["args"]
    assert {"--priority=auto", "--peering-lifetime=60"} <= set(container["args"])
    assert one(render(), "ClusterKopfPeering")["metadata"]["name"] == "creditmodel-operator"
    # The read-only root filesystem leaves /tmp writable through an emptyDir.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert "S3_ENDPOINT_URL" not in env
    assert "envFrom" not in container
    assert env["CREDITMODEL_OPERATOR_PREDICTOR_IMAGE"] == "ghcr.io/creditmodel/predictor:0.1.0"
    assert env["CREDITMODEL_OPERATOR_TRAINING_IMAGE"] == "ghcr.io/creditmodel/training:0.1.0"
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()
    assert "app.kubernetes.io/version" not in selector, "a selector must survive upgrades"


def test_non_default_values_reach_every_object() -> None:
    objects = render(release="risk", namespace="risk-ops", values_files=[NONDEFAULT])
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "KopfPeering",
            "KopfPeering",
            "NetworkPolicy",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "PodMonitor",
            "PrometheusRule",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    )
    for obj in objects:
        assert obj["metadata"]["name"].startswith("scoring-operator")
        assert obj["metadata"]["labels"]["team"] == "risk-platform"
    namespaces = {obj["kind"]: obj["metadata"].get("namespace") for obj in objects}
    assert namespaces["Deployment"] == "risk-ops"
    assert namespaces["PodMonitor"] == "monitoring"
    assert namespaces["ConfigMap"] == "grafana"
    assert namespaces["ServiceMonitor"] == namespaces["PrometheusRule"] == "risk-ops"
    peerings = [obj for obj in objects if obj["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == [
        "risk-models",
        "risk-models-staging",
    ]

    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == (
        "registry.example.com/creditmodel/operator@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    assert container["imagePullPolicy"] == "Always"
    assert container["args"][:2] == ["--namespace=risk-models", "--namespace=risk-models-staging"]
    assert "--all-namespaces" not in container["args"]
    assert "--liveness=http://0.0.0.0:9443/healthz" in container["args"]
    assert {"--verbose", "--priority=10"} <= set(container["args"])
    assert container["ports"][0]["containerPort"] == 9443
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert (
        env["CREDITMODEL_OPERATOR_PREDICTOR_IMAGE"]
        == "registry.example.com/creditmodel/predictor:1.2.3"
    )
    assert env["CREDITMODEL_OPERATOR_TRAINING_IMAGE"].endswith(
        "training@sha256:" + "fedcba9876543210" * 4
    )
    assert env["CREDITMODEL_OPERATOR_PROMETHEUS_URL"] == "https://prometheus.monitoring.svc:9091"
    assert env["HTTPS_PROXY"] == "http://proxy.internal:3128"
    assert env["S3_ENDPOINT_URL"] == "http://minio.storage.svc:9000"
    assert env["AWS_REGION"] == "eu-west-1"
    assert container["envFrom"] == [{"secretRef": {"name": "operator-s3"}}]
    assert pod["serviceAccountName"] == "scoring-operator-sa"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"]
    assert (
        deployment["spec"]["template"]["metadata"]["labels"]["example.com/tier"] == "control-plane"
    )
    assert container["resources"]["limits"]["memory"] == "1Gi"

    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "scoring-operator-sa", "namespace": "risk-ops"}
    ]
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 9443, "protocol": "TCP"}]
    assert "namespaceSelector" in policy["spec"]["ingress"][0]["from"][0]

    rules = one(objects, "PrometheusRule")
    alerts = [
        rule for group in rules["spec"]["groups"] for rule in group["rules"] if "alert" in rule
    ]
    assert all(rule["labels"]["team"] == "risk-platform" for rule in alerts)
    drift = next(rule for rule in alerts if rule["alert"] == "CreditModelScoreDrift")
    assert "> 0.2\n" in drift["expr"]
    assert ">= 1000" in drift["expr"]
    assert drift["for"] == "15m"
    dashboard = one(objects, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Credit risk"}


@pytest.mark.parametrize(
    ("values", "values_files"),
    [((), ()), (ALL_MONITORING, ()), ((), (NONDEFAULT,)), ((), (KIND_VALUES,))],
    ids=["defaults", "monitoring", "non-default", "kind"],
)
def test_every_builtin_object_is_valid_for_kubernetes(
    values: tuple[str, ...], values_files: tuple[Path, ...]
) -> None:
    """Offline, strict (unknown fields rejected), against the fixture's Kubernetes version."""
    objects = render(values=values, values_files=values_files, include_crds=True)
    checked = 0
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {error.message}")
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ("operator.logLevel=debug", "additional properties 'logLevel' not allowed"),
        ("serviceAccount.create=yes", "create"),
        ("image.digest=sha256:nothex", "digest"),
        ("monitoring.prometheusRule.errorRatioThreshold=2", "errorRatioThreshold"),
        ("monitoring.prometheusRule.errorRatioThreshold=1.5", "errorRatioThreshold"),
        ("monitoring.prometheusRule.errorRatioThreshold=0.02 or vector(1)", "errorRatioThreshold"),
        ("monitoring.prometheusRule.latencyP99Seconds=0", "latencyP99Seconds"),
        ("monitoring.prometheusRule.psiWatchThreshold=0.0", "psiWatchThreshold"),
        ("image.tag=-1", "tag"),
        ("operator.watchNamespaces={Bad_NS}", "watchNamespaces"),
        ("serviceAccount.name=Not A Name", "name"),
        ("operator.prometheusUrl=prometheus:9090", "prometheusUrl"),
        ("monitoring.prometheusRule.for=ten minutes", "for"),
        ("replicaCount=0", "replicaCount"),
        ("operator.peeringLifetimeSeconds=2", "peeringLifetimeSeconds"),
        ("monitoring.ifCRDsMissing=ignore", "ifCRDsMissing"),
        # names, labels and quantities Kubernetes refuses (found by an outside tester)
        ("nameOverride=Credit_Model", "nameOverride"),
        ("namespaceOverride=Team_A", "namespaceOverride"),
        ("monitoring.podMonitor.namespace=Monitoring", "namespace"),
        ("operator.storage.existingSecret=S3 Creds", "existingSecret"),
        ("priorityClassName=High Priority", "priorityClassName"),
        ("imagePullSecrets[0].name=Bad_Name", "name"),
        ("image.tag=0.1.0+build.7", "tag"),
        ("commonLabels.team=x-", "team"),
        ("podLabels.app\\.kubernetes\\.io/name=mine", "podLabels"),
        ("commonLabels.app\\.kubernetes\\.io/instance=mine", "commonLabels"),
        ("operator.watchNamespaces={team-a,team-a}", "watchNamespaces"),
        ("operator.extraEnv[0].name=AWS_REGION", "extraEnv"),
        ("resources.requests.cpu=half", "cpu"),
        ("monitoring.prometheusRule.for=30s10m", "for"),
        ("operator.prometheusUrl=http://", "prometheusUrl"),  # the operator crash-looped on it
        ("operator.prometheusUrl=http://prom:99999", "prometheusUrl"),
        ("operator.prometheusUrl=http://user:pw@prom:9090", "prometheusUrl"),
        ("operator.prometheusUrl=http://169.254.169.254/", "prometheusUrl"),
        ("predictorNetworkPolicy.from[0].ipBlock.except[0]=10.0.0.0/9", "cidr"),
    ],
)
def test_values_schema_refuses_bad_values(override: str, complaint: str) -> None:
    run = helm(
        "template", "x", CHART, "--kube-version", KUBE_VERSION, "--set", override, check=False
    )
    assert run.returncode != 0
    assert complaint in run.stderr


def test_the_prometheus_url_rule_is_the_operators() -> None:
    """The chart's pattern was `^https?://`: a URL the operator's settings refuse installed an
    operator that crash-looped."""
    from creditmodel.operator import validation

    schema = json.loads((CHART / "values.schema.json").read_text())
    url = schema["properties"]["operator"]["properties"]["prometheusUrl"]
    assert url["pattern"] == f"^$|^({validation.HTTP_URL})$"
    assert url["not"] == {"pattern": f"^({validation.METADATA_URL})"}


def test_decimals_and_numeric_tags_given_with_set_are_taken() -> None:
    """Helm's --set passes 0.02 as a string and 7 as an integer: the schema wanted a number and
    a string, so `--set monitoring.prometheusRule.errorRatioThreshold=0.02` and `make deploy
    IMAGE_TAG=7` were refused."""
    rule = "monitoring.prometheusRule"
    objects = render(
        values=[
            f"{rule}.enabled=true",
            f"{rule}.errorRatioThreshold=0.02",
            f"{rule}.latencyP99Seconds=0.4",
            f"{rule}.psiThreshold=.3",
            f"{rule}.psiWatchThreshold=0.15",
            "image.tag=7",
        ]
    )
    (rules,) = (o for o in objects if o["kind"] == "PrometheusRule")
    exprs = [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"] if "alert" in r]
    for threshold in ("> 0.02", "> 0.4", "> .3", "> 0.15"):
        assert any(threshold in expr for expr in exprs), (threshold, exprs)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":7")


@pytest.mark.parametrize(
    ("release", "values"),
    [
        ("123", ["image.tag=0", "fullnameOverride=12345"]),
        ("on", ["namespaceOverride=2024", "operator.watchNamespaces={2024}"]),
        ("1e3", ["operator.storage.existingSecret=12345", "image.tag=0.1.0_build.7"]),
        ("x", ["image.tag=0"]),
    ],
)
def test_names_yaml_would_read_as_numbers_or_booleans_render_valid_objects(
    release: str, values: list[str]
) -> None:
    """Unquoted, release `123`, namespace `2024` or Secret `12345` rendered as numbers (`on` as
    a boolean), which Kubernetes refuses in a name, namespace or label. A tag of 0 fell back to
    appVersion, and a tag became the version label unchecked."""
    objects = render(release=release, string_values=values)
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            assert isinstance(obj["metadata"].get("namespace", ""), str)
            continue
        kubernetes_validate.validate(obj, KUBE_SCHEMA_VERSION, strict=True)
    tag = next(
        v.split("=", 1)[1] for v in [*values, "image.tag=0.1.0"] if v.startswith("image.tag=")
    )
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{tag}")
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == tag


def test_every_value_is_commented() -> None:
    """Every value carries a `# --` comment, on itself or on the block that holds it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    ancestors: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip(" -"))
        while ancestors and ancestors[-1][0] >= indent:
            ancestors.pop()
        above = lines[index - 1].strip() if index else ""
        commented = above.startswith("# --") or (
            above.startswith("#")
            and any(
                lines[i].strip().startswith("# --")
                for i in range(index - 1, -1, -1)
                if lines[i].strip().startswith("#")
                and all(lines[j].strip().startswith("#") for j in range(i, index))
            )
        )
        documented = commented or any(doc for _, doc in ancestors)
        if not stripped.endswith(":") and not documented:
            undocumented.append(f"line {index + 1}: {stripped}")
        ancestors.append((indent, documented))
    assert not undocumented, f"values without a `# --` comment: {undocumented}"


def test_schema_covers_every_value() -> None:
    """values.schema.json forbids unknown keys, so every default key must be in it."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())

    def walk(node: object, schema_node: dict[str, object], path: str) -> None:
        if not isinstance(node, dict) or "properties" not in schema_node:
            return
        properties = schema_node["properties"]
        assert isinstance(properties, dict)
        for name, value in node.items():
            assert name in properties, f"{path}{name} is not in values.schema.json"
            walk(value, properties[name], f"{path}{name}.")

    walk(values, schema, "")


def test_rbac_is_the_operators_own() -> None:
    """The chart grants exactly the rules of manifests/rbac, to its own ServiceAccount."""
    source = by_key(
        [
            doc
            for doc in yaml.safe_load_all((MANIFESTS / "rbac" / "operator.yaml").read_text())
            if doc
        ]
    )
    rendered = render()
    role = one(rendered, "ClusterRole")
    source_roles = [obj for k, obj in source.items() if k[0] == "ClusterRole"]
    assert [role["rules"]] == [obj["rules"] for obj in source_roles]
    binding = one(rendered, "ClusterRoleBinding")
    service_account = one(rendered, "ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": service_account["metadata"]["name"],
            "namespace": service_account["metadata"]["namespace"],
        }
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_rbac_for_watched_namespaces_moves_namespaced_rules_into_roles() -> None:
    """With watchNamespaces the same grants are split: cluster-scoped resources in the
    ClusterRole, everything else in a Role per watched namespace, nothing lost or added."""
    source = next(
        doc
        for doc in yaml.safe_load_all((MANIFESTS / "rbac" / "operator.yaml").read_text())
        if doc and doc["kind"] == "ClusterRole"
    )
    objects = render(json_values=['operator.watchNamespaces=["risk-a","risk-b"]'])
    cluster_role = one(objects, "ClusterRole")
    roles = [obj for obj in objects if obj["kind"] == "Role"]
    bindings = [obj for obj in objects if obj["kind"] == "RoleBinding"]
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["risk-a", "risk-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["risk-a", "risk-b"]
    cluster_grants = _grants(cluster_role["rules"])
    assert {resource for _, resource, _ in cluster_grants} == {
        "customresourcedefinitions",
        "namespaces",
        "clusterkopfpeerings",
    }
    for role in roles:
        assert _grants(role["rules"]) | cluster_grants == _grants(source["rules"])
        assert not _grants(role["rules"]) & cluster_grants
    service_account = one(objects, "ServiceAccount")["metadata"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[0]["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": service_account["name"],
                "namespace": service_account["namespace"],
            }
        ]


def test_rbac_off_renders_no_rbac() -> None:
    kinds = {obj["kind"] for obj in render(values=["rbac.create=false"])}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def test_existing_service_account_must_be_named() -> None:
    run = helm(
        "template",
        "x",
        CHART,
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "serviceAccount.create=false",
        check=False,
    )
    assert run.returncode != 0
    assert "serviceAccount.name is required" in run.stderr
    objects = render(values=["serviceAccount.create=false", "serviceAccount.name=preexisting"])
    assert "ServiceAccount" not in {obj["kind"] for obj in objects}
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "preexisting"


def test_crds_are_installed_from_crds_dir() -> None:
    crds = [obj for obj in render(include_crds=True) if obj["kind"] == "CustomResourceDefinition"]
    names = {crd["metadata"]["name"] for crd in crds}
    assert "creditmodels.scoring.creditmodel.io" in names
    assert not any(obj["kind"] == "CustomResourceDefinition" for obj in render())


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["type"] == "application"
    assert chart["kubeVersion"]
    objects: list[Object] = render()
    versions = {obj["metadata"]["labels"]["app.kubernetes.io/version"] for obj in objects}
    assert versions == {chart["appVersion"]}


def test_an_empty_prometheus_url_installs_an_operator_without_prometheus() -> None:
    """The schema refused "" and the operator refused an empty variable: a chart install could
    not say "no Prometheus" (canaries then wait for the promote action)."""
    deployment = one(render(string_values=["operator.prometheusUrl="]), "Deployment")
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "CREDITMODEL_OPERATOR_PROMETHEUS_URL" not in env


def test_the_drift_alerts_ask_for_the_rows_the_predictor_and_the_drift_job_do() -> None:
    """One number, three places: the predictor's --drift_min_rows, the drift job's --min-rows
    and the chart's alerts (psiMinRows) all default to core.drift.MIN_ROWS."""
    from creditmodel.core import drift

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["monitoring"]["prometheusRule"]["psiMinRows"] == drift.MIN_ROWS
