"""Which version the rollout converges to: the spec's bundle once resolved (a finished training run
sets it as well, in training.py)."""

from __future__ import annotations

from dataclasses import dataclass

from creditmodel.operator.model import Desired, Status
from creditmodel.operator.rollout.values import CreditModel, Event, Observations, normal


@dataclass(frozen=True)
class Adopted:
    status: Status
    events: tuple[Event, ...] = ()
    error: str | None = None
    """Why spec.model.bundleURI cannot be used (Degraded names it)."""


def adopt(model: CreditModel, observed: Observations, status: Status) -> Adopted:
    """A newly resolved spec bundle becomes the desired version, unless it is unusable."""
    resolved, uri = observed.spec_bundle, model.spec.model.bundle_uri
    if resolved is None or uri is None or resolved.bundle_uri != uri:
        return Adopted(status)
    if resolved.error or resolved.version is None:
        return Adopted(
            status, error=f"spec.model.bundleURI {uri}: {resolved.error or 'no version'}"
        )
    if not resolved.gates_passed:
        return Adopted(
            status, error=f"spec.model.bundleURI {uri}: its manifest records failed gates"
        )
    rejected = status.rejected
    update = {
        "desired": Desired(
            version=resolved.version, bundle_uri=uri, source="spec", spec_bundle_uri=uri
        ),
        # named again explicitly: the user asks for a new attempt
        "rejected": None if rejected and rejected.bundle_uri == uri else rejected,
    }
    # A first version is announced once, by its Deploying (canary.follow_desired, this pass): at
    # 1,000 CreditModels applied at once, a second Event each is 1,000 writes more.
    announced = (
        (normal("NewVersion", f"spec asks for version {resolved.version} ({uri})"),)
        if status.stable is not None
        else ()
    )
    return Adopted(status.model_copy(update=update), announced)
