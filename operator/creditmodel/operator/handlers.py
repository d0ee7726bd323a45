"""kopf handlers: thin I/O around the pure state machine (creditmodel.operator.rollout).

One long-lived daemon per CreditModel runs the reconcile loop: read the object, observe what the
state machine asks for, apply its plan (children, Job, status, Events), sleep until the next
analysis is due or something wakes it. A spec change, the action annotation and child status
changes (KServe marking an InferenceService Ready, a Job finishing) wake the owner's daemon at once,
from the watch stream. All progress lives in the CreditModel status (and the drain clock in the
HTTPRoute), so a restarted operator continues where the last one stopped.

Every watch handler is a coroutine: kopf runs a plain function in its thread pool, a thread hop
per watch event (two per InferenceService event), and an asyncio.Event set from that thread
does not reliably wake the daemon waiting on it (asyncio is not thread-safe).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from creditmodel.operator import builders, rollout
from creditmodel.operator.kube import Kube, KubeError
from creditmodel.operator.model import ACTION_ANNOTATION, FINALIZER, GROUP, PLURAL, VERSION
from creditmodel.operator.readiness import Key, Readiness
from creditmodel.operator.reconciler import Logger, Reconciler
from creditmodel.operator.settings import OperatorSettings
from creditmodel.operator.views import status_edited

OURS = {"app.kubernetes.io/managed-by": builders.MANAGED_BY}
EDITABLE = frozenset({"InferenceService", "HTTPRoute", "NetworkPolicy", "CronJob"})
"""The children child_changed watches for someone else's edits (a Job is never patched)."""
CONCURRENT_PASSES = 16
"""Reconcile passes in flight at once over all CreditModels, twice: passes something asked for
(a first pass, a watch event, a rollout step or retry falling due) and routine resyncs each have
their own slots, so that a thousand resyncs never queue ahead of a change. Unbounded, a thousand
CreditModels applied together queue a thousand requests in the HTTP client's pool (whose request
assignment is quadratic in its queue) and open connections beyond its keep-alive limit, a TLS
handshake each. A daemon waiting for a slot folds the wakes that arrive meanwhile into one pass."""


WATCH_HANDLERS = ("changed", "child_changed", "job_changed")
"""The handlers kopf calls on every watch event of their kind (not once per change)."""


class QuietWatchHandlers(logging.Filter):
    """Drops kopf's INFO line "Handler 'child_changed' succeeded." for the watch handlers: it comes
    with every watch event, and says nothing the operator's own lines do not (each write, each
    refusal). At 1,000 CreditModels applied at once it would be 11,000 of the log's 16,000 lines,
    and its formatting 3% of the operator's CPU. Failures still log; -v (DEBUG) keeps every line."""

    def __init__(self) -> None:
        super().__init__()
        self.lines = frozenset(f"Handler {name!r} succeeded." for name in WATCH_HANDLERS)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.INFO or record.msg not in self.lines


class NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff-base serves change handlers (on.create, on.update), and this operator has none:
    its watch handlers and daemons read the object themselves. Still kopf builds one per watch
    event of every watched kind (a deep copy of the body), 6% of the operator's py-spy samples
    with 1,000 CreditModels applied at once; here it is empty and never stored. The annotation prefix
    stays marked as ours, so other kopf operators leave it out of their diffs."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()


@kopf.on.login()
def login(**kwargs: Any) -> Any:
    """In-cluster ServiceAccount, else $KUBECONFIG: the same credentials kr8s picks up."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = OperatorSettings()
    for chatty in ("httpx", "httpcore", "botocore", "boto3", "urllib3"):  # a line per request
        logging.getLogger(chatty).setLevel(logging.WARNING)
    objects = logging.getLogger("kopf.objects")
    if not objects.isEnabledFor(logging.DEBUG) and not any(
        isinstance(f, QuietWatchHandlers) for f in objects.filters
    ):
        objects.addFilter(QuietWatchHandlers())
    # Progress and diff-base in our own annotations: the status schema is ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING
    settings.batching.worker_limit = config.workers
    memo.config = config
    memo.policy = rollout.Policy(
        drain_seconds=config.drain_seconds,
        ready_timeout_seconds=config.canary_ready_timeout_seconds,
        network_policy=(
            builders.IngressPolicy.from_settings(config)
            if config.predictor_network_policy
            else None
        ),
    )
    memo.kube = await Kube.connect()
    memo.kube.written = functools.partial(_remember_written, memo)
    memo.prometheus = {}
    memo.wakers = {}
    memo.releasing = set()  # CreditModel keys in a namespace being deleted (namespace_changed)
    memo.children = {}  # (kind, namespace, name) -> the child's last seen ChildEdit.seen
    memo.edited = {}  # CreditModel key -> {(kind, name)} of children changed since its last pass
    memo.versions = {}  # CreditModel key -> its resourceVersion as last read or written
    memo.handled = {}  # CreditModel key -> the generation its loop last reconciled
    memo.statuses = {}  # CreditModel key -> digests of its status as last written or read
    memo.passes = asyncio.Semaphore(CONCURRENT_PASSES)  # something asked for a pass
    memo.resyncs = asyncio.Semaphore(CONCURRENT_PASSES)  # the routine resync, nothing else
    memo.sweeper = asyncio.get_running_loop().create_task(release_in_deleted_namespaces(memo))


NAMESPACE_SWEEP_SECONDS = 15.0
log = logging.getLogger("creditmodel.operator")


async def release_in_deleted_namespaces(memo: Any) -> None:
    """Every NAMESPACE_SWEEP_SECONDS, for each namespace being deleted: end its CreditModels'
    loops and release kopf's finalizer from those being deleted. With --namespace (the chart's
    watchNamespaces) kopf 1.45.2 stops watching a namespace at its first deletion event, whose
    conditions are all False (kopf issue 1088; the check of kopf PR 1225 comes too early), and
    does not watch one already Terminating when it starts: it never saw those CreditModels
    deleted nor removed the finalizer its daemons hold, and the namespace stayed Terminating for
    good. Their children go with the namespace. One request per sweep while nothing is deleted."""
    while True:
        try:
            for namespace in await memo.kube.terminating_namespaces():
                for key in [key for key in memo.wakers if key[0] == namespace]:
                    memo.releasing.add(key)
                    _wake(memo, key)
                released = await memo.kube.release_deleted(namespace, FINALIZER)
                if released:
                    names = ", ".join(released)
                    log.info(f"namespace {namespace} is being deleted: released {names}")
        except (KubeError, OSError) as exc:  # the next sweep tries again
            log.warning(f"sweeping namespaces being deleted failed: {exc}")
        await asyncio.sleep(NAMESPACE_SWEEP_SECONDS)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    memo.sweeper.cancel()
    for client in memo.prometheus.values():
        await client.close()
    await memo.kube.close()


def _child(body: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = body.get("metadata") or {}
    return str(body.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", ""))


def _owner(labels: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
    """The CreditModel a child belongs to: its model label, or, when someone took that label off
    (which the next pass puts back), its controller reference."""
    owner = labels.get(builders.MODEL_LABEL)
    if owner:
        return owner
    for ref in (body.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == "CreditModel":
            return str(ref.get("name", "")) or None
    return None


def _signal(body: Mapping[str, Any]) -> str:
    """What the state machine reads of a child's status: an InferenceService's Readiness (the
    index below), nothing of the others."""
    if body.get("kind") != "InferenceService":
        return ""
    readiness = _readiness(body.get("status") or {})
    if readiness.ready:
        return "Ready"
    return f"{readiness.waiting or ''} ({'pods ready' if readiness.copies else 'no pod ready'})"


def _remember_written(memo: kopf.Memo, body: Mapping[str, Any]) -> None:
    """A child as our own create or patch left it: its watch event is then no edit and wakes
    nobody."""
    meta = body.get("metadata") or {}
    if body.get("kind") in EDITABLE and (meta.get("labels") or {}).get(builders.MODEL_LABEL):
        memo.children[_child(body)] = rollout.child_edit(None, None, meta, _signal(body)).seen


def _wake(memo: kopf.Memo, key: Key) -> None:
    waker: asyncio.Event | None = memo.wakers.get(key)
    if waker is not None:
        waker.set()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def changed(
    *, name: str, namespace: str | None, body: Mapping[str, Any], memo: Any, **_: Any
) -> None:
    """A manual action waits, or the spec moved past what the status last saw and past what the
    loop last reconciled: reconcile now. A watch event rather than a change handler: kopf leaves
    annotations under the operator's own prefix (scoring.creditmodel.io/, its diff-base storage)
    out of its diff, so no change handler ever fires for the action annotation. The events that
    arrive before the watch shows our first status write (kopf's finalizer, for one) carry no
    observedGeneration yet: at 1,000 CreditModels applied at once each woke a pass for nothing."""
    meta = body.get("metadata") or {}
    key = (namespace or "", name)
    generation = meta.get("generation")
    seen = (body.get("status") or {}).get("observedGeneration")
    moved = generation not in (seen, memo.handled.get(key))
    edited = status_edited(memo.statuses, key, body)
    if ACTION_ANNOTATION in (meta.get("annotations") or {}) or moved or edited:
        _wake(memo, key)


@kopf.on.index("serving.kserve.io", "v1beta1", "inferenceservices", labels=OURS)
async def isvc_readiness(
    *, name: str, namespace: str | None, status: Mapping[str, Any], **_: Any
) -> dict[Key, Readiness]:
    """Whether KServe reports each of our InferenceServices Ready, and if not, what it says keeps
    it from Ready ("Predictor HttpRouteNotReady", a Deployment without minimum availability), kept
    current from the watch stream: the reconcile loop never polls them, and the CreditModel's
    conditions can quote KServe. One index, not one per field: kopf calls every index handler on
    every InferenceService event."""
    return {(namespace or "", name): _readiness(status)}


def _readiness(status: Mapping[str, Any]) -> Readiness:
    conditions = status.get("conditions") or []
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
        return Readiness(ready=True)
    ready_pods = _ready_pods(status)
    for condition in sorted(conditions, key=lambda c: c.get("type") != "Ready"):
        if condition.get("status") == "False" and condition.get("message"):
            return Readiness(False, str(condition["message"])[:512], ready_pods)
    return Readiness(ready=False, copies=ready_pods)


def _ready_pods(status: Mapping[str, Any]) -> int:
    """KServe's count of the InferenceService's ready pods (modelStatus.copies.totalCopies)."""
    model_status = status.get("modelStatus")
    copies = model_status.get("copies") if isinstance(model_status, Mapping) else None
    total = copies.get("totalCopies") if isinstance(copies, Mapping) else None
    return total if type(total) is int and total > 0 else 0


@kopf.on.event("batch", "v1", "jobs", labels=OURS)
async def job_changed(
    *, labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any
) -> None:
    """The Job controller moved one of our training Jobs: tell its CreditModel."""
    owner = labels.get(builders.MODEL_LABEL)
    if owner:
        _wake(memo, (namespace or "", owner))


@kopf.on.event("serving.kserve.io", "v1beta1", "inferenceservices", labels=OURS)
@kopf.on.event("gateway.networking.k8s.io", "v1", "httproutes", labels=OURS)
@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels=OURS)
@kopf.on.event("batch", "v1", "cronjobs", labels=OURS)
async def child_changed(
    *,
    type: str | None,  # kopf passes the event type by this name
    body: Mapping[str, Any],
    labels: Mapping[str, str],
    namespace: str | None,
    memo: Any,
    **_: Any,
) -> None:
    """One of our children changed: wake its CreditModel when that moves the rollout (KServe
    marking an InferenceService Ready), and when someone edited or deleted the child, have the
    next pass read and correct it instead of waiting for the full re-read of every child. The
    events of our own writes wake nobody: at 1,000 CreditModels applied at once, each woke a
    pass that read its CreditModel again before the watch had caught up with our status write."""
    owner = _owner(labels, body)
    if not owner:
        return
    key = (namespace or "", owner)
    child = _child(body)
    edit = rollout.child_edit(
        memo.children.get(child), type, body.get("metadata") or {}, _signal(body)
    )
    if edit.seen is None:
        memo.children.pop(child, None)
    else:
        memo.children[child] = edit.seen
    if edit.edited and key in memo.wakers:  # a CreditModel's daemon is there to read it
        memo.edited.setdefault(key, set()).add((child[0], child[2]))
    if edit.wake:
        _wake(memo, key)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10)
async def run(
    *,
    name: str,
    namespace: str | None,
    memo: Any,
    stopped: kopf.DaemonStopped,
    logger: Logger,
    **kwargs: Any,
) -> None:
    namespace = namespace or ""
    readiness: kopf.Index[Key, Readiness] = kwargs["isvc_readiness"]  # kopf passes indices by name
    key = (namespace, name)
    waker = memo.wakers.setdefault(key, asyncio.Event())
    live: Mapping[str, Any] = kwargs["body"]  # kopf keeps it at the latest watch event
    reconciler = Reconciler(namespace, name, memo, readiness, logger, live)
    resync = False  # the first pass was asked for
    try:
        while not stopped:
            async with memo.resyncs if resync else memo.passes:
                waker.clear()
                try:
                    delay = await reconciler.once()
                except (KubeError, OSError) as exc:  # a transport failure is a ConnectionError
                    logger.warning(f"reconcile failed, retrying: {exc}")
                    delay = min(memo.config.resync_seconds, 5.0)
            if delay is None:
                reconciler.forget()
                return
            await _sleep(waker, stopped, delay)
            resync = not waker.is_set() and delay >= memo.config.resync_seconds
    finally:
        memo.wakers.pop(key, None)
        memo.edited.pop(key, None)
        if stopped:  # deleted, or the operator stops; a loop kopf restarts after a crash remembers
            reconciler.forget()


async def _sleep(waker: asyncio.Event, stopped: kopf.DaemonStopped, delay: float) -> None:
    """Until the delay passes, something wakes this object, or kopf stops the daemon."""

    async def until_stopped() -> None:
        await stopped.wait()

    tasks = {asyncio.ensure_future(waker.wait()), asyncio.ensure_future(until_stopped())}
    try:
        await asyncio.wait(tasks, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
