"""Typed settings of a training run. Every knob has a default that suits German-Credit-sized data;
`TrainingConfig.quick()` is the preset test fixtures use to build a real bundle in seconds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from creditmodel.core.points import PointsScaling
from creditmodel.core.schema import FeatureKind


class FeatureSpec(BaseModel):
    """What the user pins about one column; anything left out is inferred from the data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: FeatureKind | None = None
    description: str | None = None
    reason_code: str | None = None
    categories: list[str] | None = None
    # Finite: a NaN or infinite bound was published as no bound at all.
    minimum: Annotated[float, Field(allow_inf_nan=False)] | None = None
    maximum: Annotated[float, Field(allow_inf_nan=False)] | None = None


def _once_each(features: list[FeatureSpec]) -> list[FeatureSpec]:
    """Each column pinned at most once: a repeated name silently dropped the first entry."""
    names = [spec.name for spec in features]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"features: {', '.join(map(repr, repeated[:10]))} listed more than once")
    return features


Features = Annotated[list[FeatureSpec], AfterValidator(_once_each)]


class FeatureSpecFile(BaseModel):
    """The `--features` JSON file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: Features = []
    audit_only: list[str] = []
    exclude: list[str] = []


class SearchSpace(BaseModel):
    """The cross-validated grid over MLP width and L2 regularisation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_units: Annotated[list[Annotated[int, Field(ge=1, le=1024)]], Field(min_length=1)] = [
        8,
        16,
    ]
    # Strong L2: on a few thousand rows weaker penalties overfit (CV AUC 0.02-0.03 lower on
    # German Credit than with alpha 1-3).
    alphas: Annotated[
        list[Annotated[float, Field(gt=0, allow_inf_nan=False)]], Field(min_length=1)
    ] = [
        0.3,
        1.0,
        3.0,
    ]
    folds: Annotated[int, Field(ge=2, le=20)] = 5
    max_iter: Annotated[int, Field(ge=10)] = 300
    # The CV search and the LR baseline run on at most this many rows (a stratified sample), so
    # a million-row run spends its time on the final fit, not on folds x grid fits.
    search_rows: Annotated[int, Field(ge=100)] = 10_000
    # Processes for the CV fits (None: one per CPU). Results do not depend on it.
    jobs: Annotated[int, Field(ge=1)] | None = None
    # The final MLP is fitted on at most this many rows (stratified sample); None = all rows.
    fit_rows: Annotated[int, Field(ge=100)] | None = None


class GateThresholds(BaseModel):
    """Quality gates; a failed gate publishes nothing. All recorded in the manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The MLP must be at least as good as logistic regression, minus this margin (CV AUC).
    auc_margin_vs_baseline: Annotated[float, Field(ge=0)] = 0.005
    # fp32 ONNX vs scikit-learn, max |probability difference| on the evaluation rows.
    onnx_max_abs_dp: Annotated[float, Field(gt=0)] = 1e-5
    int8_max_auc_drop: Annotated[float, Field(ge=0)] = 0.005
    int8_max_abs_dp: Annotated[float, Field(gt=0)] = 0.02
    # Out-of-fold Brier score must not exceed this (0.25 is a coin flip at p=0.5).
    max_brier: Annotated[float, Field(gt=0, le=1)] = 0.25
    # Approval-rate ratio (lowest group / highest group) at the cut-off, per audited attribute:
    # the four-fifths rule. Groups smaller than `fairness_min_group` rows are reported, not gated.
    min_approval_ratio: Annotated[float, Field(ge=0, le=1)] = 0.8
    fairness_min_group: Annotated[int, Field(ge=1)] = 30
    # The INT8 model run natively vs under each `cpu_models` qemu CPU model, max |dp|: the same
    # applicant must get the same probability on every node type of a cluster.
    cpu_max_abs_dp: Annotated[float, Field(ge=0)] = 1e-6


Scoring = PointsScaling
"""Points scaling: the predictor serves the bundle's with the same definition (manifest params),
so a scaling whose scores would not fit its INT32 output is refused here, before training."""


class TrainingConfig(BaseModel):
    """One training run. `data` is a URI (local path or s3://bucket/key, CSV or Parquet) unless a
    DataFrame is passed to `pipeline.train` directly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    positive_label: str
    model_name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    data: str | None = None
    output: Annotated[str, Field(min_length=1)] | None = None  # "" published nothing, exit 0
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")] | None = None
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0  # numpy's seed range
    features: Features = []
    # Columns used only for the fairness audit, never as model inputs (e.g. sex, national origin).
    audit_only: list[str] = []
    exclude: list[str] = []
    # Approve when the probability of default is below this; the fairness audit uses it.
    cutoff: Annotated[float, Field(gt=0, lt=1)] = 0.5
    search: SearchSpace = SearchSpace()
    gates: GateThresholds = GateThresholds()
    scoring: Scoring = Scoring()
    # Fail the run (and publish nothing) when a gate fails. Off: gates are still evaluated and
    # recorded in the manifest, and the bundle is published anyway (exploratory runs, fixtures).
    enforce_gates: bool = True
    code_version: str | None = None
    # qemu-user CPU models the INT8 model is also run under (cpu_parity.CPU_MODELS); empty: the
    # cross-CPU check is skipped and the model card says so.
    cpu_models: tuple[Literal["Haswell", "Nehalem"], ...] = ("Haswell", "Nehalem")

    @model_validator(mode="after")
    def _disjoint(self) -> TrainingConfig:
        overlap = set(self.audit_only) & set(self.exclude)
        if overlap:
            raise ValueError(f"columns {sorted(overlap)} are both audit_only and excluded")
        return self

    @classmethod
    def quick(cls, **overrides: object) -> TrainingConfig:
        """A small grid and few folds: a real, valid bundle in a few seconds (test fixtures)."""
        values: dict[str, object] = {
            # The one grid point that keeps within the LR-baseline gate on synthetic data from
            # 500 to 3,000 rows and any seed we tried (a narrower or weaker-penalised MLP does not).
            "search": SearchSpace(hidden_units=[16], alphas=[3.0], folds=3, max_iter=200),
            # Emulated CPUs add seconds per bundle; tests that need the check ask for it.
            "cpu_models": (),
        }
        values.update(overrides)
        return cls.model_validate(values)
