"""Instructions per request under valgrind's callgrind, single row and 1,000-row batch, against
the committed figures (tests/bench/callgrind.py has the method; `make perf-check` runs the same
check alone)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.bench import callgrind


def run(out_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    measured: dict[str, Any] = {}
    for case in callgrind.CASES:
        label = f"predictor {case.name}, in process (callgrind)"
        try:
            figure = callgrind.measure(out_dir, case)
        except callgrind.ToolMissingError as missing:
            rows.append({"case": label, "metric": "instructions per request",
                         "value": f"unavailable: {missing}", "unit": "", "ok": False})  # fmt: skip
            continue
        measured[case.name] = figure
        ok, verdict = callgrind.verdict(figure, case)
        print(f"   {verdict}", file=sys.stderr)
        committed = callgrind.committed(case)["instructions_per_request"]
        rows.append({"case": label, "metric": "instructions per request",
                     "value": figure["instructions_per_request"], "unit": "instructions",
                     "target": f"<= {committed * (1 + callgrind.TOLERANCE):,.0f} (committed +10%)",
                     "ok": ok})  # fmt: skip
    (out_dir / "instructions.json").write_text(json.dumps(measured, indent=2) + "\n")
    return rows
