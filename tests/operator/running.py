"""The operator as a real process (`python -m creditmodel.operator`), authenticated as the
ServiceAccount bound to manifests/rbac, on the real stack (tests/support/cluster.py: KServe with its
webhooks, the controller-manager, KWOK), plus helpers to watch what it does through the API.

Nothing here writes a child's status: InferenceServices become Ready through KServe and KWOK, Jobs
end through the Job controller and KWOK's stages (tests/support/kwok)."""

from __future__ import annotations

import contextlib
import copy
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, watch

from tests.predictor.server import PredictorServer
from tests.support.cluster import end_pod
from tests.support.kube import Kube, load_yaml_documents
from tests.support.process import REPO_ROOT, ManagedProcess, free_port
from tests.support.rendered import deployment_container, local_process, run_rendered
from tests.support.waiting import eventually

T = TypeVar("T")
CRD_DIR = REPO_ROOT / "manifests" / "crd"
RBAC = REPO_ROOT / "manifests" / "rbac" / "operator.yaml"
GROUP, VERSION, PLURAL = "scoring.creditmodel.io", "v1alpha1", "creditmodels"
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
# KServe + KWOK take a few seconds per InferenceService; two shared cores make that tens at worst.
READY_TIMEOUT = 180


def crd_documents() -> list[dict[str, Any]]:
    """Our CRDs (manifests/crd, kustomization files aside). KServe's, Gateway API's and the
    Prometheus Operator's real CRDs come with the `cluster` stack."""
    documents = [
        doc for path in sorted(CRD_DIR.glob("*.yaml")) for doc in load_yaml_documents(path)
    ]
    return [doc for doc in documents if doc.get("kind") == "CustomResourceDefinition"]


def bind_operator_service_account(kube: Kube) -> Path:
    """manifests/rbac applied with its ServiceAccount moved into the test namespace, a namespaced
    twin of manifests/rbac/peering.yaml, and a TokenRequest kubeconfig for that ServiceAccount."""
    rbac = client.RbacAuthorizationV1Api(kube.api)
    core = client.CoreV1Api(kube.api)
    for document in copy.deepcopy(load_yaml_documents(RBAC)):
        kind = document["kind"]
        if kind == "ServiceAccount":
            document["metadata"]["namespace"] = kube.namespace
            core.create_namespaced_service_account(kube.namespace, document)
        elif kind == "ClusterRole":
            try:
                rbac.create_cluster_role(document)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
                rbac.replace_cluster_role(document["metadata"]["name"], document)
        elif kind == "ClusterRoleBinding":
            document["metadata"]["name"] = f"creditmodel-operator-{kube.namespace}"
            for subject in document["subjects"]:
                subject["namespace"] = kube.namespace
            rbac.create_cluster_role_binding(document)
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering"}
    client.CustomObjectsApi(kube.api).create_namespaced_custom_object(
        "kopf.dev",
        "v1",
        kube.namespace,
        "kopfpeerings",
        {**peering, "metadata": {"name": "creditmodel-operator"}},
    )
    return kube.plane.service_account_kubeconfig(kube.namespace, "creditmodel-operator")


@dataclass
class Operator:
    kube: Kube
    kubeconfig: Path
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    verbose: bool = True
    process: ManagedProcess | None = None
    logs: list[str] = field(default_factory=list)

    def start(self) -> None:
        port = free_port()
        self.process = ManagedProcess(
            f"operator-{len(self.logs)}",
            [
                sys.executable,
                "-m",
                "creditmodel.operator",
                "--namespace",
                self.kube.namespace,
                "--liveness",
                f"http://127.0.0.1:{port}/healthz",
                *(["--verbose"] if self.verbose else []),
            ],
            self.workdir,
            env={
                "KUBECONFIG": str(self.kubeconfig),
                "CREDITMODEL_OPERATOR_RESYNC_SECONDS": "1",
                "CREDITMODEL_OPERATOR_DRAIN_SECONDS": "2",
                **self.env,
            },
        )
        self.process.wait_ready(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status
            == 200,
            timeout=60,
            what="live (/healthz)",
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.logs.append(self.process.log_path.read_text(errors="replace"))
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        current = self.process.log_path.read_text(errors="replace") if self.process else ""
        return "\n".join([*self.logs, current])

    def assert_never_forbidden(self) -> None:
        """The ServiceAccount's ClusterRole must cover every request the operator made."""
        forbidden = [
            line
            for line in self.log().splitlines()
            if "forbidden" in line.lower()
            and "exceeded quota" not in line  # a quota, not RBAC
            and "denied request" not in line  # an admission policy, not RBAC
        ]
        assert not forbidden, "operator hit RBAC denials:\n" + "\n".join(forbidden[:10])


@contextlib.contextmanager
def running_operator(
    kube: Kube,
    kubeconfig: Path,
    workdir: Path,
    env: dict[str, str] | None = None,
    verbose: bool = True,
) -> Iterator[Operator]:
    operator = Operator(kube, kubeconfig, workdir, dict(env or {}), verbose)
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()
        print(f"--- operator log ---\n{operator.log()[-20000:]}")  # shown by pytest on failure
    operator.assert_never_forbidden()


class Api:
    """Admin-side reads and writes the tests make (as users and as the absent controllers)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.custom = client.CustomObjectsApi(kube.api)
        self.batch = client.BatchV1Api(kube.api)
        self.namespace = kube.namespace

    def create_model(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body
            )
        )

    def model(self, name: str) -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        )

    def models(self) -> set[str]:
        """Names of the namespace's CreditModels (one being deleted included)."""
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        return {item["metadata"]["name"] for item in listed["items"]}

    def patch_model(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, patch
        )

    def isvcs(self) -> dict[str, dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", self.namespace, "inferenceservices"
        )["items"]
        return {item["metadata"]["name"]: item for item in items}

    def route(self, name: str) -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", name
            )
        )

    def isvc(self, name: str) -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(*ISVC[:2], self.namespace, ISVC[2], name)
        )

    def isvc_ready(self, name: str) -> bool:
        """KServe's own verdict: the InferenceService's Ready condition."""
        return (condition(self.isvc(name), "Ready") or {}).get("status") == "True"

    def wait_isvc_ready(self, name: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Until KServe reports the InferenceService Ready (its Deployment available: KWOK pods)."""
        return eventually(
            lambda: self.isvc(name) if self.isvc_ready(name) else None,
            timeout=timeout,
            what=f"InferenceService {name} Ready (KServe)",
        )

    def wait_model_ready(self, name: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            model = self.model(name)
            return model if (condition(model, "Ready") or {}).get("status") == "True" else None

        return eventually(ready, timeout=timeout, what=f"CreditModel {name} Ready=True")

    def wait_condition(self, name: str, kind: str, timeout: float) -> dict[str, Any]:
        """The CreditModel's condition `kind` once its status is True."""

        def true() -> dict[str, Any] | None:
            found = condition(self.model(name), kind)
            return found if found is not None and found["status"] == "True" else None

        return eventually(true, timeout=timeout, what=f"CreditModel {name} {kind}=True")

    def describe(self) -> str:
        """The InferenceServices' Ready conditions (KServe's) and the CreditModels' status, for
        failure messages."""
        lines = []
        for name, isvc in self.isvcs().items():
            ready = condition(isvc, "Ready") or {}
            lines.append(f"isvc {name}: Ready={ready.get('status')} {ready.get('reason', '')}")
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        for item in items["items"]:
            lines.append(f"creditmodel {item['metadata']['name']}: {item.get('status')}")
        return "\n".join(lines)

    def predictor_pods(self, isvc: str) -> list[client.V1Pod]:
        core = client.CoreV1Api(self.kube.api)
        selector = f"serving.kserve.io/inferenceservice={isvc}"
        return list(core.list_namespaced_pod(self.namespace, label_selector=selector).items)

    def pod_templates(self, isvc: str) -> set[str]:
        """The pod-template-hash of every ReplicaSet KServe's Deployment has had for `isvc`: one
        while nothing has changed what its pods run (the Deployment keeps old ReplicaSets)."""
        apps = client.AppsV1Api(self.kube.api)
        selector = f"serving.kserve.io/inferenceservice={isvc}"
        sets = apps.list_namespaced_replica_set(self.namespace, label_selector=selector).items
        return {rs.metadata.labels["pod-template-hash"] for rs in sets}

    def apps_deployments(self) -> list[str]:
        apps = client.AppsV1Api(self.kube.api)
        return [d.metadata.name for d in apps.list_namespaced_deployment(self.namespace).items]

    def training_pods(self, job: str) -> list[client.V1Pod]:
        core = client.CoreV1Api(self.kube.api)
        selector = f"batch.kubernetes.io/job-name={job}"
        return list(core.list_namespaced_pod(self.namespace, label_selector=selector).items)

    def end_training_pod(self, job: str, exit_code: int, message: str = "") -> None:
        """The held training container (image tag `hold`) exits: KWOK records `exit_code` and the
        termination `message`; the Job controller takes it from there."""
        running = eventually(
            lambda: [p for p in self.training_pods(job) if p.status.phase == "Running"],
            timeout=READY_TIMEOUT,
            what=f"a running pod of Job {job}",
        )
        end_pod(self.kube.api, self.namespace, running[0].metadata.name, exit_code, message)


def storage(kube: Kube, env: Mapping[str, str], secret: str = "creditmodel-s3") -> dict[str, Any]:
    """A CreditModel's `spec.storage` for MinIO (`env`: its S3 environment): the endpoint, and
    the keys in a Secret of the test namespace, as a platform team would set it up."""
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    client.CoreV1Api(kube.api).create_namespaced_secret(
        kube.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=secret), string_data={k: env[k] for k in keys}
        ),
    )
    return {"endpoint": env["S3_ENDPOINT_URL"], "region": "us-east-1", "secretName": secret}


@contextlib.contextmanager
def rendered_predictor(
    kube: Kube,
    isvc: str,
    log_dir: Path,
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 90,
) -> Iterator[PredictorServer]:
    """The predictor of InferenceService `isvc`, run here from the pod template KServe rendered
    into Deployment `<isvc>-predictor` (tests/support/rendered.py: args, env, envFrom resolved;
    only the executable and the listening ports change)."""
    deployment = eventually(
        lambda: deployment_container(kube.api, kube.namespace, f"{isvc}-predictor"),
        timeout=READY_TIMEOUT,
        what=f"Deployment {isvc}-predictor (rendered by KServe)",
    )
    process = local_process(
        kube.api, kube.namespace, deployment, extra_args=extra_args, extra_env=extra_env
    )
    args = process.argv
    model_name = args[args.index("--model_name") + 1]
    http_port, grpc_port = process.port("http", deployment), process.port("grpc", deployment)
    with run_rendered(process, isvc, log_dir) as managed:

        def ready() -> bool:
            if managed.proc.poll() is not None:
                raise AssertionError(
                    f"the predictor KServe rendered for {isvc} exited with"
                    f" {managed.proc.returncode}: {process.argv}\n{managed.log_tail()}"
                )
            url = f"http://127.0.0.1:{http_port}/v2/health/ready"
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=2) as response,
            ):
                return bool(json.loads(response.read()).get("ready"))
            return False

        eventually(ready, timeout=timeout, what=f"predictor {isvc} ready ({process.argv})")
        yield PredictorServer(managed, model_name, http_port, grpc_port)


class Recorder:
    """Every version of the namespace's objects of one custom kind, from a watch opened before
    the test acts: what was written, in order, however briefly it held."""

    def __init__(self, kube: Kube, group: str, version: str, plural: str) -> None:
        self.custom = client.CustomObjectsApi(kube.api)
        self.args = (group, version, kube.namespace, plural)
        self.versions: list[dict[str, Any]] = []
        self.error: str | None = None
        self.stop = threading.Event()
        listed = self.custom.list_namespaced_custom_object(*self.args)
        self.resource_version = listed["metadata"]["resourceVersion"]
        self.started_at = int(self.resource_version)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self.custom.list_namespaced_custom_object,
                    *self.args,
                    resource_version=self.resource_version,
                    timeout_seconds=5,
                ):
                    obj = event["object"]
                    self.resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.versions.append(json.loads(json.dumps(obj)))
                    if self.stop.is_set():
                        break
            except client.ApiException as exc:
                if exc.status == 410:  # expired: what was missed cannot be recorded any more
                    self.error = f"the watch expired after {len(self.versions)} versions"
                    return
                time.sleep(0.2)
            except Exception:  # a dropped connection: resume from the last version seen
                time.sleep(0.2)

    def of(self, name: str) -> list[dict[str, Any]]:
        """The versions of `name`, in order (fails if the watch could not see them all)."""
        assert self.error is None, self.error
        return [v for v in list(self.versions) if v["metadata"]["name"] == name]

    def close(self) -> None:
        """Stop once the watch has delivered everything written so far (an object's version is
        etcd's revision: a later write has a larger one)."""
        listed = self.custom.list_namespaced_custom_object(*self.args)["items"]
        latest = max((int(i["metadata"]["resourceVersion"]) for i in listed), default=0)
        deadline = time.monotonic() + 10
        while self.error is None and time.monotonic() < deadline:
            seen = [int(v["metadata"]["resourceVersion"]) for v in list(self.versions)]
            if max(seen, default=self.started_at) >= latest:
                break
            time.sleep(0.05)
        self.stop.set()
        self.thread.join(10)


def condition(model: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for item in model.get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return None
