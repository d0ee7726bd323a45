"""CreditModel objects as the API server holds them (metadata.generation, spec, status), with the
status produced by the operator's pure state machine (`rollout.reconcile`) along a rollout story.

The GitOps checks (kstatus conditions, the Argo CD Lua health check, `kubectl wait`) judge these,
so they see exactly what the operator writes, not hand-written status documents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from creditmodel.operator import analysis, builders
from creditmodel.operator.rollout import (
    CreditModel,
    JobState,
    Observations,
    Plan,
    Resolved,
    reconcile,
)
from tests.operator.factories import BUNDLE_V1, BUNDLE_V2, advance, after, model, spec

V1 = builders.isvc_name("german", BUNDLE_V1)
V2 = builders.isvc_name("german", BUNDLE_V2)
FAILED = analysis.Result("failed", "success rate 0.5 (min 0.99)")


def step(current: CreditModel, observed: Observations, seconds: float = 0) -> CreditModel:
    return advance(current, reconcile(current, observed, after(seconds)))


def deploying() -> CreditModel:
    """The first version is stable, its InferenceService not Ready yet."""
    return step(model(), Observations(spec_bundle=Resolved(BUNDLE_V1, "v1")))


def serving() -> CreditModel:
    return step(deploying(), Observations(ready={V1: True}))


def spec_changed() -> CreditModel:
    """A new bundle in the spec (generation 2) that the operator has not seen yet."""
    current = serving()
    return advance(
        current,
        Plan(current.status, []),
        spec=spec(model={"bundleURI": BUNDLE_V2}),
        generation=2,
    )


def canary_waiting() -> CreditModel:
    observed = Observations(spec_bundle=Resolved(BUNDLE_V2, "v2"), ready={V1: True})
    return step(spec_changed(), observed)


def canary_analysis() -> CreditModel:
    return step(canary_waiting(), Observations(ready={V1: True, V2: True}))


def canary_paused() -> CreditModel:
    current = canary_analysis()
    paused = advance(current, Plan(current.status, []), action="pause")
    return step(paused, Observations(ready={V1: True, V2: True}), 30)


def rolled_back() -> CreditModel:
    current = canary_analysis()
    for seconds in (60, 120):
        observed = Observations(ready={V1: True, V2: True}, analysis=FAILED)
        current = step(current, observed, seconds)
    return current


def bundle_unavailable() -> CreditModel:
    observed = Observations(spec_bundle=Resolved(BUNDLE_V1, error="no manifest.json"))
    return step(model(), observed)


def training_first() -> CreditModel:
    """Nothing published yet; the first training Job runs."""
    trained = spec(
        model={},
        training={
            "dataURI": "s3://data/german.csv",
            "target": "credit_risk",
            "positiveLabel": "bad",
            "outputURI": "s3://bundles/german",
        },
    )
    return step(model(trained), Observations())


def training_failed() -> CreditModel:
    failed = JobState("Failed", "BackoffLimitExceeded", "Job has reached the backoff limit")
    return step(training_first(), Observations(job=failed), 300)


STORIES: dict[str, Callable[[], CreditModel]] = {
    "deploying": deploying,
    "serving": serving,
    "spec-changed": spec_changed,
    "canary-waiting": canary_waiting,
    "canary-analysis": canary_analysis,
    "canary-paused": canary_paused,
    "rolled-back": rolled_back,
    "bundle-unavailable": bundle_unavailable,
    "training-first": training_first,
    "training-failed": training_failed,
}


def as_object(current: CreditModel) -> dict[str, Any]:
    """The CreditModel as `kubectl get -o json` shows it."""
    status = current.status.dump()
    return {
        "apiVersion": "scoring.creditmodel.io/v1alpha1",
        "kind": "CreditModel",
        "metadata": {
            "name": current.name,
            "namespace": current.namespace,
            "generation": current.generation,
        },
        "spec": current.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
        **({"status": status} if status else {}),
    }


def new_object() -> dict[str, Any]:
    """Just applied: no status yet."""
    created = as_object(model())
    created.pop("status", None)
    return created
