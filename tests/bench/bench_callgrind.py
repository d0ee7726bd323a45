"""Instructions per single-row request under valgrind's callgrind, against the committed figure
(tests/bench/callgrind.py has the method; `make perf-check` runs the same check alone)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.bench import callgrind


def run(out_dir: Path) -> list[dict[str, Any]]:
    try:
        measured = callgrind.measure(out_dir)
    except callgrind.ToolMissingError as missing:
        return [{"case": "predictor batch 1, in process", "metric": "instructions per request",
                 "value": f"unavailable: {missing}", "unit": "", "ok": False}]  # fmt: skip
    (out_dir / "instructions.json").write_text(json.dumps(measured, indent=2) + "\n")
    ok, verdict = callgrind.verdict(measured)
    print(f"   {verdict}", file=sys.stderr)
    committed = json.loads(callgrind.COMMITTED.read_text())["instructions_per_request"]
    return [
        {"case": "predictor batch 1, in process (callgrind)", "metric": "instructions per request",
         "value": measured["instructions_per_request"], "unit": "instructions",
         "target": f"<= {committed * (1 + callgrind.TOLERANCE):,.0f} (committed +10%)", "ok": ok},
    ]  # fmt: skip
