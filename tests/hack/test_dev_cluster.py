"""`hack/dev-cluster.sh up` (make dev-cluster) starts the real stack for people and writes a
kubeconfig that works; `down` (make dev-cluster-down) leaves no process of it behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.support.process import REPO_ROOT, tool

pytestmark = pytest.mark.integration

STACK = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kserve-manager",
)


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in argv:
            found.append(argv)
    return found


def script(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "hack/dev-cluster.sh", command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_up_serves_the_stack_and_down_stops_all_of_it(tmp_path: Path) -> None:
    for name in STACK:
        tool(name)
    workdir = tmp_path / "dev-cluster"
    env = {**os.environ, "DEV_CLUSTER_DIR": str(workdir)}
    up = script("up", env)
    try:
        log = (workdir / "cluster.log").read_text() if (workdir / "cluster.log").exists() else ""
        assert up.returncode == 0, f"{up.stderr}\n{log}"
        assert f"export KUBECONFIG={workdir}/kubeconfig" in up.stdout
        api = config.new_client_from_config(config_file=str(workdir / "kubeconfig"))
        (node,) = client.CoreV1Api(api).list_node().items
        assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
        webhooks = client.AdmissionregistrationV1Api(api).list_validating_webhook_configuration()
        assert "inferenceservice.serving.kserve.io" in {w.metadata.name for w in webhooks.items}
        api.close()
        running = processes_mentioning(str(workdir))
        for name in STACK:
            assert any(f"/{name} " in argv for argv in running), f"no {name} in {running}"
        again = script("up", env)
        assert again.returncode == 0
        assert "already running" in again.stderr
    finally:
        down = script("down", env)
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(str(workdir)) == []
