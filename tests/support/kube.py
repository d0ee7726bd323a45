"""An envtest-style Kubernetes control plane: real etcd + kube-apiserver on loopback, RBAC on.

By itself no controllers run (no controller-manager, no scheduler, no kubelet): tests play the
controllers' part by writing status through the API, exactly as envtest does for kubebuilder
projects. tests/support/cluster.py starts the real controllers around it (`with_controllers=True`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.support.pki import CertificateAuthority, KeyPair, service_account_signing_key
from tests.support.process import ManagedProcess, free_port, tool

ADMIN_USER = "creditmodel-test-admin"


def kubeconfig_document(
    server: str, ca_pem: bytes, user: dict[str, str], name: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "envtest",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": "envtest", "user": name}}],
        "current-context": name,
    }


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver, with an admin kubeconfig (system:masters)."""

    server: str
    ca: CertificateAuthority
    workdir: Path
    kubeconfig: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def pki(self) -> Path:
        """ca.crt, sa.key/sa.pub (service-account signing) and admin.crt/.key, as files."""
        return self.workdir / "pki"

    def api_client(self, kubeconfig: Path | None = None) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def client_kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig authenticating as `user` (and `groups`) by client certificate."""
        pair = self.ca.issue(user, organizations=groups)
        path = self.workdir / f"kubeconfig-{uuid.uuid4().hex[:8]}"
        document = kubeconfig_document(
            self.server,
            self.ca.pair.cert_pem,
            {
                "client-certificate-data": base64.b64encode(pair.cert_pem).decode(),
                "client-key-data": base64.b64encode(pair.key_pem).decode(),
            },
            user,
        )
        path.write_text(yaml.safe_dump(document))
        return path

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig with a bound token for a ServiceAccount, from the TokenRequest API
        (served by kube-apiserver itself), i.e. the credentials an in-cluster pod would get."""
        core = client.CoreV1Api(self.api_client())
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=["https://kubernetes.default.svc"], expiration_seconds=3600
            )
        )
        token = core.create_namespaced_service_account_token(name, namespace, request).status.token
        path = self.workdir / f"kubeconfig-sa-{namespace}-{name}"
        path.write_text(
            yaml.safe_dump(
                kubeconfig_document(
                    self.server, self.ca.pair.cert_pem, {"token": token}, f"{namespace}-{name}"
                )
            )
        )
        return path


def _https_ok(url: str, context: ssl.SSLContext) -> bool:
    with urllib.request.urlopen(url, context=context, timeout=2) as response:
        return bool(response.status == 200)


@contextlib.contextmanager
def control_plane(
    workdir: Path,
    *,
    with_controllers: bool = False,
    api_port: int | None = None,
    apiserver_args: Sequence[str] = (),
) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver. `with_controllers`: a controller-manager will run, so keep the
    admission plugins that rely on one (ServiceAccount) and enforce PodSecurity as a cluster does.
    `apiserver_args`: extra kube-apiserver flags (e.g. an audit policy and log)."""
    etcd, apiserver = tool("etcd"), tool("kube-apiserver")
    workdir.mkdir(parents=True, exist_ok=True)
    certs = workdir / "pki"
    certs.mkdir()
    ca = CertificateAuthority()
    ca_cert, _ = ca.pair.write(certs, "ca")
    serving_cert, serving_key = ca.issue("kube-apiserver", server=True).write(certs, "apiserver")
    admin: KeyPair = ca.issue(ADMIN_USER, organizations=("system:masters",))
    admin_cert, admin_key = admin.write(certs, "admin")
    sa_private, sa_public = service_account_signing_key()
    (certs / "sa.key").write_bytes(sa_private)
    (certs / "sa.pub").write_bytes(sa_public)

    etcd_port, etcd_peer, api_port = free_port(), free_port(), api_port or free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    server = f"https://127.0.0.1:{api_port}"
    processes: list[ManagedProcess] = []
    try:
        etcd_proc = ManagedProcess(
            "etcd",
            [
                etcd,
                "--data-dir",
                workdir / "etcd",
                "--name",
                "envtest",
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster",
                f"envtest=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes",
                str(4 << 30),
            ],
            workdir,
        )
        processes.append(etcd_proc)
        etcd_proc.wait_ready(
            lambda: urllib.request.urlopen(f"{etcd_url}/health", timeout=2).status == 200,
            timeout=30,
            what="healthy",
        )
        api_proc = ManagedProcess(
            "kube-apiserver",
            [
                apiserver,
                "--etcd-servers",
                etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                str(api_port),
                "--cert-dir",
                certs,
                "--tls-cert-file",
                serving_cert,
                "--tls-private-key-file",
                serving_key,
                "--client-ca-file",
                ca_cert,
                "--authorization-mode",
                "RBAC",
                "--service-account-issuer",
                "https://kubernetes.default.svc",
                "--service-account-key-file",
                certs / "sa.pub",
                "--service-account-signing-key-file",
                certs / "sa.key",
                "--service-cluster-ip-range",
                "10.0.0.0/24",
                "--allow-privileged=true",
                *(
                    # PodSecurity is on by default; named so that nobody turns it off by accident.
                    # No node-lifecycle controller runs (KWOK plays the kubelet), so nothing would
                    # lift the not-ready taint that TaintNodesByCondition puts on a new Node.
                    [
                        *("--enable-admission-plugins", "PodSecurity"),
                        *("--disable-admission-plugins", "TaintNodesByCondition"),
                    ]
                    if with_controllers
                    # No controller-manager: nothing would create default ServiceAccounts for pods.
                    else ["--disable-admission-plugins", "ServiceAccount"]
                ),
                "--storage-media-type",
                "application/json",
                *apiserver_args,
            ],
            workdir,
        )
        processes.append(api_proc)
        context = ssl.create_default_context(cafile=str(ca_cert))
        context.load_cert_chain(str(admin_cert), str(admin_key))
        api_proc.wait_ready(
            lambda: _https_ok(f"{server}/readyz", context), timeout=90, what="ready (/readyz)"
        )
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                kubeconfig_document(
                    server,
                    ca.pair.cert_pem,
                    {
                        "client-certificate-data": base64.b64encode(admin.cert_pem).decode(),
                        "client-key-data": base64.b64encode(admin.key_pem).decode(),
                    },
                    ADMIN_USER,
                )
            )
        )
        plane = ControlPlane(
            server=server, ca=ca, workdir=workdir, kubeconfig=kubeconfig, processes=processes
        )
        _wait_for_default_rbac(plane)
        yield plane
    finally:
        for process in reversed(processes):
            process.stop()


def _wait_for_default_rbac(plane: ControlPlane, timeout: float = 60) -> None:
    """The bootstrap ClusterRoles appear shortly after /readyz; RBAC tests need them."""
    rbac = client.RbacAuthorizationV1Api(plane.api_client())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ApiException):
            rbac.read_cluster_role("cluster-admin")
            return
        time.sleep(0.2)
    raise TimeoutError("bootstrap RBAC roles never appeared")


@dataclass
class Kube:
    """What a test gets: the control plane, an admin client and a fresh namespace."""

    plane: ControlPlane
    namespace: str
    api: client.ApiClient

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def apply_crds(self, documents: Iterable[dict[str, Any]], timeout: float = 30) -> None:
        apply_crds(self.api, documents, timeout)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def apply_crds(
    api: client.ApiClient, documents: Iterable[dict[str, Any]], timeout: float = 30
) -> None:
    """Create or replace CRDs, then wait until each is Established (served by the API)."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for document in documents:
        if document.get("kind") != "CustomResourceDefinition":
            raise ValueError(
                f"apply_crds: {document.get('kind')!r} {document.get('metadata', {}).get('name')!r}"
                " is not a CustomResourceDefinition"
            )
        name = document["metadata"]["name"]
        names.append(name)
        try:
            current = ext.read_custom_resource_definition(name)
            replacement = {
                **document,
                "metadata": {
                    **document["metadata"],
                    "resourceVersion": current.metadata.resource_version,
                },
            }
            ext.replace_custom_resource_definition(name, replacement)
        except ApiException as exc:
            if exc.status != 404:
                raise
            ext.create_custom_resource_definition(document)
    wait_established(api, names, timeout)


def wait_established(api: client.ApiClient, names: Iterable[str], timeout: float = 30) -> None:
    """Wait until each named CRD is Established and its names accepted (served by the API)."""
    ext = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            # Raw JSON: the client's models take seconds to build a megabyte-sized CRD schema.
            raw = ext.read_custom_resource_definition(name, _preload_content=False)
            status = json.loads(raw.data).get("status", {})
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            if (
                conditions.get("Established") == "True"
                and conditions.get("NamesAccepted") == "True"
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established: {conditions}")
            time.sleep(0.1)


def create_namespace(
    api: client.ApiClient, prefix: str = "test", labels: dict[str, str] | None = None
) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    return name


def delete_namespace(api: client.ApiClient, name: str) -> None:
    # No namespace controller runs: deletion only marks it Terminating, which is enough to isolate.
    with contextlib.suppress(ApiException):
        client.CoreV1Api(api).delete_namespace(name)
