"""End to end on kind: train the reference model through a CreditModel, score it through the
Gateway with a V2 client, roll out a second version and see it promoted.

Needs a Docker engine (the conftest skips the tier without one). The session fixture brings the
cluster up with `make kind-up kind-load deploy` (with hack/kind-values.yaml; idempotent; E2E_REUSE=1 skips it for a cluster
that is already up), so `make test-e2e` is the whole story. Written on a machine without Docker:
it has not been run here (see README, "What was not run on this machine").
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from tests.support.process import REPO_ROOT, ManagedProcess, free_port

pytestmark = pytest.mark.e2e

GATEWAY = ("gateway-system", "creditmodel-gateway")
DATA = REPO_ROOT / "training" / "creditmodel" / "training" / "data" / "german_credit.csv"
# hack/kind-up.sh's MinIO; the credentials only exist inside the throwaway cluster.
MINIO_USER = os.environ.get("MINIO_USER", "creditmodel")
MINIO_PASSWORD = os.environ.get("MINIO_PASSWORD", "creditmodel-e2e-secret")
TIMEOUT_TRAIN_AND_SERVE = 30 * 60
TIMEOUT_ROLLOUT = 20 * 60


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    run = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=900, check=False
    )
    if check and run.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{run.stderr}")
    return run.stdout


@pytest.fixture(scope="session")
def cluster() -> None:
    if os.environ.get("E2E_REUSE") != "1":
        subprocess.run(
            [
                "make",
                "--no-print-directory",
                "kind-up",
                "kind-load",
                "deploy",
                "DEPLOY_ARGS=--values hack/kind-values.yaml",
            ],
            cwd=REPO_ROOT,
            check=True,
            timeout=60 * 60,
        )
    kubectl("-n", "creditmodel-system", "rollout", "status", "deployment/creditmodel-operator")


@contextlib.contextmanager
def port_forward(namespace: str, target: str, port: int, workdir: Path) -> Iterator[int]:
    local = free_port()
    process = ManagedProcess(
        f"port-forward-{target.replace('/', '-')}",
        ["kubectl", "-n", namespace, "port-forward", target, f"{local}:{port}"],
        workdir,
    )
    try:
        process.wait_ready(
            lambda: b"Forwarding from" in process.log_path.read_bytes(),
            timeout=60,
            what="forwarding",
        )
        yield local
    finally:
        process.stop()


def gateway_service() -> str:
    """Envoy Gateway names the data-plane Service after the Gateway with a hash; find it by label."""
    out = kubectl(
        "-n",
        "envoy-gateway-system",
        "get",
        "service",
        "-l",
        f"gateway.envoyproxy.io/owning-gateway-name={GATEWAY[1]},"
        f"gateway.envoyproxy.io/owning-gateway-namespace={GATEWAY[0]}",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    )
    assert out, "no Envoy data-plane Service for the Gateway"
    return f"service/{out}"


def creditmodel(namespace: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        kubectl("-n", namespace, "get", "creditmodel", name, "-o", "json")
    )
    return data


def patch_spec(namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = json.dumps({"spec": spec})
    kubectl("-n", namespace, "patch", "creditmodel", name, "--type=merge", "-p", body)


def wait_for(predicate: Any, timeout: float, what: str, describe: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(5)
    raise AssertionError(f"timed out waiting for {what}:\n{describe()}")


@dataclass
class Scorer:
    """A V2 client (tritonclient) pointed at the Gateway, with the CreditModel's hostname."""

    url: str
    host: str
    model: str

    def client(self) -> Any:
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(url=self.url, network_timeout=30)

    def score(self, rows: list[dict[str, str]]) -> dict[str, Any]:
        import tritonclient.http as httpclient

        client = self.client()
        headers = {"Host": self.host}
        metadata = client.get_model_metadata(self.model, headers=headers)
        inputs = []
        for spec in metadata["inputs"]:
            column = [row[spec["name"]] for row in rows]
            if spec["datatype"] == "BYTES":
                array = np.array([value.encode() for value in column], dtype=np.object_)
            elif spec["datatype"] == "INT64":
                array = np.array([int(value) for value in column], dtype=np.int64)
            else:
                array = np.array([float(value) for value in column], dtype=np.float32)
            tensor = httpclient.InferInput(spec["name"], [len(rows)], spec["datatype"])
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [
            httpclient.InferRequestedOutput(name)
            for name in ("probability", "score", "reason_codes")
        ]
        result = client.infer(self.model, inputs, outputs=outputs, headers=headers)
        response = result.get_response()
        return {
            "model_version": response.get("model_version"),
            "probability": result.as_numpy("probability"),
            "score": result.as_numpy("score"),
            "reason_codes": result.as_numpy("reason_codes"),
        }


def rows(count: int) -> list[dict[str, str]]:
    with DATA.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return [row for _, row in zip(range(count), reader, strict=False)]


@pytest.mark.usefixtures("cluster")
def test_train_serve_canary_promote(tmp_path: Path) -> None:
    namespace = f"e2e-{uuid.uuid4().hex[:6]}"
    name = "german-credit"
    host = f"{name}.{namespace}.creditmodel.test"
    kubectl("create", "namespace", namespace)
    kubectl(
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "creditmodel-s3",
        f"--from-literal=AWS_ACCESS_KEY_ID={MINIO_USER}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={MINIO_PASSWORD}",
    )
    # The training data goes to MinIO the way a data team would put it there.
    with port_forward("storage", "service/minio", 9000, tmp_path) as port:
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id=MINIO_USER,
            aws_secret_access_key=MINIO_PASSWORD,
            region_name="us-east-1",
        )
        s3.upload_file(str(DATA), "creditmodel-data", f"{namespace}/german_credit.csv")
        # creditmodel-train picks up <data stem>.features.json beside the data.
        s3.upload_file(
            str(DATA.with_suffix(".features.json")),
            "creditmodel-data",
            f"{namespace}/german_credit.features.json",
        )

    spec = {
        "apiVersion": "scoring.creditmodel.io/v1alpha1",
        "kind": "CreditModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {},
            "training": {
                "dataURI": f"s3://creditmodel-data/{namespace}/german_credit.csv",
                "target": "credit_risk",
                "positiveLabel": "bad",
                "outputURI": f"s3://creditmodel-bundles/{namespace}/{name}",
            },
            "predictor": {"minReplicas": 1, "maxReplicas": 2},
            "rollout": {
                "router": "gatewayAPI",
                "gateway": {"name": GATEWAY[1], "namespace": GATEWAY[0]},
                "hostnames": [host],
                "steps": [50],
                "intervalSeconds": 30,
                "analysis": {
                    "prometheusURL": "http://prometheus-operated.monitoring.svc:9090",
                    "windowSeconds": 60,
                    "minRequests": 20,
                },
            },
            "storage": {
                "endpoint": "http://minio.storage.svc:9000",
                "secretName": "creditmodel-s3",
            },
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(spec))

    def describe() -> str:
        return kubectl("-n", namespace, "describe", "creditmodel", name, check=False)

    # 1. Initial training Job, then the first version goes straight to stable and Ready. A run
    # that ends without a bundle fails the test at once with the operator's reason. The feature
    # spec uploaded beside the data makes age and the other sensitive columns audit-only; without
    # it the fairness gates fail (measured: exit 3, GatesFailed).
    def trained_or_ready() -> bool:
        status = creditmodel(namespace, name).get("status", {})
        last = (status.get("training") or {}).get("lastResult") or {}
        if last.get("result") in ("Failed", "GatesFailed"):
            raise AssertionError(f"training ended {last['result']}: {last.get('message')}")
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return conditions.get("Ready") == "True"

    wait_for(trained_or_ready, TIMEOUT_TRAIN_AND_SERVE, "the first version to be Ready", describe)
    first = creditmodel(namespace, name)["status"]
    assert first["training"]["lastResult"]["result"] == "Succeeded", describe()
    first_version = first["stable"]["version"]
    table = kubectl("-n", namespace, "get", "creditmodels")
    assert first_version in table

    # 2. Scores through the Gateway with a V2 client.
    with port_forward("envoy-gateway-system", gateway_service(), 80, tmp_path) as port:
        scorer = Scorer(url=f"127.0.0.1:{port}", host=host, model=name)
        result = scorer.score(rows(8))
        assert result["probability"].shape == (8,)
        assert ((result["probability"] >= 0) & (result["probability"] <= 1)).all()
        assert result["score"].dtype == np.int32
        assert result["reason_codes"].shape == (8, 4)

        # 3. A second version: a scheduled retrain; traffic keeps flowing so the canary analysis
        # has requests to judge; the operator promotes it after its single 50% step.
        patch_spec(namespace, name, {"training": {"scheduleSeconds": 60, "seed": 7}})
        stop = threading.Event()
        seen_versions: set[str] = set()
        errors: list[BaseException] = []

        def traffic() -> None:
            while not stop.is_set():
                try:
                    seen_versions.add(str(scorer.score(rows(4))["model_version"]))
                except Exception as error:  # recorded, asserted below
                    errors.append(error)
                time.sleep(0.2)

        worker = threading.Thread(target=traffic, daemon=True)
        worker.start()
        try:
            wait_for(
                lambda: (creditmodel(namespace, name)["status"].get("canary") or {}).get("version"),
                TIMEOUT_TRAIN_AND_SERVE,
                "a canary",
                describe,
            )
            # Stop the schedule so that exactly one more version is rolled out.
            patch_spec(namespace, name, {"training": {"scheduleSeconds": 0}})
            wait_for(
                lambda: creditmodel(namespace, name)["status"].get("stable", {}).get("version")
                not in (None, first_version)
                and not creditmodel(namespace, name)["status"].get("canary"),
                TIMEOUT_ROLLOUT,
                "promotion of the second version",
                describe,
            )
        finally:
            stop.set()
            worker.join(timeout=60)
        status = creditmodel(namespace, name)["status"]
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions["Ready"] == "True", describe()
        assert status["canaryWeight"] in (0, None)
        # Clients saw both versions during the split, and no request failed.
        assert len(seen_versions) >= 2, seen_versions
        assert not errors, errors[:3]
        after = scorer.score(rows(2))
        assert after["model_version"] == status["stable"]["version"]
    kubectl("delete", "namespace", namespace, "--wait=false")
