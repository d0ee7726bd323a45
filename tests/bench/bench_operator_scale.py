"""The operator at scale on the real stack (tests/support/cluster.py: kube-apiserver with an audit
log, the controller-manager, the scheduler, KWOK nodes, the KServe v0.20 manager with its webhooks;
MinIO for the bundles): the operator runs as a process with the ServiceAccount bound to
manifests/rbac, its default resync (30 s).

1. N CreditModels (default 1,000) are applied at once, server-side, from 16 threads; time until
   every one reports Ready (the CreditModel's Ready condition, which needs KServe's
   InferenceService Ready, i.e. its Deployment's pod Running and Ready on a KWOK node)
   (target <= 180 s), and the operator's peak RSS (VmHWM) (target <= 300 MB).
2. Steady state: from one resync period after the last Ready, over three resync periods, the
   operator's requests in the API server's audit log (its ServiceAccount's user): writes
   (create/update/patch/delete) per resync (target 0); reads per resync and kopf's peering
   keepalive are shown beside it, and the whole stack's CPU meanwhile: what every second of a
   longer run costs with nothing changing (leases, KWOK's nodes, the HPA controller's failing
   syncs). These CreditModels only serve (no training, no monitoring), so
   since 8f22cc6 nothing passes them in this window but the watch (`rollout.polls`); what a full
   re-read of the children writes (nothing) is tested in tests/operator/test_kserve.py.
3. One canary: the first CreditModel's bundleURI moves to a published v2 (one step at 50%, a 5 s
   interval, analysis against a stand-in Prometheus that reports a healthy canary, 5 s drain):
   seconds until v2 is the stable and v1's InferenceService is deleted, and the operator's writes
   for the other N-1 meanwhile (target 0).
4. The floor (operator_scale_floor.py): the same N InferenceServices created on a fresh stack with
   no operator, timed to all Ready; the operator's time to Ready over it is what the operator adds
   (BENCH_OPERATOR_FLOOR=0 or --no-floor skips it).

The controller-manager and scheduler clients run without client-side rate limits (as kwokctl
starts them), ceil((N + 50) / 100) KWOK nodes hold the pods (64 CPUs each, 500m per predictor),
a ServiceCIDR adds a /16 of Service IPs (the default /24 holds 254 predictor Services), and the
HPA controller syncs every 60 s (there is no metrics API: each sync of each HPA fails and writes
two Events). Wall-clock figures: the load average is reported with them.
`python -m tests.bench.bench_operator_scale --models 50` is the quick variant for development
(`--profile` records py-spy samples of the operator); `BENCH_OPERATOR_MODELS` sets N under
`make bench` (`BENCH=operator_scale BENCH_OPERATOR_MODELS=50 make bench`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config

from creditmodel.core import bundle
from creditmodel.operator import builders
from tests.bench import operator_scale as tools
from tests.bench import operator_scale_floor
from tests.core import bundles as fake
from tests.operator.running import (
    GROUP,
    PLURAL,
    VERSION,
    Operator,
    bind_operator_service_account,
    crd_documents,
)
from tests.support.cluster import Scale, start_cluster
from tests.support.kube import Kube
from tests.support.minio import minio_server

MODELS = int(os.environ.get("BENCH_OPERATOR_MODELS", "1000"))
RESYNC = float(os.environ.get("BENCH_OPERATOR_RESYNC_SECONDS", "30"))
READY_TIMEOUT = float(os.environ.get("BENCH_OPERATOR_READY_TIMEOUT", "0")) or None
"""Default max(600, 4 s x N), a wide bound: KServe v0.20 reconciles InferenceServices one at a time
(10-15 reconciles a second on two quiet cores, two per InferenceService), and other work on a
shared machine slows that several times over."""
FLOOR = os.environ.get("BENCH_OPERATOR_FLOOR", "1") != "0"
"""Also time the same InferenceServices on a fresh stack with no operator (operator_scale_floor)."""
READY_TARGET, RSS_TARGET = 180.0, 300.0
READY_METRIC = "all Ready (CreditModel Ready: KServe Ready)"
PODS_PER_NODE = 100  # a predictor requests 500m CPU: 128 fit a KWOK node (64 CPU)
APPLY_THREADS = 16
DRAIN = 5


def _publish(uri: str, version: str) -> str:
    files = fake.files()
    bundle.publish_bundle(uri, files, fake.manifest(files, version))
    return uri


def _client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = APPLY_THREADS * 2
    return client.ApiClient(configuration)


def _apply(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    """Server-side apply, as `kubectl apply --server-side` does."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        body["metadata"]["name"],
        body,
        field_manager="bench",
        force=True,
        _content_type="application/apply-patch+yaml",
        _preload_content=False,
    )


def _load() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def _log(message: str) -> None:
    print(f"   [operator_scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(
    out_dir: Path,
    models: int = MODELS,
    resync: float = RESYNC,
    profile: bool = False,
    ready_timeout: float | None = READY_TIMEOUT,
    floor: bool = FLOOR,
) -> list[dict[str, Any]]:
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    timeout = ready_timeout or max(600.0, 4.0 * models)
    with contextlib.ExitStack() as stack:
        minio = stack.enter_context(minio_server(out_dir / "minio"))
        stack.enter_context(tools.environment(minio.env()))
        bucket = f"s3://{minio.create_bucket('bench')}"
        v1 = _publish(f"{bucket}/scale/v1", "v1")
        v2 = _publish(f"{bucket}/scale/v2", "v2")
        prometheus = stack.enter_context(tools.healthy_prometheus())
        scale = _scale(models, out_dir)
        _log(f"starting the stack ({scale.nodes} KWOK nodes); load {_load()}")
        cluster = stack.enter_context(start_cluster(out_dir / "cluster", scale=scale))
        api = _client(cluster.kubeconfig)
        stack.callback(api.close)
        namespace = cluster.create_namespace(api, "bench")
        kube = Kube(plane=cluster.plane, namespace=namespace, api=api)
        kube.apply_crds(crd_documents())
        kubeconfig = bind_operator_service_account(kube)
        env = {
            **minio.env(),
            "CREDITMODEL_OPERATOR_RESYNC_SECONDS": f"{resync:g}",
            "CREDITMODEL_OPERATOR_DRAIN_SECONDS": str(DRAIN),
        }
        operator = Operator(kube, kubeconfig, out_dir, env, verbose=False)
        operator.start()
        stack.callback(operator.stop)
        assert operator.process is not None
        pid = operator.process.proc.pid
        watcher = tools.ReadyWatch(api, namespace)
        stack.callback(watcher.close)
        context = Context(api, namespace, watcher, pid, resync, out_dir / "audit" / "audit.log")
        context.user = f"system:serviceaccount:{namespace}:creditmodel-operator"
        context.profile = out_dir / "profile" if profile else None
        context.ready_timeout = timeout
        context.kserve_metrics = f"http://127.0.0.1:{cluster.kserve_metrics_port}/metrics"
        rows = context.measure(models, v1, v2, prometheus)
    if floor:
        seconds, floor_rows = operator_scale_floor.measure(
            out_dir / "kserve-alone",
            _scale(models, out_dir / "kserve-alone"),
            lambda namespace: operator_scale_floor.inferenceservices(
                namespace, _names(models), v1, prometheus
            ),
            _client,
            _log,
            threads=APPLY_THREADS,
            timeout=timeout,
        )
        ours = next(r for r in rows if r["metric"] == READY_METRIC)
        rows += operator_scale_floor.against(ours, seconds, floor_rows)
    return rows


def _scale(models: int, out_dir: Path) -> Scale:
    return Scale(
        nodes=math.ceil((models + 50) / PODS_PER_NODE),
        client_qps=5000,
        service_cidrs=("10.1.0.0/16",),
        apiserver_args=tools.audit_args(out_dir / "audit"),
        # No metrics API here: every HPA sync fails and writes two Events (133/s at 1,000).
        controller_manager_args=("--horizontal-pod-autoscaler-sync-period=60s",),
    )


def _names(models: int) -> list[str]:
    return [f"cm-{index:04d}" for index in range(models)]


class Context:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        watcher: tools.ReadyWatch,
        pid: int,
        resync: float,
        audit_log: Path,
    ) -> None:
        self.api, self.namespace, self.watcher, self.pid = api, namespace, watcher, pid
        self.resync, self.audit_log, self.user = resync, audit_log, ""
        self.custom = client.CustomObjectsApi(api)
        self.memory = tools.Memory(pid)
        self.profile: Path | None = None
        self.ready_timeout = 600.0
        self.kserve_metrics = ""

    def measure(self, models: int, v1: str, v2: str, prometheus: str) -> list[dict[str, Any]]:
        case = f"{models} CreditModels"
        names = _names(models)
        rows = self.ready(case, names, v1, prometheus)
        rows += self.steady(case)
        if models > 1:
            rows += self.canary(case, names[0], v1, v2)
        rows.append(
            {"case": case, "metric": "operator CPU, whole run", "value": tools.cpu_seconds(self.pid),
             "unit": "s"}
        )  # fmt: skip
        return rows

    def ready(self, case: str, names: list[str], v1: str, prometheus: str) -> list[dict[str, Any]]:
        load = _load()
        _log(f"applying {len(names)} CreditModels; load {load}")
        work, cpu = tools.kserve_work(self.kserve_metrics), tools.cpu_by_process()
        own = tools.own_cpu_seconds()
        sampler = tools.ReconcileSampler(self.kserve_metrics)
        wall, started = time.time(), time.monotonic()
        wanted = set(names)
        with tools.profiled(self.pid, self.profile and self.profile.with_suffix(".ready.txt")):
            with ThreadPoolExecutor(APPLY_THREADS) as pool:
                list(pool.map(
                    lambda n: _apply(self.api, self.namespace, tools.creditmodel(n, v1, prometheus)),
                    names))  # fmt: skip
            applied = time.monotonic() - started
            done, ready_at = self.watcher.wait_all(
                wanted,
                started,
                self.ready_timeout,
                lambda count: _log(f"{count} Ready; load {_load()}"),
            )
        elapsed = max(ready_at.values()) if done else time.monotonic() - started
        sampler.close()
        _log(f"{len(ready_at)}/{len(names)} Ready after {elapsed:.1f}s; load {_load()}")
        self.all_ready = done
        peak = self.memory.peak()
        line = tools.timeline(self.api, self.namespace, wall, builders.MODEL_LABEL)
        work = tools.kserve_work(self.kserve_metrics).since(work)
        per_reconcile = (
            sum(work.requests.values()) / work.reconciles if work.reconciles else math.nan
        )
        by_method = ", ".join(f"{m}: {n}" for m, n in work.requests.most_common() if n)
        cpu, own = tools.cpu_by_process() - cpu, tools.own_cpu_seconds() - own
        by_process = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in cpu.most_common())
        by_process += f"; not in the sum: this benchmark's own process {own:.0f} s"
        lag = (statistics.median(line.lags), max(line.lags)) if line.lags else (math.nan,) * 2
        return [
            {"case": case, "metric": "load average (1/5/15 min) at apply", "value": load,
             "unit": ""},
            {"case": case, "metric": f"applied (server-side, {APPLY_THREADS} threads)",
             "value": applied, "unit": "s"},
            {"case": case, "metric": "operator: every InferenceService created",
             "value": line.isvcs_created if line.isvcs_created is not None else math.nan,
             "unit": "s"},
            {"case": case, "metric": READY_METRIC,
             "value": elapsed, "unit": "s", "target": f"<= {READY_TARGET:g} s",
             "ok": done and elapsed <= READY_TARGET},
            {"case": case, "metric": "Ready", "value": len(ready_at), "unit": "objects",
             "target": str(len(names)), "ok": done},
            {"case": case, "metric": "apply -> Ready, median",
             "value": statistics.median(ready_at.values()) if ready_at else math.nan,
             "unit": "s"},
            {"case": case, "metric": "operator: CreditModel Ready after KServe's, median / max",
             "value": f"{lag[0]:.0f} / {lag[1]:.0f}", "unit": "s (1 s resolution)"},
            {"case": case, "metric": "KServe: InferenceService reconciles (1 worker)",
             "value": work.reconciles / elapsed if elapsed else math.nan, "unit": "per s",
             "detail": f"{work.reconciles:.0f} in {elapsed:.0f} s for {len(names)}"
             " InferenceServices"},
            {"case": case, "metric": "KServe: InferenceService reconcile, mean duration",
             "value": work.seconds / work.reconciles * 1000 if work.reconciles else math.nan,
             "unit": "ms", "detail": f"{work.seconds:.0f} s in them: its one worker busy"
             f" {work.seconds / elapsed:.0%} of the time"},
            *sampler.rows(
                case, started, started + (line.isvcs_created or math.nan), started + elapsed
            ),
            {"case": case, "metric": "KServe: API requests per InferenceService reconcile",
             "value": per_reconcile, "unit": "requests",
             "detail": f"the whole manager's requests ({by_method})"},
            {"case": case, "metric": "CPU of the whole stack, apply -> all Ready",
             "value": sum(cpu.values()) / elapsed if elapsed else math.nan,
             "unit": f"cores (of {os.cpu_count()})", "detail": by_process},
            {"case": case, "metric": "CPU of the whole stack per CreditModel, apply -> all Ready",
             "value": sum(cpu.values()) / len(names), "unit": "s"},
            {"case": case, "metric": "operator peak RSS (VmHWM) at Ready", "value": peak,
             "unit": "MB", "target": f"<= {RSS_TARGET:g} MB", "ok": peak <= RSS_TARGET},
        ]  # fmt: skip

    def steady(self, case: str) -> list[dict[str, Any]]:
        periods = 3
        _log(f"settling one resync ({self.resync:g}s), then counting {periods} resyncs")
        time.sleep(self.resync)
        start, cpu = time.time(), tools.cpu_seconds(self.pid)
        stack_cpu = tools.cpu_by_process()
        with tools.profiled(self.pid, self.profile and self.profile.with_suffix(".steady.txt")):
            time.sleep(periods * self.resync)
        end, cpu = time.time(), tools.cpu_seconds(self.pid) - cpu
        stack_cpu = tools.cpu_by_process() - stack_cpu
        requests = tools.audit_requests(self.audit_log, self.user)
        window = [r for r in requests if start <= r.at < end]
        written = [r for r in tools.writes(requests, start, end) if r.resource != tools.PEERING]
        peering = [r for r in tools.writes(requests, start, end) if r.resource == tools.PEERING]
        reads = [r for r in window if r.verb in ("get", "list")]
        _log(f"steady writes: {tools.breakdown(written)}; reads: {tools.breakdown(reads)}")
        peak = self.memory.peak()
        return [
            {"case": case, "metric": f"operator writes per resync (steady, {periods} x "
             f"{self.resync:g} s, audit log)", "value": len(written) / periods, "unit": "requests",
             "target": "0", "ok": self.all_ready and not written,
             "detail": tools.breakdown(written)},
            {"case": case, "metric": "operator reads per resync (steady)",
             "value": len(reads) / periods, "unit": "requests", "detail": tools.breakdown(reads)},
            {"case": case, "metric": "operator CPU per resync (steady)", "value": cpu / periods,
             "unit": "s"},
            {"case": case, "metric": "CPU of the whole stack at steady state (nothing changing)",
             "value": sum(stack_cpu.values()) / (end - start), "unit": f"cores (of {os.cpu_count()})",
             "detail": ", ".join(f"{name} {seconds / (end - start):.2f}"
                                 for name, seconds in stack_cpu.most_common())},
            {"case": case, "metric": "kopf peering keepalive writes per minute",
             "value": len(peering) * 60 / (end - start), "unit": "requests"},
            {"case": case, "metric": "operator peak RSS (VmHWM) at steady state", "value": peak,
             "unit": "MB", "target": f"<= {RSS_TARGET:g} MB", "ok": peak <= RSS_TARGET},
            {"case": case, "metric": "load average (1/5/15 min) at steady state",
             "value": _load(), "unit": ""},
        ]  # fmt: skip

    def _status(self, name: str) -> dict[str, Any]:
        body = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return dict(cast(dict[str, Any], body).get("status") or {})

    def _isvc_exists(self, name: str) -> bool:
        try:
            self.custom.get_namespaced_custom_object(
                "serving.kserve.io", "v1beta1", self.namespace, "inferenceservices", name
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def canary(self, case: str, name: str, v1: str, v2: str) -> list[dict[str, Any]]:
        old = builders.isvc_name(name, v1)
        _log(f"canary: {name} -> v2; load {_load()}")
        wall, started = time.time(), time.monotonic()
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": {"model": {"bundleURI": v2}}}
        )
        promoted_at = None
        deadline = started + 300
        while time.monotonic() < deadline:
            status = self._status(name)
            if promoted_at is None and (status.get("stable") or {}).get("version") == "v2":
                promoted_at = time.monotonic() - started
            if promoted_at is not None and not status.get("canary") and not self._isvc_exists(old):
                break
            time.sleep(0.25)
        else:
            _log(f"canary did not complete: {self._status(name)}")
        completed = time.monotonic() - started
        done = time.monotonic() < deadline
        end = time.time()
        requests = tools.writes(tools.audit_requests(self.audit_log, self.user), wall, end)
        others = [
            r for r in requests if r.resource != tools.PEERING and not tools.concerns(r, name)
        ]
        own = [r for r in requests if tools.concerns(r, name)]
        _log(f"canary writes: own {tools.breakdown(own)}; others {tools.breakdown(others)}")
        idle = case.split()[0]
        return [
            {"case": case, "metric": "canary v1 -> v2: promoted (analysis passed, 1 step)",
             "value": promoted_at if promoted_at is not None else math.nan, "unit": "s"},
            {"case": case, "metric": f"canary v1 -> v2: complete (v1 drained {DRAIN} s, deleted)",
             "value": completed, "unit": "s", "target": "completes", "ok": done},
            {"case": case, "metric": f"operator writes for the other {int(idle) - 1} meanwhile",
             "value": len(others), "unit": "requests", "target": "0", "ok": not others,
             "detail": tools.breakdown(others)},
            {"case": case, "metric": "operator writes for the canary's CreditModel",
             "value": len(own), "unit": "requests", "detail": tools.breakdown(own)},
        ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.bench.bench_operator_scale --models 50 [--resync 10]`: the quick variant."""
    from tests.bench.__main__ import OUT, print_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--models", type=int, default=MODELS)
    parser.add_argument("--resync", type=float, default=RESYNC, help="operator resync seconds")
    parser.add_argument("--out", type=Path, default=OUT / "operator_scale")
    parser.add_argument("--profile", action="store_true", help="py-spy: OUT/profile.*.txt")
    parser.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT, help="seconds")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the InferenceServices without an operator"
    )
    args = parser.parse_args(argv)
    rows = run(
        args.out, args.models, args.resync, args.profile, args.ready_timeout, not args.no_floor
    )
    for row in rows:
        row.setdefault("benchmark", "operator_scale")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print_table(rows)
    return 1 if any(row.get("ok") is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
