"""A minimal, well-formed bundle for contract tests (model files are opaque bytes here)."""

from __future__ import annotations

from datetime import UTC, datetime

from creditmodel.core import bundle
from creditmodel.core.reference import Bins, CategoricalReference, NumericReference, Reference
from creditmodel.core.schema import Feature, Schema

SCHEMA = Schema(
    features=[
        Feature(
            name="age",
            kind="numeric",
            datatype="INT64",
            description="Age in years",
            reason_code="R01",
            minimum=18,
            maximum=100,
        ),
        Feature(
            name="housing",
            kind="categorical",
            datatype="BYTES",
            description="Housing",
            reason_code="R02",
            categories=["own", "rent"],
        ),
    ],
    target="default",
    positive_label="bad",
)
BINS = Bins(edges=[30.0, 45.0], fractions=[0.3, 0.4, 0.3])
REFERENCE = Reference(
    features={
        "age": NumericReference(bins=BINS, baseline=38.0),
        "housing": CategoricalReference(frequencies={"own": 0.7, "rent": 0.3}, baseline="own"),
    },
    score=Bins(edges=[550.0, 600.0], fractions=[0.3, 0.4, 0.3]),
    probability=Bins(edges=[0.1, 0.3], fractions=[0.3, 0.4, 0.3]),
)


def files() -> dict[str, bytes]:
    return {
        bundle.MODEL_FP32: b"fp32-model-bytes",
        bundle.MODEL_INT8: b"int8-model-bytes",
        bundle.SCHEMA: SCHEMA.model_dump_json().encode(),
        bundle.REFERENCE: REFERENCE.model_dump_json().encode(),
        bundle.MODEL_CARD: b"# card\n",
    }


def manifest(contents: dict[str, bytes], version: str = "v1") -> bundle.Manifest:
    return bundle.Manifest(
        model_name="german-credit",
        version=version,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        lineage=bundle.Lineage(
            data_uri="file:///data.csv",
            data_sha256="0" * 64,
            rows=1000,
            code_version="test",
            seed=7,
        ),
        files={name: bundle.file_entry(data) for name, data in contents.items()},
        metrics={"auc": 0.78},
        gates=[bundle.Gate(name="auc", passed=True, value=0.78, threshold=0.7)],
    )
