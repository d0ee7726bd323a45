"""What the reconcile loop reads of its InferenceServices: KServe's readiness, kept current from
the watch stream by one kopf index (handlers.isvc_readiness), so the loop never polls them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple, TypeVar

import kopf

Key = tuple[str, str]
"""(namespace, name)"""
V = TypeVar("V")


class Readiness(NamedTuple):
    """What the state machine reads of one of our InferenceServices, kept by one watch-fed kopf
    index (handlers.isvc_readiness)."""

    ready: bool
    """KServe's Ready condition is True."""
    waiting: str | None = None
    """Not Ready: what KServe says keeps it from Ready (its first False condition with a
    message), if it says anything."""
    copies: int = 0
    """The pods KServe counts ready behind it (status.modelStatus.copies.totalCopies). KServe
    marks an InferenceService not Ready when an update of its Deployment fails (a quota, a missing
    ServiceAccount: the Deployment's ReplicaFailure) while the old ReplicaSet's pods still serve."""


class InNamespace(Mapping[str, V]):
    """InferenceService name -> one field of its Readiness, read on demand from the index, so the
    state machine sees any of our InferenceServices it asks about (not only the ones `needs` named
    before it decided). A name whose field is None is absent.

    A lookup is O(1); iterating, `len` and truth value walk the whole index (every namespace), so
    the reconcile path only looks names up: at 1,000 CreditModels in one namespace, the truth value
    taken once per pass (`waiting or {}`) was a ninth of the operator's CPU while they were
    applied."""

    def __init__(
        self,
        index: kopf.Index[Key, Readiness],
        namespace: str,
        pick: Callable[[Readiness], V | None],
    ) -> None:
        self.index, self.namespace, self.pick = index, namespace, pick

    def __getitem__(self, isvc: str) -> V:
        key = (self.namespace, isvc)
        value = self.pick(next(iter(self.index[key]))) if key in self.index else None
        if value is None:  # one InferenceService, one value
            raise KeyError(isvc)
        return value

    def __iter__(self) -> Iterator[str]:
        return (
            name for namespace, name in self.index if namespace == self.namespace and name in self
        )

    def __len__(self) -> int:
        return sum(1 for _ in self)
