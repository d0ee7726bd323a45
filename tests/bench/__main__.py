"""Run the benchmark modules side by side and write `build/bench/results.json` plus a table.

Each `tests/bench/bench_*.py` module defines `run(out_dir: Path) -> list[dict]`, one dict per
measurement with the keys `benchmark`, `case`, `metric`, `value`, `unit` and optionally `target`
(a human-readable goal, e.g. ">= 5x ref A") and `ok` (whether the goal was met). Machines here are
shared and noisy, so a module measures its references in the same run and reports ratios.

`BENCH=name1,name2 make bench` runs a subset (module names without the `bench_` prefix).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE.parents[1] / "build" / "bench"


def _selected() -> list[str]:
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    wanted = [n.strip() for n in os.environ.get("BENCH", "").split(",") if n.strip()]
    unknown = set(wanted) - set(names)
    if unknown:
        sys.exit(f"unknown benchmark(s) {sorted(unknown)}; have {names}")
    return wanted or names


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = ["benchmark", "case", "metric", "value", "unit", "target", "ok"]
    cells = [[_format(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for name in _selected():
        module = importlib.import_module(f"tests.bench.bench_{name}")
        started = time.perf_counter()
        print(f"== {name}", file=sys.stderr, flush=True)
        rows = module.run(OUT / name)
        for row in rows:
            row.setdefault("benchmark", name)
        results.extend(rows)
        print(f"   {name}: {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    document = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "results": results,
    }
    (OUT / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    print_table(results)
    print(f"\nresults: {OUT / 'results.json'}")
    return 1 if any(row.get("ok") is False for row in results) else 0


if __name__ == "__main__":
    sys.exit(main())
