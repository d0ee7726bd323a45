"""One pass of the state machine: (object, observations, now, policy) -> plan. Each step is a pure
function of the status the previous step returned; the status the pass ends with is all a
restarted operator needs to continue.

Order: adopt a newly resolved spec bundle, follow the training Job, record the drift report and
the CronJob's fate, carry out a manual action, move the rollout towards the desired version and
progress the canary, let a drift signal through the one drift-retrain policy, start a training Job
when one is due, weigh the route and finish the drains, then the conditions.
"""

from __future__ import annotations

from datetime import datetime

from creditmodel.operator import validation
from creditmodel.operator.rollout import (
    actions,
    canary,
    conditions,
    desired,
    drift,
    traffic,
    training,
)
from creditmodel.operator.rollout.values import CreditModel, Observations, Plan, Policy


def reconcile(
    model: CreditModel, observed: Observations, now: datetime, policy: Policy | None = None
) -> Plan:
    """One step of the state machine. Deterministic in its inputs."""
    policy = policy or Policy()
    adopted = desired.adopt(model, observed, drift.migrate(model.status))
    followed = training.follow(model, observed, adopted.status, now)
    recorded = drift.record(model, observed, followed.status)
    acted = actions.act(model, observed, recorded.status, now)
    moved = canary.follow_desired(model, acted.status, now)
    carried = traffic.carries(model, observed, moved.status)
    progressed = canary.progress(model, observed, moved.status, now, policy, carried)
    decided = drift.decide(model, observed, progressed.status, recorded.report, now)
    started = training.start(model, progressed.status, now, decided.retrain)
    routed = traffic.route(model, observed, started.status, now, policy)
    schedule = drift.schedule_problem(model)
    naming = validation.name_problem(model.name, model.namespace)
    children = (
        []  # nothing KServe could deploy under this name
        if naming
        else traffic.children(model, routed, schedule is None, policy.network_policy)
    )
    problems = conditions.Problems(
        bundle=adopted.error, spec=naming or schedule, refused=observed.refused, undeployable=naming
    )
    status = conditions.conditions(
        model, observed, routed.status, routed.shares, problems, now, policy.ready_timeout_seconds
    )
    status = status.model_copy(update={"url": traffic.entry_url(model, status)})
    events = [
        *adopted.events,
        *followed.events,
        *recorded.events,
        *acted.events,
        *moved.events,
        *progressed.events,
        *decided.events,
        *started.events,
        *routed.events,
    ]
    return Plan(
        status,
        children,
        started.job,
        events,
        clear_action=acted.clear,
        retained=traffic.retained(routed),
    )
