"""hack/mutate_rollout.py, the rollout mutation check: it finds each kind of guard mutant, and a
run on one known guard per kind reports it killed (by the focused guard tests)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.process import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "hack"))
import mutate_rollout  # hack/ is not a package: on sys.path above

pytestmark = pytest.mark.unit

TOY = """
def pick(items, limit, strict):
    for item in items:
        if item is None:
            continue
        if item < limit and not strict:
            return item
        elif item >= limit:
            raise ValueError(item)
    kept = [i for i in items if i or strict]
    return kept[0] if kept else None
"""


def test_every_kind_of_guard_mutant_is_found_once_and_compiles(tmp_path: Path) -> None:
    module = tmp_path / "toy.py"
    module.write_text(TOY)
    found = mutate_rollout.mutants(module)
    kinds = {(m.kind, m.original, m.mutated) for m in found}
    assert ("delete", "if item is None: continue", "pass") in kinds  # guarded early exit
    assert ("true", "item is None", "True") in kinds
    assert ("negate", "item < limit and not strict", "(not (item < limit and not strict))") in kinds
    assert ("false", "item >= limit", "False") in kinds  # an elif is never deleted
    assert ("operand", "not strict", "True") in kinds  # `and`: the operand goes
    assert ("operand", "strict", "False") in kinds  # `or`: the operand goes
    assert ("boundary", "<", "<=") in kinds
    assert ("boundary", ">=", ">") in kinds
    assert ("true", "kept", "True") in kinds  # a conditional expression
    assert ("negate", "i or strict", "(not (i or strict))") in kinds  # a comprehension filter
    codes = [ast.dump(ast.parse(mutate_rollout.apply(TOY, m))) for m in found]
    assert len(set(codes)) == len(codes), "two mutants give the same code"
    assert len({m.key for m in found}) == len(found)
    assert all(m.file == "toy.py" and m.line >= 2 for m in found)


def test_match_selects_by_file_function_kind_and_text(tmp_path: Path) -> None:
    module = tmp_path / "toy.py"
    module.write_text(TOY)
    found = mutate_rollout.mutants(module)
    chosen = [m for m in found if mutate_rollout.matches(m, "toy.py:pick:boundary:>=")]
    assert [(m.kind, m.original, m.line) for m in chosen] == [("boundary", ">=", 8)]
    assert all(mutate_rollout.matches(m, "") for m in found)
    assert not [m for m in found if mutate_rollout.matches(m, "other.py")]


# One known guard per kind, each a survivor of the older tests that the focused guard tests
# (tests/operator/test_rollout_guards*.py) kill: an early exit deleted (the knative guard of
# draining_names), an operand deleted (a resolved bundle's error), a boundary moved (the drift
# retrain cool-down).
CHOSEN = (
    "observe.py:draining_names:delete:knative",
    "desired.py:adopt:operand:resolved.error",
    "drift.py:blocked:boundary:<",
)
GUARD_FILES = sorted(
    str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.glob(mutate_rollout.GUARDS + "*.py")
)


def test_a_run_on_three_known_guards_reports_them_killed(tmp_path: Path) -> None:
    record, table = tmp_path / "run.json", tmp_path / "table.md"
    matches = [arg for pattern in CHOSEN for arg in ("--match", pattern)]
    done = subprocess.run(
        [
            *(sys.executable, str(REPO_ROOT / "hack" / "mutate_rollout.py"), *matches),
            *("--tests", *GUARD_FILES, "--examples", "5", "--timeout", "300"),
            *("--json", str(record), "--markdown", str(table)),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(record.read_text())["results"]
    verdicts = {r["mutant"]["kind"]: (r["status"], r["killer"]) for r in results}
    assert set(verdicts) == {"delete", "operand", "boundary"}, results
    for kind, (status, killer) in verdicts.items():
        assert status == "killed", (kind, status)
        assert killer.startswith(mutate_rollout.GUARDS), (kind, killer)
    assert "Partial run" in table.read_text()
    assert "baseline:" in done.stdout
