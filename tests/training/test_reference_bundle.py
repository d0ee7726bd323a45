"""The committed reference bundle is valid and reproducible: rebuilding it from the bundled data
with the same code gives byte-identical files (every file but the manifest, whose created_at and
code version move)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from creditmodel.core import bundle
from creditmodel.training import pipeline, reference_bundle

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "models" / reference_bundle.NAME


def test_committed_reference_bundle_is_valid() -> None:
    loaded = bundle.load_bundle(str(COMMITTED))
    assert loaded.manifest.model_name == "german-credit"
    assert loaded.manifest.gates_passed
    assert len(loaded.schema.features) == 17  # 20 attributes minus the three audit-only ones
    assert {g.name for g in loaded.manifest.gates} >= {
        "fairness_age",
        "fairness_personal_status_sex",
        "fairness_foreign_worker",
    }


def test_rebuilding_reproduces_the_committed_files(tmp_path: Path) -> None:
    committed = bundle.load_bundle(str(COMMITTED)).manifest
    built_with = committed.lineage.params["libraries"]
    here = pipeline.library_versions()
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
    for name in bundle.REQUIRED_FILES:
        assert rebuilt.files[name] == committed.files[name], (
            f"{name} differs from the committed one"
        )
