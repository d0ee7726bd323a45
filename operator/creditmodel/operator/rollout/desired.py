"""Which version the rollout converges to: the spec's bundle once resolved (a finished training run
sets it as well, in training.py)."""

from __future__ import annotations

from dataclasses import dataclass

from creditmodel.operator.model import Desired, Status
from creditmodel.operator.rollout.values import CreditModel, Event, Observations, normal
from creditmodel.operator.validation import same_bundle


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
        error = f"spec.model.bundleURI {uri}: {resolved.error or 'no version'}"
        return Adopted(back_to_stable(status, uri), error=error)
    if not resolved.gates_passed:
        error = f"spec.model.bundleURI {uri}: its manifest records failed gates"
        return Adopted(back_to_stable(status, uri), error=error)
    stable = status.stable
    # the stable's own bundle spelt another way (file:///opt/x for /opt/x) is the stable
    place = stable.bundle_uri if stable and same_bundle(uri, stable.bundle_uri) else uri
    if stable is not None and resolved.version == stable.version and place != stable.bundle_uri:
        # Metrics, analysis and PSI tell the canary from the stable by the version label alone:
        # with one version on both, the canary's numbers would include the stable's traffic.
        error = (
            f"spec.model.bundleURI {uri}: its manifest's version {resolved.version} is the"
            f" stable's ({stable.bundle_uri}); publish it under a new version"
        )
        return Adopted(back_to_stable(status, uri), error=error)
    rejected = status.rejected
    update = {
        "desired": Desired(
            version=resolved.version, bundle_uri=place, source="spec", spec_bundle_uri=uri
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


def back_to_stable(status: Status, uri: str) -> Status:
    """The spec moved off the canary it had asked for, to a bundle that cannot be used: the
    rollout converges to the stable (canary.follow_desired cancels the canary) instead of going
    on with, or letting a promote finish, a version the spec no longer names. Its spec URI is
    forgotten, so the spec's bundle is resolved again on every pass, whichever it names next."""
    desired, stable = status.desired, status.stable
    if desired is None or desired.source != "spec" or desired.spec_bundle_uri == uri:
        return status  # the spec did not move, or a training run chose the version
    if status.canary is None or stable is None:  # a canary runs only beside a stable
        return status
    fallback = Desired(version=stable.version, bundle_uri=stable.bundle_uri, source="spec")
    return status.model_copy(update={"desired": fallback})
