"""Fixtures for the real components (kube-apiserver + etcd, the full `cluster` stack with KServe,
MinIO, Prometheus) and the test tiers.

Every test carries exactly one tier marker: `unit`, `integration` or `e2e`. A real component that
cannot start skips the test with the reason locally and fails it under CI=true.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.cluster import Cluster, ClusterKube, start_cluster
from tests.support.kube import ControlPlane, Kube, control_plane, create_namespace, delete_namespace
from tests.support.minio import MinioServer, S3Bucket, minio_server
from tests.support.prometheus import PrometheusServer, prometheus_server

TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tiers = [name for name in TIERS if item.get_closest_marker(name)]
        if len(tiers) != 1:
            raise pytest.UsageError(
                f"{item.nodeid}: needs exactly one tier marker of {TIERS}, has {tiers}"
            )


def docker_engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return (
        subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode
        == 0
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    # kind needs a Docker engine; this is the one real component allowed to skip under CI.
    if item.get_closest_marker("e2e") and not docker_engine_available():
        pytest.skip("e2e needs a Docker engine for kind; none is running on this machine")


# --- Kubernetes -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kube_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    workdir = tmp_path_factory.mktemp("kube")
    with control_plane(workdir) as plane:
        yield plane
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def kube(kube_control_plane: ControlPlane) -> Iterator[Kube]:
    """Admin access to the control plane and a fresh namespace for this test."""
    api = kube_control_plane.api_client()
    namespace = create_namespace(api)
    try:
        yield Kube(plane=kube_control_plane, namespace=namespace, api=api)
    finally:
        delete_namespace(api, namespace)
        api.close()


@pytest.fixture(scope="session")
def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The full stack (controllers, scheduler, KWOK, KServe with webhooks), once per test run."""
    workdir = tmp_path_factory.mktemp("cluster")
    with start_cluster(workdir) as stack:
        yield stack
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def cluster(cluster_stack: Cluster) -> Iterator[ClusterKube]:
    """Like `kube`, on the full stack: a fresh namespace (PodSecurity baseline) for this test."""
    api = cluster_stack.api_client()
    namespace = cluster_stack.create_namespace(api)
    try:
        yield ClusterKube(
            plane=cluster_stack.plane, namespace=namespace, api=api, cluster=cluster_stack
        )
    finally:
        delete_namespace(api, namespace)
        api.close()


# --- S3 ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    workdir = tmp_path_factory.mktemp("minio")
    with minio_server(workdir) as server:
        yield server
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def s3(minio: MinioServer, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A fresh bucket, with this process's S3 environment pointing at it (as a pod's would)."""
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return S3Bucket(server=minio, bucket=minio.create_bucket())


# --- Prometheus -------------------------------------------------------------------------------------


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Factory: start a Prometheus scraping the given `host:port` targets every second, with\n    optional target labels."""
    with ExitStack() as stack:
        counter = iter(range(1000))

        def start(
            targets: Sequence[str], interval: str = "1s", labels: Mapping[str, str] | None = None
        ) -> PrometheusServer:
            workdir = tmp_path / f"prometheus-{next(counter)}"
            return stack.enter_context(prometheus_server(workdir, targets, interval, labels))

        yield start
