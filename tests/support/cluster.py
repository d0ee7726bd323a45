"""The real stack the operator meets, on loopback: etcd + kube-apiserver (PodSecurity on),
kube-controller-manager, kube-scheduler, a KWOK node, the KServe manager with its admission
webhooks registered, and the KServe, Gateway API and Prometheus Operator CRDs.

Nothing third-party is committed: `make tools` builds the binaries into ./bin and writes
./bin/stack.env, naming the CRD and config directories inside the Go module cache. Pods never run:
KWOK plays the kubelet, so a Deployment's pods become Running and Ready from its "fast" stage files
and a Job's pods complete at once. Our own stages (tests/support/kwok, see `STAGES`) take over for
pods a test marks through what it controls in a CreditModel: a bundle path that never gets Ready, a
training image tag that fails with an exit code and termination message, or holds until released.
`python -m tests.support.cluster DIR` (hack/dev-cluster.sh) runs the same stack for people.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import ssl
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.kube import (
    ControlPlane,
    Kube,
    apply_crds,
    control_plane,
    create_namespace,
    wait_established,
)
from tests.support.process import ManagedProcess, free_port, tool
from tests.support.stack import (
    KSERVE_DEFAULTS,
    KWOK_ANNOTATION,
    kserve_config,
    kserve_webhooks,
    kwok_node,
    missing_crds,
    seeded_etcd,
    stack_env,
    third_party_crds,
)

KWOK_NODE = "kwok-node-0"
STAGES = Path(__file__).parent / "kwok"
"""Our KWOK pod stages, loaded after KWOK's fast ones; each has weight 1, so it wins over the fast
stage that selects the same pods (weight 0). See each file's header."""
# Names the pod stages read and tests write (tests/support/kwok/*.yaml).
NEVER_READY_SEGMENT = "kwok-never-ready"
HOLD_TAG = "hold"
EXIT_CODE_ANNOTATION = "kwok.creditmodel.io/exit-code"
TERMINATION_MESSAGE_ANNOTATION = "kwok.creditmodel.io/termination-message"
# kube-controller-manager controllers: the ones the operator's objects need, plus what makes a
# namespace usable (default ServiceAccount, kube-root-ca.crt) and deletable.
CONTROLLERS = (
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "horizontal-pod-autoscaler-controller",
    "job-controller",
    "cronjob-controller",
    "resourcequota-controller",
    "ttl-after-finished-controller",
    "endpointslice-controller",
    "serviceaccount-controller",
    "namespace-controller",
    "root-ca-certificate-publisher-controller",
)


@dataclass(frozen=True)
class Scale:
    """Options for many objects: `nodes` KWOK nodes (250 pods each); `client_qps` for the
    controller-manager's and scheduler's clients (as kwokctl sets them; their defaults, 20 and 50,
    throttle a thousand Deployments); `service_cidrs`, ServiceCIDR objects beside the default /24
    (254 Service IPs: KServe makes a Service per InferenceService); extra kube-apiserver and
    kube-controller-manager flags (e.g. an audit policy)."""

    nodes: int = 1
    client_qps: int | None = None
    service_cidrs: tuple[str, ...] = ()
    apiserver_args: tuple[str, ...] = ()
    controller_manager_args: tuple[str, ...] = ()


@dataclass
class Cluster:
    """A running stack; `timings` holds seconds since the start at which each part was ready."""

    plane: ControlPlane
    kserve_namespace: str
    webhook_port: int
    # the KServe manager's controller-runtime metrics (reconcile counts and times)
    kserve_metrics_port: int = field(default_factory=free_port)
    timings: dict[str, float] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def api_client(self) -> client.ApiClient:
        return self.plane.api_client()

    def create_namespace(
        self, api: client.ApiClient, prefix: str = "test", pod_security: str = "baseline"
    ) -> str:
        """A namespace enforcing the PodSecurity level (warning at restricted), ready for pods:
        its default ServiceAccount exists (the ServiceAccount admission plugin needs it)."""
        labels = {
            "pod-security.kubernetes.io/enforce": pod_security,
            "pod-security.kubernetes.io/warn": "restricted",
        }
        name = create_namespace(api, prefix, labels)
        core = client.CoreV1Api(api)
        _wait(lambda: core.read_namespaced_service_account("default", name), 30, "default SA")
        return name


@dataclass
class ClusterKube(Kube):
    """What a `cluster` test gets: the `kube` interface (namespace, admin client) on the full stack."""

    cluster: Cluster


def end_pod(
    api: client.ApiClient, namespace: str, name: str, exit_code: int, message: str = ""
) -> None:
    """End a running pod as its container's process would (exit code, termination message):
    KWOK's stage tests/support/kwok/pod-exit.yaml writes the terminated status."""
    annotations = {EXIT_CODE_ANNOTATION: str(exit_code)}
    if message:
        annotations[TERMINATION_MESSAGE_ANNOTATION] = message
    client.CoreV1Api(api).patch_namespaced_pod(
        name, namespace, {"metadata": {"annotations": annotations}}
    )


def _wait(probe: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ApiException, OSError):
            result = probe()
            if result:
                return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.1)


def _https_health(port: int) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the component's self-signed serving cert
    with urllib.request.urlopen(
        f"https://127.0.0.1:{port}/healthz", context=context, timeout=2
    ) as r:
        return bool(r.status == 200)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def _node_ready(api: client.ApiClient, name: str) -> bool:
    node = client.CoreV1Api(api).read_node(name)
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def _refused_by_kserve(api: client.ApiClient, namespace: str) -> bool:
    invalid = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "webhook.probe"},  # KServe wants a DNS-1035 label
        "spec": {"predictor": {"containers": [{"name": "c", "image": "registry.invalid/c"}]}},
    }
    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", invalid, dry_run="All"
        )
    except ApiException as exc:
        return "kserve-webhook-server" in str(exc.body)
    return False


@contextlib.contextmanager
def start_cluster(
    workdir: Path,
    *,
    kserve_overrides: dict[str, dict[str, Any]] | None = None,
    api_port: int | None = None,
    scale: Scale | None = None,
) -> Iterator[Cluster]:
    """`scale`: options for benchmarks with many objects (more KWOK nodes, controller client
    rate limits, extra kube-apiserver flags); the defaults suit the tests."""
    scale = scale or Scale()
    env = stack_env()
    binaries = {
        name: tool(name)
        for name in ("kube-controller-manager", "kube-scheduler", "kwok", "kserve-manager")
    }
    workdir.mkdir(parents=True, exist_ok=True)
    seeding = time.monotonic()
    seed = seeded_etcd(env, workdir)
    seeded_in = time.monotonic() - seeding
    start = time.monotonic()
    shutil.copytree(seed, workdir / "etcd")
    with control_plane(
        workdir, with_controllers=True, api_port=api_port, apiserver_args=scale.apiserver_args
    ) as plane:
        stack = Cluster(plane=plane, kserve_namespace="kserve", webhook_port=free_port())
        if seeded_in > 1:
            stack.timings["etcd seed (first run only, not in total)"] = seeded_in
        stack.timings["kube-apiserver"] = time.monotonic() - start
        try:
            _start(stack, env, binaries, kserve_overrides or KSERVE_DEFAULTS, start, scale)
            stack.timings["total"] = time.monotonic() - start
            (workdir / "timings.json").write_text(json.dumps(stack.timings, indent=2))
            yield stack
        finally:
            for process in reversed(stack.processes):
                process.stop()


def _start(
    stack: Cluster,
    env: dict[str, str],
    binaries: dict[str, Path],
    kserve_overrides: dict[str, dict[str, Any]],
    start: float,
    scale: Scale,
) -> None:
    plane, workdir, kubeconfig = stack.plane, stack.plane.workdir, stack.plane.kubeconfig
    pki = plane.pki
    delegation = [
        "--authentication-kubeconfig",
        kubeconfig,
        "--authorization-kubeconfig",
        kubeconfig,
    ]
    kcm_port, scheduler_port = free_port(), free_port()
    qps = (
        ["--kube-api-qps", scale.client_qps, "--kube-api-burst", 2 * scale.client_qps]
        if scale.client_qps
        else []
    )

    def launch(
        name: str, argv: list[Any], env_vars: dict[str, str] | None = None
    ) -> ManagedProcess:
        process = ManagedProcess(name, [binaries[name], *argv], workdir, env_vars)
        stack.processes.append(process)
        return process

    kcm = launch(
        "kube-controller-manager",
        [
            "--kubeconfig", kubeconfig, *delegation,
            "--bind-address", "127.0.0.1", "--secure-port", kcm_port, "--cert-dir", workdir / "kcm",
            "--leader-elect=false", "--use-service-account-credentials=false",
            "--controllers", ",".join(CONTROLLERS),
            "--root-ca-file", pki / "ca.crt",
            "--service-account-private-key-file", pki / "sa.key",
            *qps, *scale.controller_manager_args,
        ],
    )  # fmt: skip
    scheduler = launch(
        "kube-scheduler",
        [
            "--kubeconfig", kubeconfig, *delegation,
            "--bind-address", "127.0.0.1", "--secure-port", scheduler_port,
            "--cert-dir", workdir / "scheduler", "--leader-elect=false",
            *qps,
        ],
    )  # fmt: skip
    stages = [
        path
        for key in ("KWOK_NODE_STAGE_DIR", "KWOK_POD_STAGE_DIR")
        for path in sorted(Path(env[key]).glob("*.yaml"))
        if path.name != "kustomization.yaml"
    ]
    stages += sorted(STAGES.glob("*.yaml"))
    kwok = launch(
        "kwok",
        [
            "--kubeconfig", kubeconfig, "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector", "=".join(KWOK_ANNOTATION),
            "--node-ip", "127.0.0.1", "--cidr", "10.244.0.0/16",
            *[arg for path in stages for arg in ("--config", path)],
        ],
    )  # fmt: skip
    api = plane.api_client()
    try:
        core = client.CoreV1Api(api)
        nodes = [KWOK_NODE, *(f"kwok-node-{index}" for index in range(1, scale.nodes))]
        for node in nodes:
            core.create_node(kwok_node(node))
        for index, cidr in enumerate(scale.service_cidrs):
            client.NetworkingV1Api(api).create_service_cidr(
                {"metadata": {"name": f"services-{index}"}, "spec": {"cidrs": [cidr]}}
            )
        # The KServe manager exits unless its CRDs are established and its ConfigMap exists.
        # They come with the seeded etcd; only a changed stack would miss some.
        apply_crds(api, missing_crds(api, env), timeout=60)
        wait_established(api, [crd["metadata"]["name"] for crd in third_party_crds(env)], 60)
        stack.timings["crds"] = time.monotonic() - start
        core.create_namespace({"metadata": {"name": stack.kserve_namespace}})
        core.create_namespaced_config_map(
            stack.kserve_namespace, kserve_config(env, stack.kserve_namespace, kserve_overrides)
        )
        certs = workdir / "kserve-tmp" / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True)
        plane.ca.issue("kserve-webhook-server", server=True).write(certs, "tls")
        probe_port = free_port()
        kserve = launch(
            "kserve-manager",
            [
                "--kubeconfig", kubeconfig,
                "--metrics-addr", f"127.0.0.1:{stack.kserve_metrics_port}",
                "--health-probe-addr", f"127.0.0.1:{probe_port}",
                "--webhook-port", stack.webhook_port,
            ],
            # controller-runtime reads the webhook pair from $TMPDIR/k8s-webhook-server/serving-certs.
            {"POD_NAMESPACE": stack.kserve_namespace, "TMPDIR": str(workdir / "kserve-tmp")},
        )  # fmt: skip
        kcm.wait_ready(lambda: _https_health(kcm_port), 60, "healthy")
        scheduler.wait_ready(lambda: _https_health(scheduler_port), 60, "healthy")
        kwok.wait_ready(
            lambda: all(_node_ready(api, node) for node in nodes), 60, f"managing nodes {nodes}"
        )
        stack.timings["controllers"] = time.monotonic() - start
        kserve.wait_ready(
            lambda: _http_ok(f"http://127.0.0.1:{probe_port}/readyz"), 90, "ready (/readyz)"
        )
        stack.timings["kserve-manager"] = time.monotonic() - start
        registration = client.AdmissionregistrationV1Api(api)
        for hook in kserve_webhooks(env, stack.webhook_port, plane.ca.pair.cert_pem):
            if hook["kind"] == "MutatingWebhookConfiguration":
                registration.create_mutating_webhook_configuration(hook)
            else:
                registration.create_validating_webhook_configuration(hook)
        # The API server picks webhook configurations up through an informer: wait until a
        # server-side dry run of an invalid InferenceService is refused by KServe's validator.
        _wait(lambda: _refused_by_kserve(api, stack.kserve_namespace), 30, "KServe webhooks")
        stack.timings["webhooks"] = time.monotonic() - start
        # Pods need the default ServiceAccount, which the controller-manager creates.
        _wait(lambda: core.read_namespaced_service_account("default", "default"), 30, "default SA")
    finally:
        api.close()


def main(argv: list[str]) -> int:
    """Run the stack until SIGTERM/SIGINT: `python -m tests.support.cluster WORKDIR [API_PORT]`."""
    workdir = Path(argv[0]).resolve()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        with start_cluster(workdir, api_port=int(argv[1]) if len(argv) > 1 else None) as stack:
            ready = {"kubeconfig": str(stack.kubeconfig), "server": stack.plane.server}
            (workdir / "ready.json").write_text(json.dumps({**ready, "timings": stack.timings}))
            print(f"cluster ready in {stack.timings['total']:.1f}s: {ready}", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except BaseException as exc:  # pytest's skip/fail outcomes are BaseExceptions
        if isinstance(exc, SystemExit):
            raise
        print(f"cluster failed to start: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
