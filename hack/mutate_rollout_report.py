"""The record of a hack/mutate_rollout.py run (mutants, verdicts; JSON) and docs/rollout-mutations.md
made from it: the counts, and for every mutant that only the focused guard tests kill, the test; for
every survivor, why it is equivalent."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Mutant:
    file: str
    """Module file name in the rollout package."""
    line: int
    last: int
    """The first and last line of the mutated source."""
    function: str
    kind: str
    original: str
    """The source the mutation replaces (one line: whitespace runs collapsed)."""
    mutated: str
    start: int
    """Character offsets of `original` in the file as copied."""
    end: int
    key: str = ""
    """file:function:kind:original[#n]: names the mutant across edits that move lines."""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Result:
    mutant: Mutant
    status: str  # killed | survived | timeout | error
    killer: str = ""
    seconds: float = 0.0
    reason: str = ""
    """Why a survivor is equivalent (from EQUIVALENT); empty: unexplained."""
    reused: bool = False
    """The verdict (killed) comes from the record given with --reuse, not from this run."""


@dataclass
class Run:
    started: str
    finished: str = ""
    seconds: float = 0.0
    baseline_seconds: float = 0.0
    tests: list[str] = field(default_factory=list)
    examples: int = 0
    reused_from: str = ""
    """The earlier record whose kills were taken over (--reuse): its start time."""
    results: list[Result] = field(default_factory=list)


def reused(record: Path, chosen: Sequence[Mutant]) -> list[Result]:
    """The kills in an earlier record of the mutants chosen now (the same key: the same function
    and original source), as results of this run."""
    earlier = {
        r["mutant"]["key"]: r
        for r in json.loads(record.read_text())["results"]
        if r["status"] in ("killed", "timeout")
    }
    return [
        Result(m, earlier[m.key]["status"], earlier[m.key]["killer"], reused=True)
        for m in chosen
        if m.key in earlier
    ]


def explain(results: Sequence[Result], equivalent: dict[str, str]) -> list[str]:
    """Attach the equivalence reasons to the survivors; returns the reasons that match no
    survivor (the mutant is gone or killed now)."""
    for result in results:
        if result.status == "survived":
            result.reason = equivalent.get(result.mutant.key, "")
    return sorted(set(equivalent) - {r.mutant.key for r in results if r.status == "survived"})


def load(record: Path) -> Run:
    data = json.loads(record.read_text())
    results = [Result(**{**r, "mutant": Mutant(**r["mutant"])}) for r in data.pop("results")]
    return Run(**data, results=results)


PROPERTIES = "tests/operator/test_rollout_properties.py"


def _cell(text: str, limit: int = 90) -> str:
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _row(result: Any, last: str) -> str:
    m = result.mutant
    return (
        f"| {m.where} | {m.function} | {m.kind} | {_cell(m.original)} | {_cell(m.mutated, 30)}"
        f" | {last} |"
    )


def _test(killer: str) -> str:
    return "`" + killer.split("/")[-1].replace("|", "\\|") + "`"


def _reuse(run: Any) -> list[str]:
    taken = sum(r.reused for r in run.results)
    if not run.reused_from:
        return []
    return [
        "",
        f"{taken} kills are taken over from the run of {run.reused_from} (`--reuse`): the same"
        " mutant (function and source) was killed then, so it was not run again; the other"
        f" {len(run.results) - taken} ran in this one.",
    ]


def summary(run: Any) -> str:
    results = run.results
    killed = sum(r.status == "killed" for r in results)
    timeout = sum(r.status == "timeout" for r in results)
    survived = [r for r in results if r.status == "survived"]
    equivalent = sum(bool(r.reason) for r in survived)
    errors = sum(r.status == "error" for r in results)
    return (
        f"{len(results)} mutants: {killed + timeout} killed ({timeout} by the timeout),"
        f" {len(survived)} survived ({equivalent} equivalent, {len(survived) - equivalent}"
        " unexplained)" + (f", {errors} not applied (errors)" if errors else "")
    )


def markdown(run: Any, guards: str, stale: Sequence[str], complete: bool) -> str:
    results = run.results
    survived = [r for r in results if r.status == "survived"]
    by_guards = [r for r in results if r.killer.startswith(guards)]
    by_properties = [r for r in results if r.killer.startswith(PROPERTIES)]
    killers = Counter(r.killer.split("::")[0] for r in results if r.status != "survived")
    files = sorted({r.mutant.file for r in results})
    lines = [
        "# Rollout mutation check",
        "",
        "Generated by `make mutate-rollout` (hack/mutate_rollout.py); do not edit.",
        f"Run {run.started} to {run.finished}: {run.seconds / 60:.1f} min with two workers"
        f" (one pass of the tests unmutated: {run.baseline_seconds:.0f} s).",
        *([] if complete else ["", "**Partial run (`--match`): not every mutant was tried.**"]),
        *_reuse(run),
        "",
        "Every guard in `operator/creditmodel/operator/rollout/*.py` is mutated, one at a time, in a"
        " scratch copy of the package: a condition becomes `True`, `False` or `not (...)`; an"
        " early exit (`if ...: return`/`continue`/`raise` without `else`) is deleted; one operand"
        " of an `and` (`or`) becomes `True` (`False`); `<`/`<=` and `>`/`>=` swap. Each mutant"
        " runs the unit tests that execute its lines (as recorded in the unmutated pass), fastest"
        " first, the hypothesis state machine last (`-m unit -x`), in a fork of a process that has"
        f" them imported. The state machine plays {run.examples} derandomized sequences per"
        " mutant here (`--examples`; `make test` plays 1,000). A mutant is killed when a test"
        " fails.",
        "",
        f"**{summary(run)}.**",
        "",
        "| module | mutants | killed | survived (equivalent) |",
        "|---|---|---|---|",
    ]
    for name in files:
        mine = [r for r in results if r.mutant.file == name]
        alive = [r for r in mine if r.status == "survived"]
        lines.append(
            f"| {name} | {len(mine)} | {len(mine) - len(alive)} | {len(alive)}"
            f" ({sum(bool(r.reason) for r in alive)}) |"
        )
    lines += ["", "First failing test file per killed mutant:", ""]
    lines += [f"- `{name}`: {count}" for name, count in killers.most_common()]
    lines += [
        "",
        "## Survivors of the older tests, killed by the focused guard tests",
        "",
        f"Each was a survivor of every other unit test; `{guards}*.py` now kills it (the test named).",
        "",
        "| where | function | kind | original | mutated | killed by |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_row(r, _test(r.killer)) for r in by_guards] or ["| - | | | | | |"]
    lines += [
        "",
        "## Killed only by the hypothesis state machine",
        "",
        f"No example-based test catches these; the random sequences of `{PROPERTIES}` do.",
        "",
        "| where | function | kind | original | mutated | killed by |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_row(r, _test(r.killer)) for r in by_properties] or ["| - | | | | | |"]
    lines += [
        "",
        "## Equivalent mutants (survive by design)",
        "",
        "The reasons live in `hack/mutate_rollout_equivalent.json`, keyed by"
        " `file:function:kind:original`, not by line.",
        "",
        "| where | function | kind | original | mutated | why no test can kill it |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_row(r, r.reason.replace("|", "\\|")) for r in survived if r.reason] or [
        "| - | | | | | |"
    ]
    unexplained = [r for r in survived if not r.reason]
    lines += ["", "## Unexplained survivors", ""]
    if unexplained:
        lines += [
            "| where | function | kind | original | mutated | key |",
            "|---|---|---|---|---|---|",
        ]
        lines += [_row(r, _cell(r.mutant.key)) for r in unexplained]
    else:
        lines.append("None.")
    if stale:
        lines += ["", "Reasons for mutants that no longer survive (or exist): " + ", ".join(stale)]
    return "\n".join(lines) + "\n"
