"""kopf handlers: thin I/O around the pure state machine (creditmodel.operator.rollout).

One long-lived daemon per CreditModel runs the reconcile loop: read the object, observe what the
state machine asks for, apply its plan (children, Job, status, Events), sleep until the next
analysis is due or something wakes it. A spec change, the action annotation and child status
changes (KServe marking an InferenceService Ready, a Job finishing) wake the owner's daemon at once,
from the watch stream. All progress lives in the CreditModel status (and the drain clock in the
HTTPRoute), so a restarted operator continues where the last one stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import kopf
from pydantic import ValidationError

from creditmodel.operator import analysis, builders, bundles, rollout
from creditmodel.operator.kube import Kube, KubeError, merge_patch
from creditmodel.operator.model import ACTION_ANNOTATION, GROUP, PLURAL, VERSION, Spec, Status
from creditmodel.operator.prometheus import Prometheus
from creditmodel.operator.settings import OperatorSettings

Logger = logging.Logger | logging.LoggerAdapter[Any]
OURS = {"app.kubernetes.io/managed-by": builders.MANAGED_BY}
Key = tuple[str, str]


@kopf.on.login()
def login(**kwargs: Any) -> Any:
    """In-cluster ServiceAccount, else $KUBECONFIG: the same credentials kr8s picks up."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = OperatorSettings()
    for chatty in ("httpx", "httpcore", "botocore", "boto3", "urllib3"):  # a line per request
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # Progress and diff-base in our own annotations: the status schema is ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    settings.batching.worker_limit = config.workers
    memo.config = config
    memo.policy = rollout.Policy(
        drain_seconds=config.drain_seconds,
        ready_timeout_seconds=config.canary_ready_timeout_seconds,
    )
    memo.kube = await Kube.connect()
    memo.prometheus = {}
    memo.wakers = {}


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    for client in memo.prometheus.values():
        await client.close()


def _wake(memo: kopf.Memo, key: Key) -> None:
    waker: asyncio.Event | None = memo.wakers.get(key)
    if waker is not None:
        waker.set()


@kopf.on.event(GROUP, VERSION, PLURAL)
def changed(
    *, name: str, namespace: str | None, body: Mapping[str, Any], memo: Any, **_: Any
) -> None:
    """A manual action waits, or the spec moved past what the status last saw: reconcile now.
    A watch event rather than a change handler: kopf leaves annotations under the operator's own
    prefix (scoring.creditmodel.io/, its diff-base storage) out of its diff, so no change handler
    ever fires for the action annotation."""
    meta = body.get("metadata") or {}
    seen = (body.get("status") or {}).get("observedGeneration")
    if ACTION_ANNOTATION in (meta.get("annotations") or {}) or meta.get("generation") != seen:
        _wake(memo, (namespace or "", name))


@kopf.on.index("serving.kserve.io", "v1beta1", "inferenceservices", labels=OURS)
def ready_isvcs(
    *, name: str, namespace: str | None, status: Mapping[str, Any], **_: Any
) -> dict[Key, bool]:
    """Which of our InferenceServices KServe reports Ready, kept current from the watch stream,
    so the reconcile loop never polls them."""
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return {(namespace or "", name): ready}


@kopf.on.event("serving.kserve.io", "v1beta1", "inferenceservices", labels=OURS)
@kopf.on.event("batch", "v1", "jobs", labels=OURS)
def child_changed(*, labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any) -> None:
    """KServe or the Job controller moved one of our children: tell its CreditModel."""
    owner = labels.get(builders.MODEL_LABEL)
    if owner:
        _wake(memo, (namespace or "", owner))


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
    ready_isvcs: kopf.Index[Key, bool] = kwargs["ready_isvcs"]  # kopf passes indices by name
    key = (namespace, name)
    waker = memo.wakers.setdefault(key, asyncio.Event())
    reconciler = Reconciler(namespace, name, memo, ready_isvcs, logger)
    try:
        while not stopped:
            waker.clear()
            try:
                delay = await reconciler.once()
            except (KubeError, OSError, httpx.HTTPError) as exc:
                logger.warning(f"reconcile failed, retrying: {exc}")
                delay = min(memo.config.resync_seconds, 5.0)
            if delay is None:
                return
            await _sleep(waker, stopped, delay)
    finally:
        memo.wakers.pop(key, None)


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


def _view(body: dict[str, Any], config: OperatorSettings) -> rollout.CreditModel:
    meta = body["metadata"]
    action = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
    return rollout.CreditModel(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        generation=meta.get("generation", 1),
        created_at=meta.get("creationTimestamp") or rollout.timestamp(datetime.now(UTC)),
        spec=Spec.model_validate(body.get("spec") or {}).with_default_images(
            config.predictor_image, config.training_image
        ),
        status=Status.model_validate(body.get("status") or {}),
        action=action,
    )


def _prometheus(memo: Any, model: rollout.CreditModel) -> Prometheus | None:
    config: OperatorSettings = memo.config
    url = model.spec.rollout.analysis.prometheus_url or (
        str(config.prometheus_url) if config.prometheus_url else None
    )
    if url is None:
        return None
    client: Prometheus | None = memo.prometheus.get(url)
    if client is None:
        client = memo.prometheus[url] = Prometheus(url, config.prometheus_timeout_seconds)
    return client


def _digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


class Readiness(Mapping[str, bool]):
    """InferenceService name -> Ready, read from the watch-fed kopf index on demand, so the state
    machine sees the readiness of any of our InferenceServices it asks about (not only the ones
    `needs` named before it decided)."""

    def __init__(self, index: kopf.Index[Key, bool], namespace: str) -> None:
        self.index, self.namespace = index, namespace

    def __getitem__(self, isvc: str) -> bool:
        key = (self.namespace, isvc)
        if key not in self.index:
            raise KeyError(isvc)
        return any(self.index[key])

    def __iter__(self) -> Iterator[str]:
        return (name for namespace, name in self.index if namespace == self.namespace)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Reconciler:
    """The I/O of one CreditModel's reconcile loop. What it caches (manifests written, children
    pruned) only saves requests between full resyncs; correctness comes from the status."""

    def __init__(
        self, namespace: str, name: str, memo: Any, ready: kopf.Index[Key, bool], logger: Logger
    ) -> None:
        self.namespace, self.name, self.memo, self.ready, self.logger = (
            namespace,
            name,
            memo,
            ready,
            logger,
        )
        self.kube: Kube = memo.kube
        self.config: OperatorSettings = memo.config
        self.applied: dict[str, str] = {}
        self.pruned_for: frozenset[str] | None = None
        self.synced_at = -math.inf
        self.drift_read_at = -math.inf
        self.cronjob_absent = False
        self.cronjob_write: rollout.CronJobWrite | None = None  # the API server's last answer
        self.route: rollout.RouteState | None = None  # the HTTPRoute as last written or read
        label = self.config.prometheus_namespace_label
        self.scope = {label: namespace} if label else {}

    async def observe(
        self, model: rollout.CreditModel, needs: rollout.Needs
    ) -> rollout.Observations:
        status = model.status
        resolved = await bundles.resolve(needs.resolve_bundle) if needs.resolve_bundle else None
        ready = Readiness(self.ready, self.namespace)
        job = await self.kube.job_state(self.namespace, needs.job) if needs.job else None
        trained = None
        if job is not None and job.phase == "Succeeded" and status.training.bundle_uri:
            trained = await bundles.resolve(status.training.bundle_uri)
        prometheus = _prometheus(self.memo, model)
        result = None
        if needs.analysis and status.canary and status.stable:
            _, canary_name = rollout.serving_names(model, status)
            if canary_name and ready.get(canary_name):
                result = (
                    await prometheus.analyse(
                        model.name,
                        status.canary.version,
                        status.stable.version,
                        model.spec.rollout.analysis,
                        self.scope,
                    )
                    if prometheus
                    else analysis.Result(
                        "inconclusive",
                        "no Prometheus configured (spec or CREDITMODEL_OPERATOR_PROMETHEUS_URL)",
                    )
                )
        drift = None
        if needs.drift and prometheus and status.stable:
            drift = await prometheus.stable_score_psi(model.name, status.stable.version, self.scope)
        route = None
        if needs.route:  # the drain clock lives in the route, written with its weights
            if (
                self.route is None
                or time.monotonic() - self.synced_at >= self.config.resync_seconds
            ):
                body = await self.kube.get("HTTPRoute", self.namespace, model.name)
                self.route = rollout.observed_route(body)
            route = self.route
        return rollout.Observations(
            resolved,
            ready,
            job,
            trained,
            result,
            drift,
            await self.drift_report(model, needs),
            route,
            self.cronjob_write if model.spec.monitoring else None,
        )

    async def drift_report(
        self, model: rollout.CreditModel, needs: rollout.Needs
    ) -> rollout.DriftReport | None:
        """latest.json at most every drift_poll_seconds; None (not looked at) in between."""
        monitoring = model.spec.monitoring
        if not needs.drift_report or monitoring is None:
            return None
        if time.monotonic() - self.drift_read_at < self.config.drift_poll_seconds:
            return None
        self.drift_read_at = time.monotonic()
        report = await bundles.read_drift_report(monitoring.prediction_log_uri, model.name)
        if report.error:
            self.logger.warning(f"drift report: {report.error}")
        return report

    async def apply_children(self, plan: rollout.Plan) -> None:
        """Write children whose manifest changed since we last wrote it; everything on resync."""
        full = time.monotonic() - self.synced_at >= self.config.resync_seconds
        self.route = None  # unknown until written again
        for child in plan.children:
            name, digest = child["metadata"]["name"], _digest(child)
            if not full and self.applied.get(name) == digest:
                if child["kind"] == "HTTPRoute":
                    self.route = rollout.observed_route(child)
                continue
            try:
                outcome = await self.kube.ensure(child, create_first=name not in self.applied)
            except KubeError as exc:
                if child["kind"] != "CronJob":
                    raise
                # Monitoring is not serving: a refused drift CronJob is an observation of the
                # next pass (reported in status.drift and Degraded), not a stop.
                self.cronjob_write = rollout.CronJobWrite(refused=str(exc))
                self.logger.warning(f"drift CronJob refused: {exc}")
                continue
            if child["kind"] == "CronJob":
                self.cronjob_write = rollout.CronJobWrite()
            if child["kind"] == "HTTPRoute":
                self.route = rollout.observed_route(child)
            self.applied[name] = digest
            if outcome != "unchanged":
                self.logger.info(f"{child['kind']} {name} {outcome}")
        if plan.job is not None:
            await self.kube.ensure(plan.job, create_first=True)
        cronjob = builders.drift_cronjob_name(self.name)
        wanted = frozenset(
            c["metadata"]["name"]
            for c in plan.children
            if c["kind"] in ("InferenceService", "CronJob")
        ) | frozenset(plan.retained)
        if full or wanted != self.pruned_for:
            removed = await self.kube.prune_inferenceservices(
                self.name, self.namespace, set(wanted)
            )
            if removed:
                self.logger.info(f"InferenceServices removed: {', '.join(removed)}")
            if cronjob in wanted:
                self.cronjob_absent = False
            else:
                self.cronjob_write = None
            if cronjob not in wanted and not self.cronjob_absent:
                # monitoring removed (or never set): one check
                if await self.kube.delete_if_ours("CronJob", self.namespace, cronjob, self.name):
                    self.logger.info(f"CronJob {cronjob} deleted")
                self.applied.pop(cronjob, None)
                self.cronjob_absent = True
            self.pruned_for = wanted
        if full:
            self.synced_at = time.monotonic()

    async def once(self) -> float | None:
        """One pass; returns seconds until the next pass, or None when the object is gone."""
        body = await self.kube.get_creditmodel(self.namespace, self.name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        try:
            model = _view(body, self.config)
        except ValidationError as exc:
            self.logger.error(f"spec does not match the operator's schema: {exc}")
            return self.config.resync_seconds
        now = datetime.now(UTC)
        observed = await self.observe(model, rollout.needs(model, now))
        plan = rollout.reconcile(model, observed, now, self.memo.policy)
        await self.apply_children(plan)
        patch = merge_patch(body.get("status") or {}, plan.status.dump())
        if patch:
            await self.kube.patch_status(self.namespace, self.name, patch)
        for event in plan.events:
            kopf.event(
                kopf.Body(cast(Any, body)),
                type=event.type,
                reason=event.reason,
                message=event.message,
            )
        if plan.clear_action:
            await self.kube.remove_annotation(self.namespace, self.name, ACTION_ANNOTATION)
        settled = rollout.CreditModel(**{**model.__dict__, "status": plan.status, "action": None})
        due = rollout.next_pass_in(settled, datetime.now(UTC), self.memo.policy)
        resync = self.config.resync_seconds
        return min(resync, due) if due is not None else resync
