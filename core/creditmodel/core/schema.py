"""Feature schema of a bundle (`schema.json`): the V2 inputs a model accepts and how to check them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FeatureKind = Literal["numeric", "categorical"]
V2Datatype = Literal["FP32", "INT64", "BYTES"]


class Feature(BaseModel):
    """One model input; V2 requests carry one tensor per feature, named `name`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    kind: FeatureKind
    datatype: V2Datatype
    description: str
    # Stable adverse-action reason code (e.g. "R07"); never renumbered between versions.
    reason_code: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]{1,7}$")]
    categories: list[str] | None = None
    minimum: float | None = None
    maximum: float | None = None

    @model_validator(mode="after")
    def _kind_matches_fields(self) -> Feature:
        if self.kind == "categorical":
            if self.datatype != "BYTES":
                raise ValueError(f"feature {self.name!r}: categorical features use datatype BYTES")
            if not self.categories:
                raise ValueError(f"feature {self.name!r}: categorical feature needs categories")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError(f"feature {self.name!r}: duplicate categories")
        else:
            if self.datatype == "BYTES":
                raise ValueError(f"feature {self.name!r}: numeric features use FP32 or INT64")
            if self.categories is not None:
                raise ValueError(f"feature {self.name!r}: numeric feature cannot have categories")
            if (
                self.minimum is not None
                and self.maximum is not None
                and self.minimum > self.maximum
            ):
                raise ValueError(f"feature {self.name!r}: minimum is above maximum")
        return self


class Schema(BaseModel):
    """Ordered features plus the target they predict (positive label = default / bad)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: list[Feature]
    target: str
    positive_label: str

    @model_validator(mode="after")
    def _unique(self) -> Schema:
        names = [f.name for f in self.features]
        if not names:
            raise ValueError("schema has no features")
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        codes = [f.reason_code for f in self.features]
        if len(set(codes)) != len(codes):
            raise ValueError("reason codes must be unique")
        if self.target in names:
            raise ValueError(f"target {self.target!r} is also a feature")
        return self

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)
