"""Instruments of the operator-at-scale benchmark (tests/bench/bench_operator_scale.py): the API
server's audit policy and log reader (the operator's requests, by verb and object), a watch that
records when each CreditModel first reports Ready, the operator's memory from /proc, and a stand-in
Prometheus answering the canary analysis queries with a healthy canary."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlparse

import yaml
from kubernetes import client, watch

from tests.operator.running import GROUP, PLURAL, VERSION
from tests.support.kube import load_yaml_documents
from tests.support.process import REPO_ROOT

WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})
PEERING = "kopfpeerings"
"""kopf's peering keepalive: a constant trickle per operator, not per CreditModel or resync."""


def audit_args(workdir: Path) -> tuple[str, ...]:
    """kube-apiserver flags logging, at Metadata level, every request made by a ServiceAccount
    (only the operator authenticates as one here: the controllers and the bench use certificates)."""
    workdir.mkdir(parents=True, exist_ok=True)
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived", "ResponseStarted"],
        "rules": [
            {  # an Event's name is generated: its body names the object it is about
                "level": "Request",
                "userGroups": ["system:serviceaccounts"],
                "verbs": ["create", "update", "patch"],
                "resources": [{"group": "", "resources": ["events"]}],
            },
            {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
            {"level": "None"},
        ],
    }
    (workdir / "audit-policy.yaml").write_text(yaml.safe_dump(policy))
    return (
        f"--audit-policy-file={workdir / 'audit-policy.yaml'}",
        f"--audit-log-path={workdir / 'audit.log'}",
        "--audit-log-format=json",
        "--audit-log-maxsize=0",  # never rotate: the reader keeps one file
    )


def _at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Request:
    at: float  # wall clock (epoch seconds) the API server received it
    user: str
    verb: str
    resource: str
    subresource: str
    name: str  # the object's, or for an Event the object it is about
    code: int

    @property
    def what(self) -> str:
        sub = f"/{self.subresource}" if self.subresource else ""
        return f"{self.verb} {self.resource}{sub}"


def audit_requests(log: Path, user: str) -> list[Request]:
    requests = []
    with log.open() as lines:
        for line in lines:
            event = json.loads(line)
            if event.get("user", {}).get("username") != user:
                continue
            ref = event.get("objectRef") or {}
            about = ((event.get("requestObject") or {}).get("involvedObject") or {}).get("name")
            requests.append(
                Request(
                    _at(event["requestReceivedTimestamp"]),
                    user,
                    event["verb"],
                    ref.get("resource", ""),
                    ref.get("subresource", ""),
                    about or ref.get("name", ""),
                    int((event.get("responseStatus") or {}).get("code", 0)),
                )
            )
    return requests


def writes(requests: list[Request], start: float, end: float) -> list[Request]:
    return [r for r in requests if start <= r.at < end and r.verb in WRITES]


def breakdown(requests: list[Request]) -> str:
    counts = Counter(r.what for r in requests)
    return ", ".join(f"{what}: {n}" for what, n in counts.most_common()) or "none"


def concerns(request: Request, model: str) -> bool:
    """Whether a request touched `model` or one of its children (`<model>-...`) or Events
    (`<model>.<suffix>`); names are zero-padded to one length, so no model prefixes another."""
    name = request.name
    return name == model or name.startswith((f"{model}-", f"{model}."))


def _ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class ReadyWatch:
    """The monotonic time at which each CreditModel (or other custom resource with a Ready
    condition) of the namespace was first seen Ready, from a watch opened before the bench applies
    anything (no polling of a thousand objects)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        resource: tuple[str, str, str] = (GROUP, VERSION, PLURAL),
    ) -> None:
        self.custom = client.CustomObjectsApi(api)
        group, version, plural = resource
        self.args = (group, version, namespace, plural)
        listed = cast(dict[str, Any], self.custom.list_namespaced_custom_object(*self.args))
        self.resource_version = listed["metadata"]["resourceVersion"]
        self.ready_at: dict[str, float] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.changed = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self.custom.list_namespaced_custom_object,
                    *self.args,
                    resource_version=self.resource_version,
                    timeout_seconds=30,
                ):
                    obj = event["object"]
                    name = obj["metadata"]["name"]
                    self.resource_version = obj["metadata"]["resourceVersion"]
                    with self.changed:
                        self.latest[name] = obj
                        if _ready(obj) and name not in self.ready_at:
                            self.ready_at[name] = time.monotonic()
                        self.changed.notify_all()
                    if self.stop.is_set():
                        break

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def wait_all(
        self, wanted: set[str], started: float, timeout: float, progress: Callable[[int], None]
    ) -> tuple[bool, dict[str, float]]:
        """Until every name in `wanted` is Ready or `timeout` seconds after `started` (monotonic),
        reporting the count Ready every 30 s: (all Ready, seconds from `started` to each one's
        Ready)."""
        deadline = started + timeout
        while not (
            done := self.wait(
                lambda: wanted <= set(self.ready_at),
                min(30.0, max(deadline - time.monotonic(), 0)),
            )
        ):
            if time.monotonic() >= deadline:
                break
            progress(len(self.ready_at))
        return done, {n: t - started for n, t in self.ready_at.items() if n in wanted}

    def close(self) -> None:
        self.stop.set()
        self.thread.join(35)


@dataclass
class Memory:
    """The operator's resident memory now (VmRSS) and at its highest so far (VmHWM)."""

    pid: int

    def _field(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {key} for pid {self.pid}")

    def rss(self) -> float:
        return self._field("VmRSS")

    def peak(self) -> float:
        return self._field("VmHWM")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


BUCKETS = {"550": 300.0, "600": 700.0, "+Inf": 1000.0}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        expr = parse_qs(urlparse(self.path).query).get("query", [""])[0]
        now = time.time()
        if expr.startswith("histogram_quantile"):
            result = [{"metric": {}, "value": [now, "0.01"]}]
        elif "sum by (le)" in expr:
            result = [{"metric": {"le": le}, "value": [now, str(v)]} for le, v in BUCKETS.items()]
        else:  # requests and successes in the window
            result = [{"metric": {}, "value": [now, "1000"]}]
        body = json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@contextlib.contextmanager
def healthy_prometheus() -> Iterator[str]:
    """A stand-in for Prometheus's /api/v1/query: every canary looks healthy (1,000 requests, all
    successful, p99 10 ms, the same score histogram as the stable: PSI 0), so the analysis passes
    and the rollout proceeds on the operator's own clock. What the bench measures is the operator,
    not the analysis (tests/operator/test_canary_analysis.py runs it against a real Prometheus)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class ControllerWork:
    """What the KServe manager's InferenceService controller did, from its controller-runtime
    metrics: reconciles, seconds spent in them, API requests of the whole manager by method. Its
    controller has one worker in v0.20 (`"worker count":1` in its log)."""

    reconciles: float
    seconds: float
    requests: Counter[str]

    def since(self, before: ControllerWork) -> ControllerWork:
        return ControllerWork(
            self.reconciles - before.reconciles,
            self.seconds - before.seconds,
            Counter({m: n - before.requests[m] for m, n in self.requests.items()}),
        )


def kserve_work(url: str, controller: str = "inferenceservice") -> ControllerWork:
    """Read `controller`'s reconcile count and time and the manager's API requests from `url`."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    reconciles = seconds = 0.0
    requests: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "controller_runtime_reconcile_total":
                reconciles += sample.value if labels.get("controller") == controller else 0
            elif sample.name == "controller_runtime_reconcile_time_seconds_sum":
                seconds += sample.value if labels.get("controller") == controller else 0
            elif sample.name == "rest_client_requests_total":
                requests[labels.get("method", "?")] += int(sample.value)
    return ControllerWork(reconciles, seconds, requests)


class ReconcileSampler:
    """KServe's reconcile count every `period` seconds, from a thread: how fast KServe reconciled
    while the InferenceServices were being created and after. The first window is where other
    work on the API server (an operator's writes, the CreditModels' apply) costs KServe most: its
    one worker's reconcile is a chain of about ten requests, each queued behind that work."""

    def __init__(self, url: str, period: float = 2.0) -> None:
        self.url, self.period = url, period
        self.samples: list[tuple[float, float]] = []  # (monotonic, reconciles so far)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError, ValueError):
                self.samples.append((time.monotonic(), kserve_work(self.url).reconciles))
            if self.stop.wait(self.period):
                return

    def rate(self, start: float, end: float) -> tuple[float, float]:
        """(reconciles, seconds) between the samples nearest to `start` and `end` (monotonic)."""
        if len(self.samples) < 2:
            return math.nan, math.nan
        first = min(self.samples, key=lambda sample: abs(sample[0] - start))
        last = min(self.samples, key=lambda sample: abs(sample[0] - end))
        return last[1] - first[1], last[0] - first[0]

    def rows(self, case: str, started: float, created: float, ready: float) -> list[dict[str, Any]]:
        """Reconciles per second from `started` to `created` (the last InferenceService created)
        and from there to `ready` (all Ready), monotonic."""
        rows = []
        for label, start, end in (
            ("while the InferenceServices are created", started, created),
            ("after the last one is created, until all Ready", created, ready),
        ):
            count, seconds = self.rate(start, end)
            rows.append(
                {"case": case, "metric": f"KServe: reconciles per s {label}",
                 "value": count / seconds if seconds and seconds > 0 else math.nan,
                 "unit": "per s", "detail": f"{count:.0f} in {seconds:.0f} s"}
            )  # fmt: skip
        return rows

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)


def own_cpu_seconds() -> float:
    """CPU seconds (user + system, every thread) of this process: the apply threads and the
    watches, which share the machine with the stack but are not part of it."""
    times = os.times()
    return times.user + times.system


def cpu_by_process() -> Counter[str]:
    """CPU seconds (user + system) so far of each process this one started (the whole stack),
    by executable name; the operator (a Python process) as "operator"."""
    import psutil

    seconds: Counter[str] = Counter()
    for process in psutil.Process().children(recursive=True):
        try:
            name = process.name()
            if name.startswith("python"):
                name = "operator" if "creditmodel" in " ".join(process.cmdline()) else name
            times = process.cpu_times()
        except psutil.Error:
            continue
        seconds[name] += times.user + times.system
    return seconds


def _since(obj: dict[str, Any], kind: str) -> float | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return _at(condition["lastTransitionTime"])
    return None


@dataclass(frozen=True)
class Timeline:
    """From the objects' own timestamps (1 s resolution): when the operator had created every
    InferenceService, and how long after KServe reported each Ready its CreditModel did."""

    isvcs_created: float | None  # seconds after `start`, the last one
    lags: list[float]  # CreditModel Ready - its InferenceService Ready, per model


def timeline(api: client.ApiClient, namespace: str, start: float, label: str) -> Timeline:
    custom = client.CustomObjectsApi(api)
    listed = custom.list_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices"
    )
    isvcs: list[dict[str, Any]] = cast(dict[str, Any], listed)["items"]
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    models: list[dict[str, Any]] = cast(dict[str, Any], listed)["items"]
    created = [_at(i["metadata"]["creationTimestamp"]) - start for i in isvcs]
    isvc_ready = {i["metadata"]["labels"].get(label): _since(i, "Ready") for i in isvcs}
    lags = []
    for model in models:
        ready, served = _since(model, "Ready"), isvc_ready.get(model["metadata"]["name"])
        if ready is not None and served is not None:
            lags.append(ready - served)
    return Timeline(max(created) if created else None, lags)


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def profiled(pid: int, out: Path | None) -> Iterator[None]:
    """py-spy (pip install py-spy) samples the operator into `out` (collapsed stacks)."""
    if out is None:
        yield
        return
    spy = subprocess.Popen(
        [Path(sys.executable).with_name("py-spy"), "record", "--pid", str(pid), "--format", "raw",
         "--output", out, "--rate", "50", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


def creditmodel(name: str, bundle_uri: str, prometheus: str) -> dict[str, Any]:
    """The sample CreditModel (manifests/samples) under `name`, one canary step of 50%."""
    body = copy.deepcopy(
        load_yaml_documents(REPO_ROOT / "manifests" / "samples" / "creditmodel.yaml")[0]
    )
    body["metadata"] = {"name": name}
    body["spec"]["model"]["bundleURI"] = bundle_uri
    body["spec"]["rollout"].update(
        {"steps": [50], "intervalSeconds": 5, "analysis": {"prometheusURL": prometheus}}
    )
    return dict(body)
