"""One CreditModel's reconcile loop body, as I/O around the pure state machine: read the object,
observe what `rollout.needs` asks for, run `rollout.reconcile`, write the children, the status and
the Events. What it caches (manifests written, children pruned, a refused write's backoff) only
saves requests between full re-reads of the children, and a child someone else edits or deletes
is read again at once (handlers.child_changed); correctness comes from the status."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kopf
import orjson

from creditmodel.operator import analysis, builders, bundles, rollout
from creditmodel.operator.kube import Kube, KubeError
from creditmodel.operator.model import ACTION_ANNOTATION, FINALIZER
from creditmodel.operator.patches import merge_patch
from creditmodel.operator.prometheus import for_model
from creditmodel.operator.readiness import InNamespace, Key, Readiness
from creditmodel.operator.settings import OperatorSettings
from creditmodel.operator.views import STATUSES_KEPT, UnreadableError, status_digest, view

Logger = logging.Logger | logging.LoggerAdapter[Any]
REFUSAL_BACKOFF_FIRST, REFUSAL_BACKOFF_MAX = 5.0, 300.0
"""Seconds before a refused child is written again, doubling while the API server keeps
refusing it: a verdict (webhook, policy, quota) rarely changes within seconds."""


def _digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Reconciler:
    """The I/O of one CreditModel's reconcile loop. What it caches (manifests written, children
    pruned) only saves requests between full resyncs; correctness comes from the status."""

    def __init__(
        self,
        namespace: str,
        name: str,
        memo: Any,
        readiness: kopf.Index[Key, Readiness],
        logger: Logger,
        live: Mapping[str, Any] | None = None,
    ) -> None:
        self.namespace, self.name, self.memo, self.logger = namespace, name, memo, logger
        self.ready: Mapping[str, bool] = InNamespace(readiness, namespace, lambda r: r.ready)
        self.waiting: Mapping[str, str] = InNamespace(readiness, namespace, lambda r: r.waiting)
        self.copies: Mapping[str, int] = InNamespace(
            readiness, namespace, lambda r: r.copies or None
        )
        self.kube: Kube = memo.kube
        self.config: OperatorSettings = memo.config
        self.live = live  # kopf's live view of the CreditModel: its latest watch event
        # The CreditModel's resourceVersion as this process last read or wrote it (kept in the
        # memo, so a loop kopf restarts after a crash still knows); its body is kopf's live one.
        self.versions: dict[Key, str | None] = memo.versions
        # Its status as this process last wrote or read it (the last few): see status_edited.
        self.statuses: dict[Key, tuple[int, ...]] = memo.statuses
        # The generation this process last reconciled (handlers.changed wakes only past it).
        self.handled: dict[Key, int | None] = memo.handled
        self.key: Key = (namespace, name)
        self.applied: dict[str, str] = {}
        self.stale: set[str] = set()  # children someone else changed: read them again
        self.pruned_for: frozenset[str] | None = None
        self.fresh = False  # never reconciled: nothing of ours to read or prune yet
        self.synced_at = -math.inf
        self.drift_read_at = -math.inf
        self.cronjob_absent = False
        self.cronjob_write: rollout.CronJobWrite | None = None  # the API server's last answer
        self.route: rollout.RouteState | None = None  # the HTTPRoute as last written or read
        self.refused: rollout.ChildRefusal | None = None  # a serving child the API server refused
        self.refusals = 0  # writes in a row refused: the retry backs off
        self.retry_at = -math.inf  # no write of the refused child before this (monotonic)
        self.announce: rollout.ChildRefusal | None = None  # a new refusal, for one Event
        # the generation and problem last reported unreadable: one Event for each
        self.unreadable_reported: tuple[int, str] | None = None
        label = self.config.prometheus_namespace_label
        self.scope = {label: namespace} if label else {}

    async def observe(
        self, model: rollout.CreditModel, needs: rollout.Needs
    ) -> rollout.Observations:
        status = model.status
        resolved = await bundles.resolve(needs.resolve_bundle) if needs.resolve_bundle else None
        job = (
            await self.kube.job_state(self.namespace, needs.job, model.name, model.uid)
            if needs.job
            else None
        )
        trained = None
        published = job.publishes[1] if job and job.publishes else status.training.bundle_uri
        if job is not None and job.phase == "Succeeded" and published:
            trained = await bundles.resolve(published)  # the Job's own word (as_the_job_publishes)
        prometheus = for_model(self.memo.prometheus, model, self.config)
        result = None
        if needs.analysis and status.canary and status.stable:
            _, canary_name = rollout.serving_names(model, status)
            if canary_name and self.ready.get(canary_name):
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
            if self.fresh and self.route is None:
                self.route = rollout.observed_route(None)
            elif self.route is None or self.full_sync_due():
                body = await self.kube.get("HTTPRoute", self.namespace, model.name)
                self.route = rollout.observed_route(body)
            route = self.route
        return rollout.Observations(
            resolved,
            self.ready,
            job,
            trained,
            result,
            drift,
            await self.drift_report(model, needs),
            route,
            self.cronjob_write if model.spec.monitoring else None,
            self.refused,
            self.waiting,
            self.copies,
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

    def first_pass(self, model: rollout.CreditModel) -> None:
        """A CreditModel no operator has reconciled yet (no observedGeneration in its status) has
        no children: its first pass creates them without reading or pruning (a create that finds
        one, left by an operator that died before its status write, reads and patches it), and
        the full re-read of every child comes one children_resync_seconds later. At 1,000
        CreditModels applied at once that is 3,000 fewer requests (the route, the InferenceService
        list, the drift CronJob) while the API server is busiest."""
        self.fresh = self.synced_at == -math.inf and model.status.observed_generation is None
        if self.fresh:
            self.synced_at = time.monotonic()

    def full_sync_due(self) -> bool:
        return time.monotonic() - self.synced_at >= self.config.children_resync_seconds

    def forget_edited(self) -> None:
        """Children someone edited or deleted since the last pass (from the watch stream) are
        read and corrected in this one; an InferenceService also prunes."""
        for kind, name in self.memo.edited.pop(self.key, ()):
            self.stale.add(name)
            if kind == "HTTPRoute":
                self.route = None
            elif kind == "InferenceService":
                self.pruned_for = None

    async def apply_children(self, plan: rollout.Plan) -> None:
        """Write children whose manifest changed since we last wrote it or that someone else
        changed; every child on the full re-read (children_resync_seconds)."""
        full = self.full_sync_due()
        # A route in the plan is unknown until written again; a plan without one (nothing to
        # carry yet) writes none, so what was known holds, and a first pass knows there is none.
        if any(child["kind"] == "HTTPRoute" for child in plan.children):
            self.route = None
        elif self.fresh:
            self.route = rollout.observed_route(None)
        refused: rollout.ChildRefusal | None = None
        for child in plan.children:
            name, digest = child["metadata"]["name"], _digest(child)
            if not full and self.applied.get(name) == digest and name not in self.stale:
                if child["kind"] == "HTTPRoute":
                    self.route = rollout.observed_route(child)
                continue
            if self.refused and self.refused.name == name:
                if time.monotonic() < self.retry_at:
                    refused = refused or self.refused  # backing off: not asked again yet
                    continue
                self.logger.info(f"retrying refused {child['kind']} {name}")
            try:
                outcome = await self.kube.ensure(
                    child,
                    create_first=name not in self.applied,
                    patch_first=not full and name in self.applied and name not in self.stale,
                )
            except KubeError as exc:
                if exc.terminating:
                    raise
                if child["kind"] == "CronJob":
                    # Monitoring is not serving: a refused drift CronJob is an observation of the
                    # next pass (reported in status.drift and Degraded), not a stop.
                    self.cronjob_write = rollout.CronJobWrite(refused=str(exc))
                    self.logger.warning(f"drift CronJob refused: {exc}")
                    continue
                if not exc.refused:
                    raise
                # KServe's webhook, an admission policy or a quota said no: the next pass
                # reports it (Degraded, one Event) and retries with backoff; the other
                # children are still written (the stable keeps serving).
                refused = refused or rollout.ChildRefusal(child["kind"], name, exc.detail[:1024])
                continue
            if child["kind"] == "CronJob":
                self.cronjob_write = rollout.CronJobWrite()
            if child["kind"] == "HTTPRoute":
                self.route = rollout.observed_route(child)
            self.applied[name] = digest
            if outcome != "unchanged":
                self.logger.info(f"{child['kind']} {name} {outcome}")
        if plan.job is not None:
            try:
                await self.kube.ensure(plan.job, create_first=True)
            except KubeError as exc:
                if exc.terminating or not exc.refused:
                    raise
                job = plan.job["metadata"]["name"]
                refused = refused or rollout.ChildRefusal("Job", job, exc.detail[:1024])
        cronjob = builders.drift_cronjob_name(self.name)
        wanted = frozenset(
            c["metadata"]["name"]
            for c in plan.children
            if c["kind"] in ("InferenceService", "CronJob")
        ) | frozenset(plan.retained)
        if self.fresh:
            self.pruned_for, self.cronjob_absent = wanted, cronjob not in wanted
        if full or wanted != self.pruned_for:
            removed = await self.kube.prune_inferenceservices(
                self.name, self.namespace, set(wanted)
            )
            if removed:
                self.logger.info(f"InferenceServices removed: {', '.join(removed)}")
            for name in removed:  # wanted again later (a rollback, a re-applied bundle): create
                self.applied.pop(name, None)
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
        self.stale.clear()
        self.note_refusal(refused)

    def note_refusal(self, refused: rollout.ChildRefusal | None) -> None:
        """Log and announce (one Event) a new refusal; back off while it lasts: 5 s doubling up
        to REFUSAL_BACKOFF_MAX between two writes of the refused child."""
        if refused is not None and refused != self.refused:
            self.logger.warning(f"{refused.kind} {refused.name} refused: {refused.message}")
            self.announce = refused
        if refused is None:
            self.refusals, self.retry_at = 0, -math.inf
        elif time.monotonic() >= self.retry_at:  # it was asked again, and refused again
            self.refusals += 1
            backoff = REFUSAL_BACKOFF_FIRST * 2 ** min(self.refusals - 1, 10)
            self.retry_at = time.monotonic() + min(REFUSAL_BACKOFF_MAX, backoff)
        self.refused = refused

    async def report_unreadable(self, body: dict[str, Any], problem: UnreadableError) -> None:
        """A spec or status the API server stored but the operator cannot read: Degraded and
        Stalled in status and one Warning Event per generation and part, instead of a log line
        nobody reads; nothing else is written or deleted until it is readable again."""
        message = rollout.describe_errors(problem.error, part=problem.part)
        generation = int(body["metadata"].get("generation", 1))
        stored = body.get("status") or {}
        updated = rollout.unreadable(stored, problem.part, message, generation, datetime.now(UTC))
        patch = merge_patch(stored, updated)
        if patch:
            self._saw(await self.kube.patch_status(self.namespace, self.name, patch))
        if self.unreadable_reported != (generation, message):
            self.unreadable_reported = (generation, message)
            self.logger.error(f"{problem.part} does not match the operator's schema: {message}")
            reason = "InvalidSpec" if problem.part == "spec" else "InvalidStatus"
            kopf.event(kopf.Body(cast(Any, body)), type="Warning", reason=reason, message=message)

    async def read(self) -> dict[str, Any] | None:
        """The CreditModel. While the watch stream still shows the very version this process
        last read or wrote (same resourceVersion), kopf's live body is that version and the API
        server is not asked: a pass with nothing changed reads nothing. Any other version, older
        (our own write not seen yet) or newer (someone else's), is read afresh. A CreditModel this
        process has never read or written is taken from the watch as well: nothing of ours can
        be missing from it, and at 1,000 applied at once that is 1,000 reads fewer while the API
        server is busiest. Only the version is kept between passes: a thousand CreditModels'
        bodies are kopf's, not twice in memory."""
        live, key = self.live, self.key
        seen = None if live is None else (live.get("metadata") or {}).get("resourceVersion")
        if live is not None and seen is not None and self.versions.get(key, seen) == seen:
            self._saw(live)
            return cast(dict[str, Any], orjson.loads(orjson.dumps(dict(live))))  # a deep copy
        body = await self.kube.get_creditmodel(self.namespace, self.name)
        self._saw(body)
        return body

    def _saw(self, body: Mapping[str, Any] | None) -> None:
        """The CreditModel as the API server last answered this loop."""
        version = ((body or {}).get("metadata") or {}).get("resourceVersion")
        self.versions[self.key] = version
        if body is not None:
            digest = status_digest(body)
            known = self.statuses.get(self.key, ())
            if digest not in known:
                self.statuses[self.key] = (*known, digest)[-STATUSES_KEPT:]

    def forget(self) -> None:
        """The CreditModel is gone, or the operator stops: nothing to remember of it."""
        self.versions.pop(self.key, None)
        self.handled.pop(self.key, None)
        self.statuses.pop(self.key, None)

    async def once(self) -> float | None:
        """One pass; returns seconds until the next pass, or None when the object is gone."""
        if self.key in self.memo.releasing:  # its namespace is being deleted
            self.memo.releasing.discard(self.key)
            await self.kube.release_finalizer(self.namespace, self.name, FINALIZER)
            self.logger.info(f"namespace {self.namespace} is being deleted: {self.name} stops")
            return None
        body = await self.read()
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        self.handled[self.key] = body["metadata"].get("generation")
        try:
            model = view(body, self.config)
        except UnreadableError as exc:
            await self.report_unreadable(body, exc)
            return self.config.resync_seconds
        now = datetime.now(UTC)
        self.forget_edited()
        self.first_pass(model)
        observed = await self.observe(model, rollout.needs(model, now))
        plan = rollout.reconcile(model, observed, now, self.memo.policy)
        try:
            await self.apply_children(plan)
        except KubeError as exc:
            if not exc.terminating:
                raise
            # its namespace is being deleted, and the CreditModel with it: no child, Event or
            # status of it can be written any more (the retried Events were ERROR lines)
            self.memo.releasing.add(self.key)
            return 0.0
        patch = merge_patch(body.get("status") or {}, plan.status.dump())
        if patch:
            self._saw(await self.kube.patch_status(self.namespace, self.name, patch))
        if self.announce is not None:
            refusal, self.announce = self.announce, None
            kopf.event(
                kopf.Body(cast(Any, body)),
                type="Warning",
                reason=f"{refusal.kind}Refused",
                message=f"{refusal.kind} {refusal.name} was not written: {refusal.message}",
            )
        for event in plan.events:
            kopf.event(
                kopf.Body(cast(Any, body)),
                type=event.type,
                reason=event.reason,
                message=event.message,
            )
        if plan.clear_action:
            self._saw(
                await self.kube.remove_annotation(self.namespace, self.name, ACTION_ANNOTATION)
            )
        settled = rollout.CreditModel(**{**model.__dict__, "status": plan.status, "action": None})
        now = datetime.now(UTC)
        due = rollout.next_pass_in(settled, now, self.memo.policy)
        retry = max(self.retry_at - time.monotonic(), 0.0) if self.refused else None
        return min(t for t in (self.poll_in(settled, now), due, retry) if t is not None)

    def poll_in(self, settled: rollout.CreditModel, now: datetime) -> float:
        """Seconds until the next pass when nothing wakes this loop: one resync period while a
        pass looks at something no watch announces (`rollout.polls`), else the full re-read of
        the children. A thousand CreditModels waiting for KServe, or serving with nothing to
        check, are not passed every few seconds for nothing: 1,000 passes cost about 1.4 s of the
        operator's CPU, while the machine is busiest bringing them to Ready."""
        if rollout.polls(settled, now):
            return self.config.resync_seconds
        full_sync_at = self.synced_at + self.config.children_resync_seconds
        return max(full_sync_at - time.monotonic(), 0.0)
