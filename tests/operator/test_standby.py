"""Two operator replicas as the chart runs them (`replicaCount: 2`: `--priority=auto`,
`--peering-lifetime`), real processes against the real stack: one leads, the other stands by and
handles nothing; the leader is killed (SIGKILL, no clean hand-over) and the standby takes over
within the peering lease; a leader stopped cleanly (SIGTERM) hands over at once."""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.deploy.chart import MANIFESTS, one, render
from tests.operator.running import GROUP, PLURAL, VERSION
from tests.support.cluster import ClusterKube
from tests.support.kube import Kube
from tests.support.process import ManagedProcess, free_port

pytestmark = pytest.mark.integration

LEASE = 10  # operator.peeringLifetimeSeconds
# kopf's debug line when a replica starts handling CreditModels (its watch leaves the pause).
ACTIVE = "Resuming the watch-stream for creditmodels"
HANDLED = "kopf.objects"  # the logger of every per-object handler line


def chart_operator(kube: Kube, kubeconfig: Path, workdir: Path, name: str) -> ManagedProcess:
    """`creditmodel-operator` with the arguments the chart renders for replicaCount=2 watching
    the test namespace (only the liveness address moved to a free loopback port)."""
    values = [f"operator.watchNamespaces={{{kube.namespace}}}", "replicaCount=2"]
    values += [f"operator.peeringLifetimeSeconds={LEASE}", "operator.verbose=true"]
    container = one(render(values=values), "Deployment")["spec"]["template"]["spec"]["containers"][
        0
    ]
    port = free_port()
    args = [
        f"--liveness=http://127.0.0.1:{port}/healthz" if arg.startswith("--liveness") else arg
        for arg in container["args"]
    ]
    assert "--priority=auto" in args
    assert f"--peering-lifetime={LEASE}" in args
    process = ManagedProcess(
        name,
        [sys.executable, "-m", "creditmodel.operator", *args],
        workdir,
        env={
            "KUBECONFIG": str(kubeconfig),
            "CREDITMODEL_OPERATOR_RESYNC_SECONDS": "1",
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_MAX_ATTEMPTS": "1",
        },
    )
    process.wait_ready(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200,
        timeout=60,
        what="live (/healthz)",
    )
    return process


def log(process: ManagedProcess) -> str:
    return process.log_path.read_text(errors="replace")


def wait_for(probe: object, timeout: float, what: str) -> float:
    """Poll `probe()` until truthy; return the time it took."""
    assert callable(probe)
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if probe():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_standby_takes_over_within_the_lease_when_the_leader_dies(
    crds: ClusterKube, operator_kubeconfig: Path, tmp_path: Path
) -> None:
    kube, kubeconfig = crds, operator_kubeconfig  # the namespace's KopfPeering comes with it
    custom = client.CustomObjectsApi(kube.api)

    def model(name: str) -> None:
        body = yaml.safe_load((MANIFESTS / "samples" / "creditmodel.yaml").read_text())
        body["metadata"] = {"name": name}
        # No store answers: the leader's reconcile ends in Degraded (BundleUnavailable) at once.
        body["spec"]["model"]["bundleURI"] = "s3://nowhere/german-credit/v1"
        custom.create_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, body)

    def handled(name: str) -> bool:
        got = custom.get_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, name)
        return bool(got.get("status", {}).get("conditions"))

    leader = chart_operator(kube, kubeconfig, tmp_path, "leader")
    standby = chart_operator(kube, kubeconfig, tmp_path, "standby")
    try:
        # kopf starts each watch paused until the peering says this replica leads.
        wait_for(lambda: ACTIVE in log(leader), 30, "the leader to watch CreditModels")
        wait_for(lambda: "Keep-alive in 'creditmodel-operator'" in log(standby), 30, "standby")
        assert ACTIVE not in log(standby)
        model("first")
        wait_for(lambda: handled("first"), 30, "the leader to reconcile")
        time.sleep(2)
        assert HANDLED in log(leader)
        assert HANDLED not in log(standby), "the standby handled a CreditModel"

        os.killpg(leader.proc.pid, signal.SIGKILL)  # no clean hand-over: the lease must run out
        leader.proc.wait()
        assert ACTIVE not in log(standby), "the standby woke up before the leader died"
        took = wait_for(lambda: ACTIVE in log(standby), LEASE + 20, "the standby to take over")
        assert took <= LEASE + 2, f"standby took {took:.1f}s to take over (lease {LEASE}s)"
        model("second")
        wait_for(lambda: handled("second"), 30, "the new leader to reconcile")
        print(f"take-over after the leader's SIGKILL: {took:.1f}s (lease {LEASE}s)")

        # A clean shutdown (SIGTERM, as on a rolling update) hands over without waiting for the lease.
        third = chart_operator(kube, kubeconfig, tmp_path, "third")
        wait_for(lambda: "Keep-alive in 'creditmodel-operator'" in log(third), 30, "third")
        assert ACTIVE not in log(third), "a younger replica took over from a live leader"
        os.killpg(standby.proc.pid, signal.SIGTERM)  # kopf leaves the peering object on its way out
        handover = wait_for(lambda: ACTIVE in log(third), LEASE + 20, "the clean hand-over")
        assert handover < LEASE / 2, f"a clean shutdown took {handover:.1f}s to hand over"
        print(f"hand-over after the leader's SIGTERM: {handover:.1f}s")
    finally:
        for process in (standby, leader, *([third] if "third" in locals() else [])):
            process.stop()
        print(f"--- leader ---\n{log(leader)[-5000:]}\n--- standby ---\n{log(standby)[-5000:]}")
