"""Traffic: the route's weights, the drain of versions that left the rollout, and the children that
carry them. The rules (docs/rollouts.md):

- a backend gets weight > 0 only when its InferenceService is Ready, with one exception: when no
  backend is Ready, a stable the route as read gives traffic keeps all of it while KServe counts
  ready pods behind it (`held`: a failed update of its Deployment leaves the old pods serving);
- the weights sum to 100 over the Ready backends (stable and canary by the canary's step; when only
  one of them is Ready, it gets everything; when neither is, a Ready draining version does, else
  the held stable);
- a draining version's InferenceService is deleted only once the route has held 0% on it for the
  drain period (the route itself records since when, written in the same request as the weights)
  and the stable is Ready.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from creditmodel.operator import builders
from creditmodel.operator.model import GROUP, Status, VersionRef, readable_time
from creditmodel.operator.rollout.observe import serving_names
from creditmodel.operator.rollout.values import (
    HELD_REASON,
    CreditModel,
    Event,
    Observations,
    Policy,
    RouteState,
    isvc_of_service,
    normal,
    seconds_since,
    stamp,
    warning,
)

ZERO_SINCE_ANNOTATION = f"{GROUP}/zero-weight-since"
"""On the HTTPRoute: backend InferenceService -> since when the route has held 0% on it."""


@dataclass(frozen=True)
class Backend:
    name: str
    """Its InferenceService."""
    version: VersionRef | None
    """None: a backend found in the stored route that the status does not know (written by a pass
    whose status write failed): kept at 0% until drained, never written."""
    track: Literal["stable", "canary", "draining"]
    target: int
    """The weight it asks for when every backend is Ready."""


def canary_target(model: CreditModel, status: Status) -> int:
    """The canary's weight at its step (0 without a canary)."""
    steps = model.spec.rollout.steps
    return steps[min(status.canary.step, len(steps) - 1)] if status.canary else 0


def backends(model: CreditModel, status: Status, route: RouteState | None = None) -> list[Backend]:
    """Stable, canary, the draining versions, then the stored route's backends the status does
    not know, in the order they get traffic when the ones before are not Ready (router
    gatewayAPI; one InferenceService each)."""
    if status.stable is None:
        return []
    weight = canary_target(model, status)
    found = [Backend(_name(model, status.stable), status.stable, "stable", 100 - weight)]
    if status.canary is not None:
        found.append(Backend(_name(model, status.canary), status.canary, "canary", weight))
    found += [Backend(_name(model, entry), entry, "draining", 0) for entry in status.draining]
    found += [Backend(name, None, "draining", 0) for name in (route.weights if route else ())]
    unique: dict[str, Backend] = {}
    for backend in found:
        unique.setdefault(backend.name, backend)
    return list(unique.values())


def _name(model: CreditModel, version: VersionRef) -> str:
    return builders.isvc_name(model.name, version.bundle_uri, model.namespace)


def weights(
    found: Sequence[Backend], ready: Mapping[str, bool], held: str | None = None
) -> dict[str, int]:
    """Weight > 0 only on Ready backends, 100 in all when any is Ready; when none is, all of it
    on the `held` stable, if any (see the module's rules)."""
    shares = dict.fromkeys((b.name for b in found), 0)
    live = [b for b in found if ready.get(b.name, False)]
    wanting = [b for b in live if b.target > 0]
    if len(wanting) > 1:
        shares.update((b.name, b.target) for b in wanting)  # stable and canary: 100 between them
    elif live:
        shares[live[0].name] = 100  # the first Ready one: stable, canary (steps < 100), draining
    elif held is not None:  # the stable: always among `found`
        shares[held] = 100
    return shares


def held(model: CreditModel, status: Status, observed: Observations) -> str | None:
    """The stable's InferenceService when KServe marks it not Ready while it counts ready pods
    behind it and the route as read gives it traffic; else None. KServe's Ready turns False when
    an update of the Deployment fails (a quota, a missing ServiceAccount) though the old
    ReplicaSet's pods still serve: taking the route off them would make that an outage. Never a
    canary: a version gets its first traffic only once Ready."""
    stable, _ = serving_names(model, status)  # "" without a stable: no route weight, no pods
    stored = observed.route
    if stored is None or observed.ready.get(stable, False):
        return None
    if stored.weights.get(stable, 0) <= 0 or observed.copies.get(stable, 0) <= 0:
        return None
    return stable


def carries(model: CreditModel, observed: Observations, status: Status) -> bool:
    """Whether the route as read holds the weights `status` asks for over the Ready backends
    (router gatewayAPI). Knative, or a route not read this pass, counts as holding them."""
    stored = observed.route
    if model.spec.rollout.router == "knative" or stored is None:
        return True
    wanted = weights(backends(model, status, stored), observed.ready, held(model, status, observed))
    return all(stored.weights.get(name, 0) == share for name, share in wanted.items())


def drained(
    name: str, route: RouteState | None, stable_ready: bool, now: datetime, policy: Policy
) -> bool:
    """The route has held 0% on `name` for the drain period, and the stable is Ready."""
    if route is None or not stable_ready or route.weights.get(name, 0) != 0:
        return False
    since = route.zero_since.get(name)
    return since is not None and seconds_since(since, now) >= policy.drain_seconds


def zero_since(
    draining: Sequence[str], shares: Mapping[str, int], route: RouteState | None, now: datetime
) -> dict[str, str]:
    """Since when each draining backend at 0% has held 0%: kept from the stored route where it
    already held 0% there, else from this pass (whose route write records it with the weights)."""
    since: dict[str, str] = {}
    for name in draining:
        if shares.get(name, 0) != 0:
            continue
        held = route is not None and route.weights.get(name, 0) == 0
        kept = route.zero_since.get(name) if route is not None and held else None
        since[name] = kept or stamp(now)
    return since


@dataclass(frozen=True)
class Routed:
    status: Status
    found: tuple[Backend, ...] = ()
    """The route's backends, in order (router gatewayAPI)."""
    shares: Mapping[str, int] = field(default_factory=dict)
    """InferenceService -> weight (router gatewayAPI)."""
    since: Mapping[str, str] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    stored: RouteState | None = None
    """The route as read this pass (None: not read; empty weights: there is none)."""


def _hold(model: CreditModel, status: Status) -> bool | None:
    """Router knative: whether KServe must keep 100% on its last rolled-out revision. Set when
    a canary ends this pass without becoming the stable; cleared by a new canary or a new stable
    (a promotion, the rollback action): with the canary's revision the newest Ready one, leaving
    the split out would send it all the traffic."""
    before = model.status
    stable = status.stable.bundle_uri if status.stable else None
    if status.canary is not None or stable != (before.stable.bundle_uri if before.stable else None):
        return None
    if before.canary is not None:
        return True
    return status.knative_hold


def route(
    model: CreditModel, observed: Observations, status: Status, now: datetime, policy: Policy
) -> Routed:
    """Finish the drains that are done, then weigh the backends that remain; status.canaryWeight
    is the canary's weight as routed (while the route's write is refused, what the route as read
    holds), status.draining[].since the drain clock as routed."""
    stable, canary = serving_names(model, status)
    ready, stored = observed.ready, observed.route
    if model.spec.rollout.router == "knative":
        # One InferenceService: Knative keeps serving the previous revision until the new one is
        # Ready, and drains the revisions it replaces itself.
        weight = canary_target(model, status) if canary and ready.get(canary, False) else 0
        update = {"canary_weight": weight, "draining": [], "knative_hold": _hold(model, status)}
        return Routed(status.model_copy(update=update))
    stable_ready = ready.get(stable, False)
    leaving = [b for b in backends(model, status, stored) if b.track == "draining"]
    done = {b.name for b in leaving if drained(b.name, stored, stable_ready, now, policy)}
    kept = [entry for entry in status.draining if _name(model, entry) not in done]
    events = tuple(
        normal(
            "Drained",
            f"{b.version.version if b.version else b.name} held 0% for {policy.drain_seconds:g}s"
            f" with {status.stable.version if status.stable else 'none'} Ready: its"
            " InferenceService is deleted",
        )
        for b in leaving
        if b.name in done
    )
    status = status.model_copy(update={"draining": kept})
    found = [b for b in backends(model, status, stored) if b.name not in done]
    keeping = held(model, status, observed)
    shares = weights(found, ready, keeping)
    if keeping is not None and not _reported_held(status):
        events += (_held_event(found[0], observed),)  # found[0]: the stable
    since = zero_since([b.name for b in found if b.track == "draining"], shares, stored, now)
    routed: Mapping[str, int] = shares
    if observed.refused is not None and observed.refused.kind == "HTTPRoute" and stored is not None:
        routed = stored.weights  # the route keeps what it held until a write is accepted
    update = {
        "canary_weight": routed.get(canary, 0) if canary else 0,
        "draining": [
            entry.model_copy(update={"since": since.get(_name(model, entry))}) for entry in kept
        ],
    }
    return Routed(status.model_copy(update=update), tuple(found), shares, since, events, stored)


def _reported_held(status: Status) -> bool:
    """The last pass already said the stable is held (its Ready condition)."""
    return getattr(status.condition("Ready"), "reason", None) == HELD_REASON


def _held_event(stable: Backend, observed: Observations) -> Event:
    said = observed.waiting.get(stable.name)
    return warning(
        HELD_REASON,
        f"{getattr(stable.version, 'version', stable.name)} is not Ready"
        f"{f' (KServe: {said})' if said else ''}; its {observed.copies.get(stable.name, 0)} ready"
        " pods keep all the traffic",
    )


def children(
    model: CreditModel,
    routed: Routed,
    cronjob: bool,
    network: builders.IngressPolicy | None = None,
) -> list[dict[str, Any]]:
    """The predictors' NetworkPolicy (before any pod exists), InferenceServices (stable, canary,
    draining), the route, then the drift CronJob: should the API server refuse the CronJob,
    serving is already written."""
    status, spec, owner = routed.status, model.spec, model.owner
    if status.stable is None:
        return []
    guard = [builders.build_predictor_networkpolicy(owner, spec, network)] if network else []
    drift = (
        [builders.build_drift_cronjob(owner, spec, status.stable)]
        if cronjob and spec.monitoring is not None
        else []
    )
    if spec.rollout.router == "knative":
        serving = status.canary or status.stable
        weight = status.canary_weight if status.canary else (0 if status.knative_hold else None)
        knative = builders.build_knative_inferenceservice(owner, spec, serving, weight)
        return [*guard, knative, *drift]
    isvcs = [
        builders.build_inferenceservice(owner, spec, b.version)
        for b in routed.found
        if b.version is not None
    ]
    route = [httproute(model, status.stable, routed)] if route_wanted(routed) else []
    return [*guard, *isvcs, *route, *drift]


def route_wanted(routed: Routed) -> bool:
    """The route is written once it has traffic to carry, and from then on whatever it holds.
    Before a first version is Ready a route could only hold 0% everywhere (the gateway answers
    500 where it would answer 404), and writing it then means writing it again at Ready: one
    more write for each of 1,000 CreditModels applied at once, while the API server is busiest."""
    stored = routed.stored
    return any(routed.shares.values()) or (stored is not None and bool(stored.weights))


def entry_url(model: CreditModel, status: Status) -> str | None:
    """The stable entry clients call: the HTTPRoute's first hostname (router gatewayAPI), the
    same whichever version serves. None without a hostname or a stable version."""
    hostnames = model.spec.rollout.hostnames
    if status.stable is None or model.spec.rollout.router != "gatewayAPI" or not hostnames:
        return None
    return f"http://{hostnames[0]}"


def retained(routed: Routed) -> tuple[str, ...]:
    """InferenceServices to keep without writing them: the stored route's backends that the
    status does not know, until they are drained."""
    return tuple(b.name for b in routed.found if b.version is None)


def httproute(model: CreditModel, stable: VersionRef, routed: Routed) -> dict[str, Any]:
    """builders' HTTPRoute with one backend per InferenceService, weighted as routed, and the
    drain clock in an annotation, so that both change in one write."""
    route = builders.build_httproute(model.owner, model.spec, stable, None, 0)
    rule = route["spec"]["rules"][0]
    template = rule["backendRefs"][0]
    rule["backendRefs"] = [
        {**template, "name": builders.predictor_service(b.name), "weight": routed.shares[b.name]}
        for b in listed(routed)
    ]
    annotations = route["metadata"].setdefault("annotations", {})
    annotations[ZERO_SINCE_ANNOTATION] = json.dumps(dict(routed.since), sort_keys=True)
    return route


def listed(routed: Routed) -> list[Backend]:
    """The backends the route names, in order: all of them, unless more versions are draining than
    Gateway API allows in one rule (16 backendRefs; 16 bundles applied within one drain period).
    Then the route names the stable and the canary, every backend with traffic, then the ones
    only the route knows (nothing else keeps them), and leaves out draining versions at 0%: for
    the gateway a backend at 0% and an absent one are alike, and their drain clocks stay in the
    annotation."""
    found, shares = routed.found, routed.shares

    def order(i: int) -> tuple[bool, bool, bool]:
        backend = found[i]
        leaving = backend.track == "draining"
        return leaving, shares[backend.name] == 0, backend.version is not None

    rank = sorted(range(len(found)), key=order)
    kept = set(rank[: builders.HTTPROUTE_MAX_BACKENDS])
    return [backend for i, backend in enumerate(found) if i in kept]


def observed_route(body: Mapping[str, Any] | None) -> RouteState:
    """What the adapter read back: weights by InferenceService, and the drain clock (an
    unreadable annotation counts as no clock: the drain starts over)."""
    if body is None:
        return RouteState()
    refs = (body.get("spec", {}).get("rules") or [{}])[0].get("backendRefs") or []
    weights = {isvc_of_service(str(r.get("name", ""))): int(r.get("weight", 1)) for r in refs}
    text = (body.get("metadata", {}).get("annotations") or {}).get(ZERO_SINCE_ANNOTATION, "{}")
    try:
        since = json.loads(text)
    except ValueError:
        since = {}
    if not isinstance(since, dict):
        since = {}
    # A clock edited into something that is no time (anyone who may edit the route can) is no
    # clock either; read as one, it failed every pass of the owner.
    return RouteState(weights, {str(k): v for k, v in since.items() if readable_time(v)})
