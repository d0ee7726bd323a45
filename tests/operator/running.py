"""The operator as a real process (`python -m creditmodel.operator`), authenticated as the
ServiceAccount bound to manifests/rbac, plus helpers to watch what it does through the API."""

from __future__ import annotations

import contextlib
import copy
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client

from tests.support.kube import Kube, load_yaml_documents
from tests.support.process import REPO_ROOT, ManagedProcess, free_port

T = TypeVar("T")
CRD_DIR = REPO_ROOT / "manifests" / "crd"
RBAC = REPO_ROOT / "manifests" / "rbac" / "operator.yaml"
TEST_CRDS = Path(__file__).parent / "crds" / "minimal.yaml"
GROUP, VERSION, PLURAL = "scoring.creditmodel.io", "v1alpha1", "creditmodels"


def crd_documents() -> list[dict[str, Any]]:
    """Our CRDs (manifests/crd, kustomization files aside) and the minimal KServe/Gateway ones."""
    paths = [*sorted(CRD_DIR.glob("*.yaml")), TEST_CRDS]
    documents = [doc for path in paths for doc in load_yaml_documents(path)]
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
            if "forbidden" in line.lower() and "exceeded quota" not in line  # a quota, not RBAC
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


def eventually(probe: Callable[[], T | None], timeout: float = 20, what: str = "") -> T:
    """Poll until `probe` returns something truthy; fail with the last value otherwise. A field
    not written yet (KeyError) or an object not created yet (ApiException) means "not yet"."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(client.ApiException, KeyError):
            last = probe()
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}: last {last!r}")


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

    def mark_isvc_ready(self, name: str) -> None:
        """What the KServe controller would do once the predictor pods are ready."""
        self.custom.patch_namespaced_custom_object_status(
            "serving.kserve.io",
            "v1beta1",
            self.namespace,
            "inferenceservices",
            name,
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "lastTransitionTime": "2026-01-01T00:00:00Z",
                        }
                    ]
                }
            },
        )

    def terminated_training_pod(self, job: str, message: str) -> None:
        """A pod of `job` whose container ended with `message` (what the kubelet records)."""
        core = client.CoreV1Api(self.kube.api)
        name = f"{job}-pod"
        core.create_namespaced_pod(
            self.namespace,
            {
                "metadata": {"name": name, "labels": {"batch.kubernetes.io/job-name": job}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "train", "image": "ghcr.io/creditmodel/training:test"}],
                },
            },
        )
        now = "2026-01-01T00:00:00Z"
        terminated = {"exitCode": 3, "reason": "Error", "message": message, "finishedAt": now}
        core.patch_namespaced_pod_status(
            name,
            self.namespace,
            {
                "status": {
                    "phase": "Failed",
                    "containerStatuses": [
                        {
                            "name": "train",
                            "image": "ghcr.io/creditmodel/training:test",
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {"terminated": terminated},
                        }
                    ],
                }
            },
        )

    def finish_job(self, name: str, succeeded: bool) -> None:
        """What the Job controller would write when the training pod ends."""
        now = "2026-01-01T00:00:00Z"
        if succeeded:
            conditions = [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                {"type": "Complete", "status": "True", "lastTransitionTime": now},
            ]
            counts = {"succeeded": 1, "completionTime": now}
        else:
            message = "Job has reached the specified backoff limit"
            conditions = [
                {
                    "type": "FailureTarget",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": message,
                    "lastTransitionTime": now,
                },
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": message,
                    "lastTransitionTime": now,
                },
            ]
            counts = {"failed": 2}
        self.batch.patch_namespaced_job_status(
            name,
            self.namespace,
            {"status": {"startTime": now, "conditions": conditions, **counts}},
        )


def condition(model: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for item in model.get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return None
