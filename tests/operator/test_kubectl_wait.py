"""`kubectl wait --for=condition=... creditmodel/NAME`, as docs/gitops.md shows it, against the
real kube-apiserver and the real CRD, with status objects produced by the operator's state
machine (tests/operator/statuses.py) written through the status subresource."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest
from kubernetes import client

from creditmodel.operator.rollout import CreditModel
from tests.operator import statuses
from tests.operator.factories import BUNDLE_V2
from tests.operator.running import GROUP, PLURAL, VERSION, crd_documents
from tests.support.kube import Kube
from tests.support.process import tool

pytestmark = pytest.mark.integration


class Model:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.custom = client.CustomObjectsApi(kube.api)
        kube.apply_crds(doc for doc in crd_documents() if doc["spec"]["group"] == GROUP)
        body = statuses.new_object()
        body["metadata"] = {"name": "german"}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, body)

    def get(self) -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.kube.namespace, PLURAL, "german"
            )
        )

    def write_status(self, produced: CreditModel) -> None:
        current = self.get()
        current["status"] = statuses.as_object(produced)["status"]
        self.custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, self.kube.namespace, PLURAL, "german", current
        )

    def set_bundle(self, uri: str) -> None:
        patch = {"spec": {"model": {"bundleURI": uri}}}
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.kube.namespace, PLURAL, "german", patch
        )

    def wait(self, condition: str, timeout: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                str(tool("kubectl")),
                "--kubeconfig",
                str(self.kube.kubeconfig),
                "--namespace",
                self.kube.namespace,
                "wait",
                f"--for=condition={condition}",
                "creditmodel/german",
                f"--timeout={timeout}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def finished(process: subprocess.Popen[str], within: float) -> tuple[int, str]:
    out, err = process.communicate(timeout=within)
    return process.returncode, out + err


def still_waiting(process: subprocess.Popen[str], seconds: float = 2) -> bool:
    time.sleep(seconds)
    return process.poll() is None


def test_kubectl_wait_for_ready_follows_the_operator_status(kube: Kube) -> None:
    model = Model(kube)
    waiting = model.wait("Ready", "60s")
    assert still_waiting(waiting), "returned before the operator wrote any status"
    model.write_status(statuses.deploying())
    assert still_waiting(waiting), "Ready=False must not satisfy the wait"
    model.write_status(statuses.serving())
    code, output = finished(waiting, 30)
    assert code == 0, output
    assert "creditmodel.scoring.creditmodel.io/german condition met" in output

    # A spec change: the Ready condition still says True, but for generation 1.
    model.set_bundle(BUNDLE_V2)
    assert model.get()["metadata"]["generation"] == 2
    stale = model.wait("Ready", "3s")
    code, output = finished(stale, 30)
    assert code != 0, "a Ready condition of an older generation satisfied the wait"
    assert "timed out" in output

    # The operator saw generation 2: the canary runs, the stable serves.
    model.write_status(statuses.canary_waiting())
    code, output = finished(model.wait("Ready", "20s"), 30)
    assert code == 0, output
    rollout_done = model.wait("Reconciling=False", "60s")
    stalled = model.wait("Stalled", "60s")
    assert still_waiting(rollout_done)
    assert still_waiting(stalled, 0)
    model.write_status(statuses.rolled_back())
    for process in (rollout_done, stalled):
        code, output = finished(process, 30)
        assert code == 0, output
