"""The floor under the operator's time to Ready: the InferenceServices the operator writes for N
CreditModels, created straight on a fresh stack (the same Scale, KServe and KWOK), with no operator
and no CreditModel. A CreditModel is Ready only once KServe reports its InferenceService Ready,
and KServe v0.20 reconciles InferenceServices with one worker, so no operator design brings N
CreditModels to Ready sooner than this: what the operator adds is its time minus this one."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client

from creditmodel.operator import builders
from creditmodel.operator.model import Spec
from creditmodel.operator.patches import without_none
from creditmodel.operator.settings import OperatorSettings
from creditmodel.operator.status import VersionRef
from tests.bench import operator_scale as tools
from tests.support.cluster import Scale, start_cluster

ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")


def _create(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    """A create, as the operator makes it."""
    group, version, plural = ISVC
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, namespace, plural, body, _preload_content=False
    )


def measure(
    out_dir: Path,
    scale: Scale,
    inferenceservices: Callable[[str], list[dict[str, Any]]],
    connect: Callable[[Path], client.ApiClient],
    log: Callable[[str], None],
    *,
    threads: int,
    timeout: float,
) -> tuple[float | None, list[dict[str, Any]]]:
    """Create `inferenceservices(namespace)` from `threads` threads on a fresh stack: (seconds
    until every one is Ready, or None on timeout; the rows of the table)."""
    with contextlib.ExitStack() as stack:
        log("KServe alone: starting a fresh stack")
        cluster = stack.enter_context(start_cluster(out_dir / "cluster", scale=scale))
        api = connect(cluster.kubeconfig)
        stack.callback(api.close)
        namespace = cluster.create_namespace(api, "bench")
        bodies = inferenceservices(namespace)
        case = f"{len(bodies)} InferenceServices, no operator (KServe alone)"
        watcher = tools.ReadyWatch(api, namespace, ISVC)
        stack.callback(watcher.close)
        metrics = f"http://127.0.0.1:{cluster.kserve_metrics_port}/metrics"
        work, cpu = tools.kserve_work(metrics), tools.cpu_by_process()
        own = tools.own_cpu_seconds()
        log(f"KServe alone: creating {len(bodies)} InferenceServices")
        sampler = tools.ReconcileSampler(metrics)
        stack.callback(sampler.close)
        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda body: _create(api, namespace, body), bodies))
        created = time.monotonic()
        wanted = {body["metadata"]["name"] for body in bodies}
        done, ready_at = watcher.wait_all(
            wanted, started, timeout, lambda count: log(f"KServe alone: {count} Ready")
        )
        elapsed = max(ready_at.values()) if done else time.monotonic() - started
        sampler.close()
        log(f"KServe alone: {len(ready_at)}/{len(bodies)} Ready after {elapsed:.1f}s")
        work = tools.kserve_work(metrics).since(work)
        cpu, own = tools.cpu_by_process() - cpu, tools.own_cpu_seconds() - own
        by_process = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in cpu.most_common())
        by_process += f"; not in the sum: this benchmark's own process {own:.0f} s"
        rows = [
            {"case": case, "metric": "all Ready (KServe's Ready condition)", "value": elapsed,
             "unit": "s", "target": str(len(bodies)) + " Ready", "ok": done},
            {"case": case, "metric": "KServe: InferenceService reconciles (1 worker)",
             "value": work.reconciles / elapsed if elapsed else math.nan, "unit": "per s",
             "detail": f"{work.reconciles:.0f} in {elapsed:.0f} s"},
            {"case": case, "metric": "KServe: InferenceService reconcile, mean duration",
             "value": work.seconds / work.reconciles * 1000 if work.reconciles else math.nan,
             "unit": "ms", "detail": f"its one worker busy {work.seconds / elapsed:.0%} of the time"},
            *sampler.rows(case, started, created, started + elapsed),
            {"case": case, "metric": "CPU of the whole stack, create -> all Ready",
             "value": sum(cpu.values()) / elapsed if elapsed else math.nan,
             "unit": f"cores (of {os.cpu_count()})", "detail": by_process},
            # Between runs of the same tool versions, the work per InferenceService is the same:
            # a rise here is the host running it slower.
            {"case": case, "metric": "CPU of the whole stack per InferenceService, create -> all"
             " Ready", "value": sum(cpu.values()) / len(bodies), "unit": "s"},
        ]  # fmt: skip
        return (elapsed if done else None), rows
    raise AssertionError("unreachable")


def inferenceservices(
    namespace: str, names: list[str], bundle_uri: str, prometheus: str
) -> list[dict[str, Any]]:
    """The InferenceService the operator writes for each CreditModel's first version, without
    its owner reference (no CreditModel exists: the garbage collector would delete it)."""
    settings = OperatorSettings()
    bodies = []
    for name in names:
        spec = Spec.model_validate(tools.creditmodel(name, bundle_uri, prometheus)["spec"])
        spec = spec.with_default_images(settings.predictor_image, settings.training_image)
        owner = builders.Owner(name, namespace, uid="")
        version = VersionRef.model_validate({"version": "v1", "bundleURI": bundle_uri})
        body = builders.build_inferenceservice(owner, spec, version)
        body["metadata"].pop("ownerReferences", None)
        bodies.append(without_none(body))  # as the operator's create sends it
    return bodies


def against(
    ours: dict[str, Any], seconds: float | None, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The floor's rows (`measure`), and `ours` (the operator's all-Ready row) over the floor."""
    over = ours["value"] / seconds if seconds and ours.get("ok") is not None else math.nan
    return [
        *rows,
        {"case": ours["case"], "metric": "all Ready, over KServe alone", "value": over,
         "unit": "x", "detail": f"{ours['value'] - (seconds or math.nan):.0f} s more than the"
         " same InferenceServices created with no operator"},
    ]  # fmt: skip
