"""The committed reference bundle is valid, reproducible and portable: rebuilding it from the
bundled data with the same code gives byte-identical model, schema and reference files on any
x86-64 build machine, and its INT8 model scores identically under every CPU kernel family.

What may legitimately differ in a rebuild: the manifest (created_at, code version, the build
machine's kernel family in lineage) and, in the model card, the measured value of the cross-CPU
gate (floating-point noise below its 1e-6 bound)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from creditmodel.core import bundle
from creditmodel.training import (
    cpu_parity,
    export,
    german_credit,
    provenance,
    reference_bundle,
)
from tests.support.process import tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "models" / reference_bundle.NAME


def test_committed_reference_bundle_is_valid() -> None:
    loaded = bundle.load_bundle(str(COMMITTED))
    assert loaded.manifest.model_name == "german-credit"
    assert loaded.manifest.gates_passed
    assert len(loaded.schema.features) == 17  # 20 attributes minus the three audit-only ones
    assert {g.name for g in loaded.manifest.gates} >= {
        "int8_cpu_parity",
        "fairness_age",
        "fairness_personal_status_sex",
        "fairness_foreign_worker",
    }


def test_rebuilding_reproduces_the_committed_files(tmp_path: Path) -> None:
    committed = bundle.load_bundle(str(COMMITTED)).manifest
    built_with = committed.lineage.params["libraries"]
    here = provenance.library_versions()
    assert built_with == here, (
        f"models/german-credit was built with {built_with}, this environment has {here}:"
        " byte-identical models need the same versions (rebuild with `make reference-bundle`)"
    )
    destination = tmp_path / reference_bundle.NAME
    process = subprocess.run(
        [sys.executable, "-m", "creditmodel.training.reference_bundle", str(destination)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    rebuilt = bundle.load_bundle(str(destination)).manifest
    for name in sorted(set(bundle.REQUIRED_FILES) - {bundle.MANIFEST, bundle.MODEL_CARD}):
        assert rebuilt.files[name] == committed.files[name], (
            f"{name} differs from the committed one"
        )
    card, committed_card = (
        _without_measured_rows((root / bundle.MODEL_CARD).read_text(encoding="utf-8"))
        for root in (destination, COMMITTED)
    )
    assert card == committed_card


def _without_measured_rows(card: str) -> str:
    return "\n".join(
        line for line in card.splitlines() if not line.startswith("| int8_cpu_parity |")
    )


def test_committed_int8_model_scores_identically_on_every_cpu_family() -> None:
    """The same applicant gets the same probability on AVX-512 VNNI, AVX-512, AVX2 and SSE4.2
    nodes: 1,000 German Credit rows natively and under qemu's Haswell and Nehalem models."""
    tool(cpu_parity.QEMU)
    loaded = bundle.load_bundle(str(COMMITTED))
    frame = pd.read_csv(german_credit.csv_path())
    feed = export.feeds(loaded.schema, frame.head(1_000))
    parity = cpu_parity.check((COMMITTED / bundle.MODEL_INT8).read_bytes(), feed, export.OUTPUT)
    assert parity.rows == 1_000
    assert parity.max_abs_dp <= 1e-6, parity.record()
