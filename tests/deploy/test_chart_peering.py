"""The chart's high-availability and ownership settings: `replicaCount` > 1 with kopf peering
(one replica leads, the others stand by; the take-over itself is tests/operator/test_standby.py),
monitoring objects only where their CRDs are served, and the peering object adopted by
`helm install`."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.deploy.chart import CHART, KUBE_VERSION, MANIFESTS, helm, one, render
from tests.support.kube import Kube, apply_crds, control_plane, load_yaml_documents
from tests.support.process import tool

pytestmark = pytest.mark.integration


def test_replicas_above_one_run_one_leader_and_standbys() -> None:
    deployment = one(render(values=["replicaCount=3"]), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert {"--peering=creditmodel-operator", "--priority=auto", "--peering-lifetime=60"} <= set(
        container["args"]
    )
    spread = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    term = spread[0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= spec["selector"]["matchLabels"].items()
    # An affinity of the user's replaces the default spread; one replica has none.
    mine = render(json_values=['affinity={"nodeAffinity":{}}', "replicaCount=2"])
    assert one(mine, "Deployment")["spec"]["template"]["spec"]["affinity"] == {"nodeAffinity": {}}
    single = one(render(), "Deployment")["spec"]
    assert "affinity" not in single["template"]["spec"]
    assert single["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(
    ("value", "kind", "crd"),
    [
        ("podMonitor", "PodMonitor", "podmonitors.monitoring.coreos.com"),
        ("serviceMonitor", "ServiceMonitor", "servicemonitors.monitoring.coreos.com"),
        ("prometheusRule", "PrometheusRule", "prometheusrules.monitoring.coreos.com"),
    ],
)
def test_monitoring_without_its_crds_fails_naming_them(value: str, kind: str, crd: str) -> None:
    """Without the Prometheus Operator CRDs the install stops before anything is applied, with a
    message naming the CRDs (not Kubernetes' `no matches for kind "PodMonitor"` halfway through)."""
    enabled = f"monitoring.{value}.enabled=true"
    run = helm(
        "template", "x", CHART, "--kube-version", KUBE_VERSION, "--set", enabled, check=False
    )
    assert run.returncode != 0
    assert f"does not serve monitoring.coreos.com/v1/{kind}" in run.stderr
    assert crd in run.stderr
    assert "monitoring.ifCRDsMissing=skip" in run.stderr
    # skip: left out, the rest renders; served: rendered.
    skipped = render(values=[enabled, "monitoring.ifCRDsMissing=skip"], api_versions=())
    assert kind not in {obj["kind"] for obj in skipped}
    assert "Deployment" in {obj["kind"] for obj in skipped}
    served = render(values=[enabled], api_versions=[f"monitoring.coreos.com/v1/{kind}"])
    assert kind in {obj["kind"] for obj in served}


def test_the_dashboard_needs_no_crd() -> None:
    objects = render(values=["monitoring.grafanaDashboard.enabled=true"], api_versions=())
    assert one(objects, "ConfigMap")["metadata"]["labels"]["grafana_dashboard"] == "1"


# --- against the real kube-apiserver ---------------------------------------------------------------


def kubectl(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("kubectl")), "--kubeconfig", str(kube.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def peering(kube: Kube, name: str) -> dict[str, object] | None:
    try:
        return dict(
            client.CustomObjectsApi(kube.api).get_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", name
            )
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def delete_peering(kube: Kube, name: str) -> None:
    if peering(kube, name) is not None:
        client.CustomObjectsApi(kube.api).delete_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", name
        )


def test_helm_install_adopts_the_peering_of_manifests_rbac(kube: Kube) -> None:
    """The kustomize path (`kubectl apply -k manifests/default`, or manifests/rbac before a
    `make run-operator` with peering) creates the ClusterKopfPeering; `helm install` of the default
    release later adopts it instead of failing with "invalid ownership metadata"."""
    kube.apply_crds(load_yaml_documents(MANIFESTS / "crd" / "kopf.dev_peerings.yaml"))
    namespace = "creditmodel-system"
    created_namespace = False
    core = client.CoreV1Api(kube.api)
    try:
        core.read_namespace(namespace)
    except ApiException:
        core.create_namespace({"metadata": {"name": namespace}})
        created_namespace = True
    delete_peering(kube, "creditmodel-operator")
    applied = kubectl(
        kube, "apply", "--server-side", "-f", str(MANIFESTS / "rbac" / "peering.yaml")
    )
    assert applied.returncode == 0, applied.stderr
    # rbac.create=false: the cluster-scoped RBAC names are shared with other tests of this plane.
    release = ("creditmodel-operator", str(CHART), "--namespace", namespace)
    install = helm(
        *("install", *release),
        "--set",
        "rbac.create=false",
        "--kubeconfig",
        kube.kubeconfig,
        check=False,
    )
    try:
        assert install.returncode == 0, install.stderr
        adopted = peering(kube, "creditmodel-operator")
        assert adopted is not None
        metadata = adopted["metadata"]
        assert isinstance(metadata, dict)
        assert metadata["annotations"]["meta.helm.sh/release-name"] == "creditmodel-operator"
        assert metadata["annotations"]["meta.helm.sh/release-namespace"] == namespace
        manifest = helm(
            "get",
            "manifest",
            "creditmodel-operator",
            "-n",
            namespace,
            "--kubeconfig",
            kube.kubeconfig,
        )
        assert "kind: ClusterKopfPeering" in manifest.stdout
    finally:
        helm(
            "uninstall",
            "creditmodel-operator",
            "-n",
            namespace,
            "--kubeconfig",
            kube.kubeconfig,
            check=False,
        )
        if created_namespace:
            core.delete_namespace(namespace)
    assert peering(kube, "creditmodel-operator") is None, "the chart owns it: uninstall deletes it"


def test_another_release_adopts_after_the_documented_commands(kube: Kube) -> None:
    """For a release other than the default, docs/upgrade.md's `kubectl label` + `kubectl annotate`
    make the existing peering object adoptable; without them Helm refuses."""
    kube.apply_crds(load_yaml_documents(MANIFESTS / "crd" / "kopf.dev_peerings.yaml"))
    release = f"adopt-{uuid.uuid4().hex[:6]}"
    name = f"{release}-creditmodel-operator"
    document = yaml.safe_load((MANIFESTS / "rbac" / "peering.yaml").read_text())
    document["metadata"] = {"name": name}  # as a hand-made or older peering object: no metadata
    client.CustomObjectsApi(kube.api).create_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings", document
    )
    args = ("install", release, CHART, "-n", kube.namespace, "--kubeconfig", kube.kubeconfig)
    try:
        refused = helm(*args, check=False)
        assert refused.returncode != 0
        assert "invalid ownership metadata" in refused.stderr
        for command in (
            ("label", f"clusterkopfpeering/{name}", "app.kubernetes.io/managed-by=Helm"),
            (
                "annotate",
                f"clusterkopfpeering/{name}",
                f"meta.helm.sh/release-name={release}",
                f"meta.helm.sh/release-namespace={kube.namespace}",
            ),
        ):
            run = kubectl(kube, *command)
            assert run.returncode == 0, run.stderr
        adopted = helm(*args, check=False)
        assert adopted.returncode == 0, adopted.stderr
    finally:
        helm(
            "uninstall", release, "-n", kube.namespace, "--kubeconfig", kube.kubeconfig, check=False
        )
        delete_peering(kube, name)


def test_install_notes_name_the_skipped_monitoring_objects(tmp_path: Path) -> None:
    """`monitoring.ifCRDsMissing=skip` on a cluster without the Prometheus Operator CRDs (an API
    server of its own: the session's holds them once other tests installed them): the install goes
    on without the monitors, and its notes say which were left out."""
    with control_plane(tmp_path) as plane:
        api = plane.api_client()
        apply_crds(api, load_yaml_documents(MANIFESTS / "crd" / "kopf.dev_peerings.yaml"))
        api.close()
        run = helm(
            "install",
            "notes",
            CHART,
            "--dry-run=client",
            "--namespace",
            "default",
            "--kubeconfig",
            plane.kubeconfig,
            "--set",
            "monitoring.podMonitor.enabled=true,monitoring.prometheusRule.enabled=true",
            "--set",
            "monitoring.grafanaDashboard.enabled=true,monitoring.ifCRDsMissing=skip",
            check=False,
        )
    assert run.returncode == 0, run.stderr
    assert "kind: PodMonitor" not in run.stdout
    assert "kind: ConfigMap" in run.stdout
    assert "Monitoring objects rendered: Grafana dashboard ConfigMap" in run.stdout
    left_out = "does not serve them (monitoring.ifCRDsMissing=skip): PodMonitor, PrometheusRule."
    assert left_out in run.stdout
