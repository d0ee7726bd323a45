"""What a pass must look at before it can decide, and when the next pass falls due."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from creditmodel.operator import builders
from creditmodel.operator.model import Status
from creditmodel.operator.rollout import drift
from creditmodel.operator.rollout.values import (
    ACTIONS,
    CreditModel,
    Needs,
    Policy,
    not_ready_since,
    seconds_since,
)


def serving_names(model: CreditModel, status: Status) -> tuple[str, str | None]:
    """The InferenceService names serving stable and canary (one name for router knative)."""
    if model.spec.rollout.router == "knative":
        return model.name, (model.name if status.canary else None)
    stable = (
        builders.isvc_name(model.name, status.stable.bundle_uri, model.namespace)
        if status.stable
        else ""
    )
    canary = (
        builders.isvc_name(model.name, status.canary.bundle_uri, model.namespace)
        if status.canary
        else None
    )
    return stable, canary


def draining_names(model: CreditModel, status: Status) -> tuple[str, ...]:
    if model.spec.rollout.router == "knative":
        return ()  # Knative drains the revisions it replaces itself
    return tuple(
        builders.isvc_name(model.name, entry.bundle_uri, model.namespace)
        for entry in status.draining
    )


def paused(model: CreditModel, status: Status) -> bool:
    return model.spec.rollout.paused or status.paused_at is not None


def analysis_due(model: CreditModel, now: datetime) -> bool:
    """An analysis check falls due `intervalSeconds` after the last one, once the canary has been
    Ready, unless the rollout is paused or a manual action settles it in this pass."""
    canary = model.status.canary
    if canary is None or canary.ready_at is None or paused(model, model.status):
        return False
    if model.action in ACTIONS:
        return False
    return seconds_since(canary.last_check_at, now) >= model.spec.rollout.interval_seconds


def needs(model: CreditModel, now: datetime) -> Needs:
    status, spec = model.status, model.spec
    uri = spec.model.bundle_uri
    resolve = (
        uri if uri and (status.desired is None or status.desired.spec_bundle_uri != uri) else None
    )
    stable, canary = serving_names(model, status)
    names = (stable, canary or "", *draining_names(model, status))
    return Needs(
        resolve_bundle=resolve,
        inferenceservices=tuple(dict.fromkeys(name for name in names if name)),
        job=status.training.job_name,
        analysis=analysis_due(model, now),
        drift=drift.live_signal_wanted(model, now),
        drift_report=bool(spec.monitoring and status.stable),
        route=model.spec.rollout.router != "knative" and status.stable is not None,
    )


def polls(model: CreditModel, now: datetime) -> bool:
    """The CreditModel's passes look at something no watch event announces: a bundle not resolved
    yet (it may be published later), a canary's analysis (Prometheus), or anything of training or
    monitoring (a Job, its schedule and drift cool-downs, the stable's live drift, the drift
    report). Such a CreditModel is passed again every resync period. A CreditModel that only
    serves gets everything it reads by itself: its own and its children's watch events, KServe's
    readiness in the index, and the clock of `next_pass_in`."""
    wanted = needs(model, now)
    return bool(
        wanted.resolve_bundle
        or wanted.analysis
        or model.spec.training is not None
        or model.spec.monitoring is not None
    )


def next_pass_in(model: CreditModel, now: datetime, policy: Policy) -> float | None:
    """Seconds until something the clock decides falls due (an analysis check, a canary's Ready
    timeout, the end of a drain, the stable's Ready timeout); None when only a change can move
    the rollout."""
    status, spec = model.status, model.spec
    waits: list[float] = []
    canary = status.canary
    if canary is not None and not paused(model, status):
        if canary.ready_at is None:
            waits.append(policy.ready_timeout_seconds - seconds_since(canary.started_at, now))
        else:
            waits.append(spec.rollout.interval_seconds - seconds_since(canary.last_check_at, now))
    for entry in status.draining:
        if entry.since is not None:
            waits.append(policy.drain_seconds - seconds_since(entry.since, now))
    stable = not_ready_since(status)
    if stable is not None:
        left = policy.ready_timeout_seconds - seconds_since(stable[1], now)
        if left > 0:  # the pass that finds the stable overdue (Degraded StableNotReady)
            waits.append(left)
    return max(min(waits), 0.0) if waits else None


@dataclass(frozen=True)
class ChildEdit:
    """What one watch event of a child means to its CreditModel's next pass: `edited` when the
    child must be read again and corrected (someone changed what we write: its spec, which
    bumps the generation, its labels or annotations; or deleted it); `wake` when the pass has
    something new to see (an edit, a first sight, or a changed signal: KServe's readiness of an
    InferenceService). `seen` is what to remember of the child (None once it is gone)."""

    seen: tuple[str, str] | None
    edited: bool
    wake: bool


def child_edit(
    seen: tuple[str, str] | None, event: str | None, meta: Mapping[str, Any], signal: str = ""
) -> ChildEdit:
    """The first sight of a child (kopf's initial listing, or our own create) remembers it;
    a status update (KServe's conditions, a CronJob's last schedule) leaves the generation,
    labels and annotations alone, so it is no edit, and wakes the owner only when it moves the
    signal the state machine reads. Our own writes are remembered as they were answered, so
    their watch events neither edit nor wake."""
    if event == "DELETED":
        return ChildEdit(None, True, True)
    fields = [meta.get("generation"), meta.get("labels") or {}, meta.get("annotations") or {}]
    version = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    edited = seen is not None and seen[0] != version
    return ChildEdit((version, signal), edited, seen is None or edited or seen[1] != signal)
