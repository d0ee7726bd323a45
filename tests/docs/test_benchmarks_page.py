"""docs/benchmarks.md is generated from docs/benchmarks.json (each benchmark's last `make bench`
run): the committed page is exactly what the generator writes, so no number is typed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.__main__ import PAGE, RUNS, write_page

pytestmark = pytest.mark.unit


def test_the_benchmarks_page_is_generated_from_the_recorded_runs(tmp_path: Path) -> None:
    runs = json.loads(RUNS.read_text())
    assert runs, "docs/benchmarks.json records no run"
    for name, run in runs.items():
        assert run["results"], f"{name}: a run without results"
        assert all(row["benchmark"] == name for row in run["results"])
    regenerated = tmp_path / "benchmarks.md"
    write_page(runs, regenerated)
    assert regenerated.read_text() == PAGE.read_text(), "regenerate with `make bench`"
