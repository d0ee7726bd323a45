"""Frozen reference statistics of a bundle (`reference.json`), used for PSI and reason codes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Bins(BaseModel):
    """Reference distribution on fixed bins: `edges` are the inner cut points (deciles), so there
    are `len(edges) + 1` bins; a value v falls in bin `searchsorted(edges, v, side="right")`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edges: list[float]
    fractions: list[Annotated[float, Field(ge=0.0, le=1.0)]]

    @model_validator(mode="after")
    def _consistent(self) -> Bins:
        if len(self.fractions) != len(self.edges) + 1:
            raise ValueError("fractions must have one more entry than edges")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly increasing")
        if abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ValueError("fractions must sum to 1")
        return self


class NumericReference(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["numeric"] = "numeric"
    bins: Bins
    # Value a "typical" applicant has; reason codes measure how far a row's risk moves from it.
    baseline: float


class CategoricalReference(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["categorical"] = "categorical"
    frequencies: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]]
    baseline: str

    @model_validator(mode="after")
    def _consistent(self) -> CategoricalReference:
        if self.baseline not in self.frequencies:
            raise ValueError("baseline must be one of the categories")
        if abs(sum(self.frequencies.values()) - 1.0) > 1e-6:
            raise ValueError("frequencies must sum to 1")
        return self


FeatureReference = Annotated[NumericReference | CategoricalReference, Field(discriminator="kind")]


class Reference(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    features: dict[str, FeatureReference]
    # Deciles of the (integer) score on the training data, for score PSI.
    score: Bins
    # Same, on the probability scale.
    probability: Bins
