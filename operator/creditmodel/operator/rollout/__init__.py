"""The rollout state machine: (spec, status, observations, now) -> next status, desired children,
training Job to create, Events. Pure, so every transition is unit-tested without a cluster, and
restart-safe by construction: everything it needs to continue lives in the status it returns (and
the drain clock in the HTTPRoute it writes).

Small decision steps, each a pure function returning values (machine.py runs them in order):
desired (which version to converge to), training (Job outcomes and starts), drift (reports, the
CronJob's fate, the one drift-retrain policy), actions (manual controls), canary (start, analysis,
promotion, rollback), traffic (weights, drains, children), conditions; observe says what a pass must
look at and when the next one falls due. The invariants they keep are in docs/rollouts.md.
"""

from creditmodel.operator.model import parse_time
from creditmodel.operator.rollout.conditions import (
    Part,
    describe_errors,
    unreadable,
    unreadable_spec,
)
from creditmodel.operator.rollout.machine import reconcile
from creditmodel.operator.rollout.observe import (
    ChildEdit,
    analysis_due,
    child_edit,
    needs,
    next_pass_in,
    polls,
    serving_names,
)
from creditmodel.operator.rollout.traffic import ZERO_SINCE_ANNOTATION, observed_route
from creditmodel.operator.rollout.training import training_failure
from creditmodel.operator.rollout.values import (
    ACTIONS,
    ChildRefusal,
    CreditModel,
    CronJobWrite,
    DriftReport,
    Event,
    JobState,
    Needs,
    Observations,
    Plan,
    Policy,
    Resolved,
    RouteState,
    timestamp,
)

__all__ = [
    "ACTIONS",
    "ZERO_SINCE_ANNOTATION",
    "ChildEdit",
    "ChildRefusal",
    "CreditModel",
    "CronJobWrite",
    "DriftReport",
    "Event",
    "JobState",
    "Needs",
    "Observations",
    "Part",
    "Plan",
    "Policy",
    "Resolved",
    "RouteState",
    "analysis_due",
    "child_edit",
    "describe_errors",
    "needs",
    "next_pass_in",
    "observed_route",
    "parse_time",
    "polls",
    "reconcile",
    "serving_names",
    "timestamp",
    "training_failure",
    "unreadable",
    "unreadable_spec",
]
