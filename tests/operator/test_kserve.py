"""What the operator writes, met by the real peers (issue 11): the KServe v0.20.0 manager with its
admission webhooks, the real Gateway API CRDs, kube-controller-manager and KWOK. Each test names
the rejection or misreading it guards against; the children come from the operator's own builders
and are written through its own client (creditmodel.operator.kube), as the operator writes them."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from creditmodel.operator import builders
from creditmodel.operator.kube import Kube as OperatorKube
from creditmodel.operator.kube import KubeError
from creditmodel.operator.model import Spec, VersionRef
from creditmodel.operator.patches import without_none
from tests.operator.bad_creditmodels import CASES, Bad
from tests.operator.factories import spec
from tests.operator.running import (
    GROUP,
    PLURAL,
    VERSION,
)
from tests.predictor.server import _ready
from tests.support.cluster import ClusterKube
from tests.support.kube import load_yaml_documents
from tests.support.process import REPO_ROOT, free_port, managed
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
REFERENCE_BUNDLE = str(REPO_ROOT / "models" / "german-credit")
V1 = VersionRef.model_construct(version="v1", bundle_uri=REFERENCE_BUNDLE)  # a dev path
NAME = "german-credit"  # the sample's name
LONG_NAME = "consumer-credit-scorecard-retail-emea-v2"  # 40 characters, the CRD's maximum


def ready(isvc: dict[str, Any]) -> bool:
    conditions = isvc.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.fixture
def operator_client(cluster: ClusterKube) -> Iterator[Callable[..., Any]]:
    """Runs a coroutine of the operator's own client (kr8s, admin credentials) to completion."""
    loop = asyncio.new_event_loop()

    async def connect() -> OperatorKube:
        return OperatorKube(await kr8s.asyncio.api(kubeconfig=str(cluster.kubeconfig)))

    kube = loop.run_until_complete(connect())

    def run(call: Callable[[OperatorKube], Any]) -> Any:
        return loop.run_until_complete(call(kube))

    yield run
    loop.run_until_complete(kube.close())
    loop.close()


def owner_in(cluster: ClusterKube, namespace: str, name: str) -> builders.Owner:
    """A real CreditModel to own the children (else the garbage collector removes them); our CRDs
    come from the `crds` fixture, applied only when changed."""
    body = copy.deepcopy(load_yaml_documents(REPO_ROOT / "manifests/samples/creditmodel.yaml")[0])
    body["metadata"] = {"name": name}
    created = client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return builders.Owner(name, namespace, created["metadata"]["uid"])


def get_isvc(cluster: ClusterKube, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            *KSERVE[:2], namespace, KSERVE[2], name
        )
    )


@pytest.mark.usefixtures("crds")
def test_a_40_character_name_in_a_long_namespace_is_served_and_scaled_by_kserve(
    cluster: ClusterKube, operator_client: Callable[..., Any]
) -> None:
    """Before: <name>-<8 hex> made KServe's host label <isvc>-predictor-<namespace> longer than 63
    and the InferenceService never deployed. It is Ready through KServe and KWOK now (no test
    writes its status), with the HPA KServe makes from the spec."""
    namespace = cluster.cluster.create_namespace(cluster.api, "credit-risk-prod")  # 25 characters
    owner = owner_in(cluster, namespace, LONG_NAME)
    the_spec = spec(predictor={"minReplicas": 2, "maxReplicas": 5, "scaleTarget": 60})
    isvc = builders.build_inferenceservice(owner, the_spec, V1)
    name = isvc["metadata"]["name"]
    assert len(f"{name}-predictor-{namespace}") <= 63
    assert operator_client(lambda kube: kube.ensure(isvc)) == "created"

    stored = eventually(lambda: ready(i := get_isvc(cluster, namespace, name)) and i, 90, "Ready")
    assert stored["status"]["deploymentMode"] == "Standard"
    hpa = client.AutoscalingV2Api(cluster.api).read_namespaced_horizontal_pod_autoscaler(
        f"{name}-predictor", namespace
    )
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 5)
    (metric,) = hpa.spec.metrics
    assert (metric.resource.name, metric.resource.target.average_utilization) == ("cpu", 60)


@pytest.mark.usefixtures("crds")
def test_updates_and_deletion_pass_kserves_validator(
    cluster: ClusterKube, operator_client: Callable[..., Any]
) -> None:
    """deploymentMode "RawDeployment" is a deprecated alias that KServe 0.16's validator refuses
    on every update (a spec change's patch) and on finalizer removal (pruned ISVCs stay
    Terminating). The operator writes Standard: a patch is accepted and a delete completes, the
    Deployment following through the garbage collector."""
    namespace = cluster.namespace
    owner = owner_in(cluster, namespace, "german")
    isvc = builders.build_inferenceservice(owner, spec(), V1)
    name = isvc["metadata"]["name"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    operator_client(lambda kube: kube.ensure(isvc))
    eventually(lambda: ready(get_isvc(cluster, namespace, name)), 90, "Ready")

    scaled = builders.build_inferenceservice(owner, spec(predictor={"maxReplicas": 4}), V1)
    assert operator_client(lambda kube: kube.ensure(scaled)) == "patched"
    assert get_isvc(cluster, namespace, name)["spec"]["predictor"]["maxReplicas"] == 4

    operator_client(lambda kube: kube.delete("InferenceService", namespace, name))
    apps = client.AppsV1Api(cluster.api)

    def gone() -> bool:
        for read in (
            lambda: get_isvc(cluster, namespace, name),
            lambda: apps.read_namespaced_deployment(f"{name}-predictor", namespace),
        ):
            try:
                read()
            except ApiException as exc:
                if exc.status != 404:
                    raise
            else:
                return False
        return True

    eventually(gone, 60, "InferenceService and its Deployment deleted")


@pytest.mark.usefixtures("crds")
def test_a_resync_writes_nothing_after_kserve_defaults_and_canonicalises(
    cluster: ClusterKube, operator_client: Callable[..., Any]
) -> None:
    """KServe's webhook defaults fields and the API server rewrites quantities (`cpu: 1` -> "1",
    0.5Gi -> 512Mi): compared literally, every resync patched every InferenceService. Measured:
    resourceVersion unchanged over 10 resyncs of each child."""
    namespace = cluster.namespace
    owner = owner_in(cluster, namespace, "german")
    resources = {"requests": {"cpu": 1, "memory": "0.5Gi"}, "limits": {"cpu": "1000m"}}
    the_spec = spec(predictor={"resources": resources}, rollout={"hostnames": ["c.example.com"]})
    stable = VersionRef(version="v1", bundle_uri="s3://bundles/german/v1")
    children = [
        builders.build_predictor_networkpolicy(owner, the_spec, builders.IngressPolicy()),
        builders.build_inferenceservice(owner, the_spec, stable),
        builders.build_httproute(owner, the_spec, stable, None, 0),
    ]
    for child in children:
        operator_client(lambda kube, c=child: kube.ensure(c, create_first=True))
    isvc_name = children[1]["metadata"]["name"]
    eventually(lambda: ready(get_isvc(cluster, namespace, isvc_name)), 90, "Ready")
    versions = {c["kind"]: resource_version(cluster, c) for c in children}
    for _ in range(10):
        for child in children:
            assert operator_client(lambda kube, c=child: kube.ensure(c)) == "unchanged"
    assert {c["kind"]: resource_version(cluster, c) for c in children} == versions
    stored = get_isvc(cluster, namespace, isvc_name)["spec"]["predictor"]["containers"][0]
    assert stored["resources"]["requests"] == {"cpu": "1", "memory": "512Mi"}


@pytest.mark.usefixtures("crds")
def test_a_child_as_we_last_wrote_it_is_patched_unread_and_created_again_when_gone(
    cluster: ClusterKube, operator_client: Callable[..., Any]
) -> None:
    """`patch_first`: a route moving from 100/0 to 90/10 is one PATCH, no GET; a route deleted
    meanwhile is created again. What the API server stores is what a read-then-patch stores."""
    namespace = cluster.namespace
    owner = owner_in(cluster, namespace, "german")
    the_spec = spec(rollout={"hostnames": ["c.example.com"]})
    v2 = VersionRef(version="v2", bundle_uri="s3://bundles/german/v2")
    first = builders.build_httproute(owner, the_spec, V1, None, 0)
    moved = builders.build_httproute(owner, the_spec, V1, v2, 10)
    assert operator_client(lambda kube: kube.ensure(first, create_first=True)) == "created"
    methods: list[str] = []

    async def ensure_counted(kube: OperatorKube, manifest: dict[str, Any]) -> str:
        call = kube._call

        async def counted(method: str, *args: Any, **kwargs: Any) -> Any:
            methods.append(method)
            return await call(method, *args, **kwargs)

        kube._call = counted  # type: ignore[method-assign]
        try:
            return await kube.ensure(manifest, patch_first=True)
        finally:
            del kube._call

    assert operator_client(lambda kube: ensure_counted(kube, moved)) == "patched"
    assert methods == ["PATCH"]
    stored = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", "german"
    )
    weights = [ref["weight"] for ref in stored["spec"]["rules"][0]["backendRefs"]]
    assert weights == [90, 10]
    assert operator_client(lambda kube: kube.ensure(moved)) == "unchanged"

    operator_client(lambda kube: kube.delete("HTTPRoute", namespace, "german"))
    methods.clear()
    assert operator_client(lambda kube: ensure_counted(kube, moved)) == "created"
    assert methods == ["PATCH", "POST"]


@pytest.mark.usefixtures("crds")
@pytest.mark.parametrize("patch_first", [False, True])
def test_a_field_the_spec_no_longer_sets_is_taken_off_the_child(
    cluster: ClusterKube, operator_client: Callable[..., Any], patch_first: bool
) -> None:
    """A merge patch of the fields we still set left the others in place: with
    serviceAccountName removed from the spec the predictor kept the old account (and its pods
    kept failing on one that did not exist), and a route kept hostnames the spec had dropped.
    The builders write None for what the spec leaves unset: the patch deletes it, KServe and the
    Gateway API CRD leave it absent, and the next resync writes nothing."""
    namespace = cluster.namespace
    owner = owner_in(cluster, namespace, f"unset-{int(patch_first)}")
    gateway = {"name": "gw", "namespace": "gateway-system", "sectionName": "https"}
    before = spec(
        predictor={"serviceAccountName": "scorer"},
        rollout={"hostnames": ["c.example.com"], "gateway": gateway},
    )
    after = spec(rollout={"gateway": {"name": "gw"}})
    for build in (
        lambda s: builders.build_inferenceservice(owner, s, V1),
        lambda s: builders.build_httproute(owner, s, V1, None, 0),
    ):
        first, second = build(before), build(after)
        assert operator_client(lambda kube, m=first: kube.ensure(m)) == "created"
        outcome = operator_client(lambda kube, m=second: kube.ensure(m, patch_first=patch_first))
        assert outcome == "patched"
        stored = stored_child(cluster, second)
        if second["kind"] == "InferenceService":
            assert "serviceAccountName" not in stored["spec"]["predictor"]
        else:
            assert "hostnames" not in stored["spec"]
            (parent,) = stored["spec"]["parentRefs"]
            assert "namespace" not in parent
            assert "sectionName" not in parent
            assert parent["name"] == "gw"
        # KServe writes the InferenceService's status and finalizer meanwhile (resourceVersion
        # moves), so what is checked is the operator's writes and the spec's generation.
        generation, writes = stored["metadata"]["generation"], []

        def resync(kube: OperatorKube, m: dict[str, Any] = second, log: list[Any] = writes) -> Any:
            kube.written = log.append
            return kube.ensure(m)

        assert operator_client(resync) == "unchanged"
        assert writes == []
        assert stored_child(cluster, second)["metadata"]["generation"] == generation


def stored_child(cluster: ClusterKube, child: dict[str, Any]) -> dict[str, Any]:
    group, version = child["apiVersion"].split("/")
    plural = {"HTTPRoute": "httproutes"}.get(child["kind"], "inferenceservices")
    return dict(
        client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            group, version, child["metadata"]["namespace"], plural, child["metadata"]["name"]
        )
    )


def resource_version(cluster: ClusterKube, child: dict[str, Any]) -> str:
    group, version = child["apiVersion"].split("/")
    plural = {"NetworkPolicy": "networkpolicies", "HTTPRoute": "httproutes"}.get(
        child["kind"], "inferenceservices"
    )
    found = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        group, version, cluster.namespace, plural, child["metadata"]["name"]
    )
    return str(found["metadata"]["resourceVersion"])


@pytest.mark.usefixtures("crds")
def test_grpc_model_infer_reaches_the_predictor_through_kserves_service(
    cluster: ClusterKube, operator_client: Callable[..., Any], tmp_path: Path
) -> None:
    """The gRPC port is declared and named, so KServe's Service carries it with appProtocol
    kubernetes.io/h2c and targets the port the container's --grpc_port names; the predictor
    started with the arguments of the Deployment KServe rendered answers a ModelInfer there
    (listening ports moved to free ones: this machine runs many predictors)."""
    namespace = cluster.namespace
    owner = owner_in(cluster, namespace, "german-credit")
    isvc = builders.build_inferenceservice(owner, spec(), V1)
    name = isvc["metadata"]["name"]
    operator_client(lambda kube: kube.ensure(isvc))
    core, apps = client.CoreV1Api(cluster.api), client.AppsV1Api(cluster.api)
    service = eventually(
        lambda: core.read_namespaced_service(f"{name}-predictor", namespace), 60, "Service"
    )
    ports = {p.name: p for p in service.spec.ports}
    assert ports["grpc"].app_protocol == "kubernetes.io/h2c"
    assert (ports["http"].port, ports["http"].app_protocol) == (80, None)
    deployment = apps.read_namespaced_deployment(f"{name}-predictor", namespace)
    (container,) = [c for c in deployment.spec.template.spec.containers if c.name.startswith("k")]
    args = list(container.args)
    assert int(args[args.index("--grpc_port") + 1]) == ports["grpc"].target_port.__int__()
    assert int(args[args.index("--http_port") + 1]) == ports["http"].target_port.__int__()

    http, grpc_port = free_port(), free_port()
    args[args.index("--grpc_port") + 1] = str(grpc_port)
    args[args.index("--http_port") + 1] = str(http)
    env = {e.name: e.value for e in container.env or [] if e.value is not None}
    command = [str(Path(sys.executable).parent / "creditmodel-predictor"), *args]
    with managed("predictor", command, tmp_path, env) as predictor:
        predictor.wait_ready(lambda: _ready(f"http://127.0.0.1:{http}"), 120, "ready")
        answer = subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "predictor" / "examples" / "grpc_infer.py"),
                "--target",
                f"127.0.0.1:{grpc_port}",
                "--model",
                "german-credit",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert answer.returncode == 0, answer.stderr
    outputs = {o["name"]: o for o in json.loads(answer.stdout)["outputs"]}
    assert 0.0 <= outputs["probability"]["data"][0] <= 1.0


@pytest.mark.parametrize(("metric", "accepted"), [("concurrency", True), ("cpu", False)])
def test_kserves_validator_takes_only_a_kpa_metric_for_router_knative(
    cluster: ClusterKube, metric: str, accepted: bool
) -> None:
    """The Knative Pod Autoscaler scales on concurrency or rps: KServe refused the operator's
    cpu ("[cpu] is not a supported metric"); the CreditModel CRD now refuses that pairing and
    the default for router knative is concurrency."""
    knative = spec(rollout={"router": "knative"})
    isvc = builders.build_knative_inferenceservice(
        builders.Owner("german", cluster.namespace, "uid-1"), knative, V1, None
    )
    assert isvc["spec"]["predictor"]["scaleMetric"] == "concurrency"
    isvc["spec"]["predictor"]["scaleMetric"] = metric
    isvc["metadata"].pop("ownerReferences")
    isvc = without_none(isvc)  # what the operator's create sends
    create = client.CustomObjectsApi(cluster.api).create_namespaced_custom_object
    if accepted:
        create(*KSERVE[:2], cluster.namespace, KSERVE[2], isvc, dry_run="All")
        return
    with pytest.raises(ApiException) as refused:
        create(*KSERVE[:2], cluster.namespace, KSERVE[2], isvc, dry_run="All")
    assert "[cpu] is not a supported metric" in refused.value.body


GATEWAY_API_REFUSES = {
    "hostname-star",
    "hostname-uppercase",
    "hostname-port",
    "hostname-trailing-dot",
    "gateway-namespace",
    "gateway-namespace-dot",
    "section-name",
}
"""The route values the real HTTPRoute CRD refuses. The CreditModel CRD is stricter still (no
wildcard or IP hostname: status.url names one host; a Gateway name is a DNS subdomain)."""
ROUTE_CASES = [case for case in CASES if case.id in GATEWAY_API_REFUSES]


@pytest.mark.parametrize("case", ROUTE_CASES, ids=lambda case: case.id)
def test_the_gateway_api_crd_refuses_each_route_value_the_creditmodel_crd_refuses(
    cluster: ClusterKube, case: Bad
) -> None:
    """The CreditModel CRD refuses these (test_admission.py); here the real HTTPRoute CRD shows
    why: written into the route, each value would be refused on every pass instead."""
    owner = builders.Owner("german", cluster.namespace, "uid-1")
    the_spec = spec(rollout={"hostnames": ["credit.example.com"], "gateway": {"name": "gw"}})
    route = builders.build_httproute(owner, the_spec, V1, None, 0)
    route["metadata"].pop("ownerReferences")
    bad = case.body()["spec"]["rollout"]
    parent = route["spec"]["parentRefs"][0]
    if "hostnames" in bad:
        route["spec"]["hostnames"] = bad["hostnames"]
    for key in ("name", "namespace", "sectionName"):
        if bad.get("gateway", {}).get(key) not in (None, parent.get(key)):
            parent[key] = bad["gateway"][key]
    create = client.CustomObjectsApi(cluster.api).create_namespaced_custom_object
    with pytest.raises(ApiException) as refused:
        create(
            "gateway.networking.k8s.io", "v1", cluster.namespace, "httproutes", route, dry_run="All"
        )
    assert refused.value.status == 422, refused.value.body
    assert json.loads(refused.value.body)["details"]["causes"], refused.value.body


def test_route_values_the_creditmodel_crd_accepts_are_valid_httproutes(
    cluster: ClusterKube,
) -> None:
    document = {
        "rollout": {
            "gateway": {
                "name": "shared.gateway",
                "namespace": "gateway-system",
                "sectionName": "https",
            },
            "hostnames": ["credit.example.com", "localhost"],
        },
    }
    the_spec = Spec.model_validate(
        {**spec().model_dump(by_alias=True, exclude_none=True), **document}
    )
    route = builders.build_httproute(
        builders.Owner("german", cluster.namespace, "uid-1"), the_spec, V1, None, 0
    )
    route["metadata"].pop("ownerReferences")
    client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", cluster.namespace, "httproutes", route, dry_run="All"
    )


def test_kube_error_tells_a_refusal_from_an_outage() -> None:
    assert KubeError("denied", 403).refused
    assert KubeError("invalid", 422).refused
    assert not KubeError("unavailable", 503).refused
    assert not KubeError("conflict", 409).refused


@pytest.mark.usefixtures("crds")
def test_a_resync_of_a_knative_inferenceservice_writes_nothing_either(
    cluster: ClusterKube, operator_client: Callable[..., Any]
) -> None:
    """KServe's defaulting webhook stores deploymentMode "Knative" for the alias "Serverless": had
    the operator written the alias, every resync would patch it back."""
    owner = owner_in(cluster, cluster.namespace, "german")
    knative = spec(rollout={"router": "knative"})
    isvc = builders.build_knative_inferenceservice(owner, knative, V1, None)
    assert operator_client(lambda kube: kube.ensure(isvc, create_first=True)) == "created"
    stored = get_isvc(cluster, cluster.namespace, "german")
    assert stored["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    for _ in range(10):
        assert operator_client(lambda kube: kube.ensure(isvc)) == "unchanged"
