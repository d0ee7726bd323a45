"""CreditModel operator at scale, against a real kube-apiserver + etcd, the operator running as a
process with the least-privilege ServiceAccount:

- apply -> InferenceService created: latency per CreditModel (target <= 2 s);
- 200 CreditModels reconciled to Ready (the bench plays KServe: it marks each InferenceService
  Ready as it appears) (target <= 60 s), with the operator's RSS afterwards (target <= 300 MB).

Bundles are the embedded reference bundle on local disk, so storage is not what is measured.
"""

from __future__ import annotations

import os
import shutil
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from creditmodel.operator import builders
from tests.operator.running import (
    GROUP,
    PLURAL,
    VERSION,
    Api,
    bind_operator_service_account,
    crd_documents,
    running_operator,
)
from tests.support.kube import Kube, control_plane, create_namespace
from tests.support.process import REPO_ROOT

BUNDLE = str(REPO_ROOT / "models" / "german-credit")
LATENCY_SAMPLES = 20
SCALE = 200


def creditmodel(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CreditModel",
        "metadata": {"name": name},
        "spec": {"model": {"bundleURI": BUNDLE}, "rollout": {"gateway": {"name": "gw"}}},
    }


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_object_seconds(api: Api) -> dict[str, list[float]]:
    """Per CreditModel: creation -> child created, and creation -> Ready (1 s resolution)."""

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    isvcs = {
        isvc["metadata"]["labels"][builders.MODEL_LABEL]: at(isvc["metadata"]["creationTimestamp"])
        for isvc in api.isvcs().values()
    }
    result: dict[str, list[float]] = {"child": [], "ready": []}
    items = api.custom.list_namespaced_custom_object(GROUP, VERSION, api.namespace, PLURAL)["items"]
    for item in items:
        name, created = item["metadata"]["name"], at(item["metadata"]["creationTimestamp"])
        if not name.startswith("scale-"):
            continue
        if name in isvcs:
            result["child"].append((isvcs[name] - created).total_seconds())
        for condition in item.get("status", {}).get("conditions", []):
            if condition["type"] == "Ready" and condition["status"] == "True":
                result["ready"].append(
                    (at(condition["lastTransitionTime"]) - created).total_seconds()
                )
    return result


def _apply_latencies(api: Api) -> list[float]:
    latencies = []
    for index in range(LATENCY_SAMPLES):
        name = f"latency-{index}"
        started = time.perf_counter()
        api.create_model(creditmodel(name))
        while not any(n.startswith(f"{name}-") for n in api.isvcs()):
            if time.perf_counter() - started > 30:
                raise TimeoutError(f"no InferenceService for {name} after 30s")
            time.sleep(0.01)
        latencies.append(time.perf_counter() - started)
    return latencies


class FakeKServe(threading.Thread):
    """Marks every InferenceService Ready as soon as it is created (a KServe controller's part)."""

    def __init__(self, api: Api) -> None:
        super().__init__(daemon=True)
        self.api, self.stop = api, threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=8)

    def run(self) -> None:
        custom = client.CustomObjectsApi(self.api.kube.api)
        stream = watch.Watch()
        for event in stream.stream(
            custom.list_namespaced_custom_object,
            "serving.kserve.io",
            "v1beta1",
            self.api.namespace,
            "inferenceservices",
            timeout_seconds=120,
        ):
            if self.stop.is_set():
                break
            obj = event["object"]
            if event["type"] == "ADDED" and not obj.get("status"):
                # In parallel, as a controller with several workers: the bench measures the
                # operator, not how fast one thread can write 200 statuses.
                self.pool.submit(self.api.mark_isvc_ready, obj["metadata"]["name"])
        stream.stop()
        self.pool.shutdown()


def _all_ready(api: Api, prefix: str) -> int:
    items = api.custom.list_namespaced_custom_object(GROUP, VERSION, api.namespace, PLURAL)["items"]
    return sum(
        1
        for item in items
        if item["metadata"]["name"].startswith(prefix)
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in item.get("status", {}).get("conditions", [])
        )
    )


def run(out_dir: Path) -> list[dict[str, Any]]:
    shutil.rmtree(out_dir, ignore_errors=True)  # etcd data and certificates of a previous run
    out_dir.mkdir(parents=True)
    with control_plane(out_dir / "kube") as plane:
        api_client = plane.api_client()
        kube = Kube(plane=plane, namespace=create_namespace(api_client, "bench"), api=api_client)
        kube.apply_crds(crd_documents())
        kubeconfig = bind_operator_service_account(kube)
        api = Api(kube)
        # Default resync (30 s): readiness reaches the operator through its watch, not polling.
        env = {"CREDITMODEL_OPERATOR_RESYNC_SECONDS": "30"}
        with running_operator(kube, kubeconfig, out_dir, env, verbose=False) as operator:
            latencies = _apply_latencies(api)
            kserve = FakeKServe(api)
            kserve.start()
            started = time.perf_counter()
            for index in range(SCALE):
                api.create_model(creditmodel(f"scale-{index}"))
            created = time.perf_counter() - started
            ready = 0
            while ready < SCALE and time.perf_counter() - started < 180:
                time.sleep(0.5)
                ready = _all_ready(api, "scale-")
            elapsed = time.perf_counter() - started
            kserve.stop.set()
            per_object = _per_object_seconds(api)
            assert operator.process is not None
            rss = _rss_mb(operator.process.proc.pid)
            cpu = _cpu_seconds(operator.process.proc.pid)
    p50, worst = statistics.median(latencies), max(latencies)
    return [
        {"case": "apply->isvc", "metric": "p50", "value": p50, "unit": "s", "target": "<= 2 s",
         "ok": p50 <= 2},
        {"case": "apply->isvc", "metric": f"max of {LATENCY_SAMPLES}", "value": worst, "unit": "s",
         "target": "<= 2 s", "ok": worst <= 2},
        {"case": f"{SCALE} CreditModels", "metric": "created (API writes)", "value": created,
         "unit": "s"},
        {"case": f"{SCALE} CreditModels", "metric": "all Ready", "value": elapsed, "unit": "s",
         "target": "<= 60 s", "ok": ready == SCALE and elapsed <= 60},
        {"case": f"{SCALE} CreditModels", "metric": "Ready", "value": ready, "unit": "objects",
         "target": f"{SCALE}", "ok": ready == SCALE},
        *(
            {"case": f"{SCALE} CreditModels", "metric": f"per object: created->{kind} {q}",
             "value": statistics.quantiles(values, n=20)[index], "unit": "s"}
            for kind, values in per_object.items() if len(values) > 1
            for q, index in (("p50", 9), ("p95", 18))
        ),
        {"case": "whole run", "metric": "operator CPU", "value": cpu, "unit": "s"},
        {"case": f"{SCALE} CreditModels", "metric": "operator RSS", "value": rss, "unit": "MB",
         "target": "<= 300 MB", "ok": rss <= 300},
    ]  # fmt: skip
