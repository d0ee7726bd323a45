"""`make mutate-rollout`: every guard in the rollout state machine must fail a test when it goes.

For each guard in operator/creditmodel/operator/rollout/*.py this applies one mutation at a time:

- `true` / `false` / `negate`: an `if`/`elif` condition (also a conditional expression's and a
  comprehension filter's) becomes True, False, or `not (...)`;
- `delete`: an `if` without `else` whose body ends in `return`/`continue`/`raise` (an early exit)
  is deleted, guard and body;
- `operand`: one operand of an `and` becomes True (of an `or`: False), i.e. that part of the
  condition is deleted;
- `boundary`: `<` <-> `<=` and `>` <-> `>=`.

Each mutant is written into a scratch copy of the `creditmodel.operator` package that goes first on
PYTHONPATH (the real files are never touched), and the pure unit tests that cover the package run
against it (`-m unit -x -q -p no:randomly`, the hypothesis state machine last, with a timeout per
mutant), two at a time. A mutant is killed when a test fails. The result goes to a JSON record and
to docs/rollout-mutations.md, where every mutant that survives is either explained as equivalent
(hack/mutate_rollout_equivalent.json, by a key that does not depend on line numbers) or listed as
unexplained. Exit status 1 when any survivor is unexplained.

    .venv/bin/python hack/mutate_rollout.py [--jobs 2] [--match FILE:FUNCTION:KIND:TEXT ...]
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import queue
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mutate_rollout_report as report  # hack/mutate_rollout_report.py: the record and its table
from mutate_rollout_report import Mutant, Result, Run, explain, load, reused
from mutate_rollout_worker import Worker  # hack/mutate_rollout_worker.py: the fork servers

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "operator" / "creditmodel" / "operator"
ROLLOUT = PACKAGE / "rollout"
EQUIVALENT = ROOT / "hack" / "mutate_rollout_equivalent.json"
GUARDS = "tests/operator/test_rollout_guards"
"""The focused guard tests: tests/operator/test_rollout_guards*.py."""
PROPERTIES = "tests/operator/test_rollout_properties.py"
FIRST = (
    "tests/operator/test_rollout.py",
    "tests/operator/test_rollout_safety.py",
    "tests/operator/test_drift.py",
    "tests/operator/test_kstatus.py",
    "tests/operator/test_status_schema.py",
    "tests/operator/test_validation.py",
    "tests/training/test_termination_message.py",
)


def default_tests() -> list[str]:
    """The unit tests that exercise the rollout package, fastest first: the files above, every
    other tests/operator/test_rollout_*.py (`-m unit` leaves out the cluster ones), the focused
    guard tests, and the hypothesis state machine last (-x stops before it when one fails)."""
    more = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "tests/operator").glob("test_rollout_*.py")
    )
    guards = [name for name in more if name.startswith(GUARDS)]
    skip = (*FIRST, *guards, PROPERTIES, "tests/operator/test_rollout_cluster.py")
    rest = [name for name in more if name not in skip]
    return [*FIRST, *rest, *guards, PROPERTIES]


FLIPS = {ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">"}
EXITS = (ast.Return, ast.Continue, ast.Raise)


# --- the mutants ----------------------------------------------------------------------------------


def _offsets(text: str) -> list[int]:
    starts, total = [0], 0
    for line in text.splitlines(keepends=True):
        total += len(line)
        starts.append(total)
    return starts


def _span(node: ast.expr | ast.stmt, starts: Sequence[int], text: str) -> tuple[int, int]:
    # ast column offsets count UTF-8 bytes; the rollout sources are ASCII but stay exact anyway.
    def at(line: int, col: int) -> int:
        prefix = text[starts[line - 1] : starts[line]].encode()[:col]
        return starts[line - 1] + len(prefix.decode())

    return at(node.lineno, node.col_offset), at(node.end_lineno or 0, node.end_col_offset or 0)


def _one_line(source: str) -> str:
    return re.sub(r"\s+", " ", source).strip()


def mutants(path: Path) -> list[Mutant]:
    """Every mutant of one module, in source order, no two giving the same code."""
    text = path.read_text()
    tree = ast.parse(text)
    starts = _offsets(text)
    found: list[Mutant] = []

    def add(
        node: ast.expr | ast.stmt,
        function: str,
        kind: str,
        new: str,
        span: tuple[int, int] | None = None,
    ) -> None:
        start, end = span or _span(node, starts, text)
        first, last = text.count("\n", 0, start) + 1, text.count("\n", 0, end) + 1
        original = _one_line(text[start:end])
        found.append(Mutant(path.name, first, last, function, kind, original, new, start, end))

    def condition(node: ast.expr, function: str, exit_guard: bool) -> None:
        add(node, function, "true", "True")
        if not exit_guard:
            add(node, function, "false", "False")
        start, end = _span(node, starts, text)
        add(node, function, "negate", f"(not ({text[start:end]}))")

    def visit(node: ast.AST, function: str, parent: ast.AST | None) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if isinstance(node, ast.If):
            elif_ = isinstance(parent, ast.If) and parent.orelse == [node]
            exits = not node.orelse and isinstance(node.body[-1], EXITS) and not elif_
            condition(node.test, function, exits)
            if exits:
                add(node, function, "delete", "pass")
        elif isinstance(node, ast.IfExp):
            condition(node.test, function, False)
        elif isinstance(node, ast.comprehension):
            for test in node.ifs:
                condition(test, function, False)
        elif isinstance(node, ast.BoolOp):
            neutral = "True" if isinstance(node.op, ast.And) else "False"
            for value in node.values:
                add(value, function, "operand", neutral)
        elif isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                if type(op) in FLIPS:
                    lo, hi = _span(left, starts, text)[1], _span(right, starts, text)[0]
                    gap = text[lo:hi]
                    token = gap.strip()
                    at = lo + gap.index(token)
                    flipped = FLIPS[type(op)]
                    add(node, function, "boundary", flipped, (at, at + len(token)))
                left = right
        for child in ast.iter_child_nodes(node):
            visit(child, function, node)

    visit(tree, "<module>", None)
    seen = {ast.dump(tree)}
    unique: list[Mutant] = []
    counts: dict[str, int] = {}
    for mutant in sorted(found, key=lambda m: (m.start, m.kind)):
        code = apply(text, mutant)
        dump = ast.dump(ast.parse(code))  # a mutant that is not Python is a bug here: raise
        if dump in seen:
            continue
        seen.add(dump)
        base = f"{mutant.file}:{mutant.function}:{mutant.kind}:{mutant.original}"
        counts[base] = counts.get(base, 0) + 1
        key = base if counts[base] == 1 else f"{base}#{counts[base]}"
        unique.append(replace(mutant, key=key))
    return unique


def apply(text: str, mutant: Mutant) -> str:
    return str(text[: mutant.start] + mutant.mutated + text[mutant.end :])


def all_mutants(package: Path) -> list[Mutant]:
    return [m for path in sorted(package.glob("*.py")) for m in mutants(path)]


def matches(mutant: Mutant, pattern: str) -> bool:
    """FILE:FUNCTION:KIND:TEXT, each part optional (empty matches all); TEXT is a substring of
    the original source."""
    parts = [*pattern.split(":", 3), "", "", "", ""][:4]
    file, function, kind, fragment = parts
    return (
        (not file or mutant.file == file)
        and (not function or mutant.function == function)
        and (not kind or mutant.kind == kind)
        and fragment in mutant.original
    )


# --- running them ---------------------------------------------------------------------------------


def snapshot(work: Path) -> tuple[Path, Path]:
    """(tree, base): the tests copied and the rest of the repo linked under work/tree (the working
    directory of every run: others may be editing the tests), and the package under work/base."""
    tree = work / "tree"
    tree.mkdir(parents=True)
    for entry in ROOT.iterdir():
        if entry.name not in ("tests", ".git", ".pytest_cache", ".hypothesis"):
            (tree / entry.name).symlink_to(entry)
    shutil.copytree(ROOT / "tests", tree / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    base = work / "base"
    shutil.copytree(PACKAGE, base / "creditmodel" / "operator", ignore=IGNORED)
    return tree, base


IGNORED = shutil.ignore_patterns("__pycache__")
MTIMES = itertools.count(1_000_000_000)
"""A new mtime for every write of a scratch module: no .pyc of another mutant is ever reused."""


def write(module: Path, text: str) -> None:
    module.write_text(text)
    stamp = next(MTIMES)
    os.utime(module, (stamp, stamp))


def reaching(mutant: Mutant, covered: dict[str, list[str]]) -> list[str]:
    """The tests (in run order) that run a line of the mutated source."""
    lines = {f"{mutant.file}:{n}" for n in range(mutant.line, mutant.last + 1)}
    return [test for test, ran in covered.items() if lines.intersection(ran)]


def execute(
    chosen: Sequence[Mutant], tests: Sequence[str], jobs: int, work: Path, **worker: Any
) -> tuple[list[Result], float]:
    """The tests once unmutated (recording what each runs), then every mutant against the tests
    that reach it, `jobs` at a time, with a progress line at least every 30 s."""
    pristine = work / "base" / "creditmodel" / "operator"
    coverage = work / "coverage.json"
    status, killer, baseline = Worker(work / "tree", work / "base", **worker).baseline(
        tests, coverage
    )
    if status != "survived":
        raise SystemExit(f"the tests fail without any mutation: {killer}")
    covered: dict[str, list[str]] = json.loads(coverage.read_text())
    print(f"baseline: {len(covered)} tests pass unmutated in {baseline:.0f}s", flush=True)
    workers: queue.Queue[Worker] = queue.Queue()
    for n in range(jobs):
        shutil.copytree(pristine, work / f"worker{n}" / "creditmodel" / "operator", ignore=IGNORED)
        workers.put(Worker(work / "tree", work / f"worker{n}", preload=tests, **worker).start())
    sources = {m.file: (pristine / "rollout" / m.file).read_text() for m in chosen}

    def one(mutant: Mutant) -> Result:
        selected = reaching(mutant, covered)
        if not selected:
            return Result(mutant, "survived", "(no test runs this code)")
        runner = workers.get()
        module = runner.base / "creditmodel" / "operator" / "rollout" / mutant.file
        try:
            write(module, apply(sources[mutant.file], mutant))
            status, killer, seconds = runner.run(mutant.file, mutant.function, selected)
        finally:
            write(module, sources[mutant.file])
            workers.put(runner)
        return Result(mutant, status, killer, round(seconds, 1))

    results: list[Result] = []
    began = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            pending: set[Future[Result]] = {pool.submit(one, m) for m in chosen}
            while pending:
                finished, pending = wait(pending, timeout=30, return_when=FIRST_COMPLETED)
                for result in (f.result() for f in finished):
                    results.append(result)
                    if result.status in ("survived", "error"):
                        where, key = result.mutant.where, result.mutant.key
                        print(f"  {result.status}: {where} {key} {result.killer}", flush=True)
                killed = sum(r.status in ("killed", "timeout") for r in results)
                alive = sum(r.status == "survived" for r in results)
                print(
                    f"[{time.monotonic() - began:5.0f}s] {len(results)}/{len(chosen)} mutants,"
                    f" {killed} killed, {alive} survived",
                    flush=True,
                )
    finally:
        while not workers.empty():
            workers.get().stop()
    order = {m.key: n for n, m in enumerate(chosen)}
    return sorted(results, key=lambda r: order[r.mutant.key]), baseline


def render(record: Path, markdown: Path, reasons: Path) -> int:
    """The markdown of a saved record, with the equivalence reasons as they are now."""
    run = load(record)
    stale = explain(run.results, json.loads(reasons.read_text()))
    markdown.write_text(report.markdown(run, GUARDS, stale, True))
    print(report.summary(run))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="parallel pytest runs (at most 2)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant")
    parser.add_argument("--examples", type=int, default=100, help="hypothesis sequences per run")
    parser.add_argument("--match", action="append", default=[], help="FILE:FUNCTION:KIND:TEXT")
    parser.add_argument("--tests", nargs="+", default=default_tests(), help="in this order")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--json", type=Path, default=ROOT / "build" / "rollout-mutations.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "rollout-mutations.md")
    parser.add_argument("--equivalent", type=Path, default=EQUIVALENT)
    parser.add_argument(
        "--reuse",
        type=Path,
        help="an earlier JSON record: its killed mutants (same key) are not run again",
    )
    parser.add_argument("--render", type=Path, help="only write the markdown of this JSON record")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.render, args.markdown, args.equivalent)
    tests = [name for name in args.tests if (ROOT / name).exists()]
    if skipped := sorted(set(args.tests) - set(tests)):
        print(f"skipping missing test files: {', '.join(skipped)}", flush=True)
    jobs = max(1, min(args.jobs, 2))
    run = Run(started=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), tests=tests)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutate-rollout-") as scratch:
        work = Path(scratch)
        # One snapshot of the package and the tests (others may be editing them) for every run.
        _, base = snapshot(work)
        everything = all_mutants(base / "creditmodel" / "operator" / "rollout")
        chosen = [m for m in everything if not args.match or any(matches(m, p) for p in args.match)]
        if args.list:
            for m in chosen:
                print(f"{m.where:18} {m.kind:8} {m.key}  ->  {m.mutated}")
            print(f"{len(chosen)} mutants")
            return 0
        if not chosen:
            parser.error("no mutant matches")
        kept = reused(args.reuse, chosen) if args.reuse else []
        if args.reuse:
            run.reused_from = json.loads(args.reuse.read_text())["started"]
            print(f"{len(kept)} verdicts (killed) taken from {args.reuse}", flush=True)
        done = {r.mutant.key for r in kept}
        todo = [m for m in chosen if m.key not in done]
        print(f"{len(todo)} mutants of {ROLLOUT.relative_to(ROOT)}, {jobs} at a time", flush=True)
        results, run.baseline_seconds = execute(
            todo, tests, jobs, work, examples=args.examples, timeout=args.timeout
        )
        order = {m.key: n for n, m in enumerate(chosen)}
        run.results = sorted([*kept, *results], key=lambda r: order[r.mutant.key])
    run.seconds = round(time.monotonic() - began, 1)
    run.finished = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    run.examples = args.examples
    equivalent: dict[str, str] = json.loads(args.equivalent.read_text())  # read last: editable
    stale = explain(run.results, equivalent)
    stale = [] if args.match else stale
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(asdict(run), indent=2) + "\n")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(report.markdown(run, GUARDS, stale, not args.match))
    unexplained = [
        r for r in run.results if r.status == "error" or (r.status == "survived" and not r.reason)
    ]
    print(report.summary(run), flush=True)
    for result in unexplained:
        print(f"UNEXPLAINED {result.mutant.where} {result.mutant.key} -> {result.mutant.mutated}")
    for key in stale:
        print(f"STALE equivalence reason (mutant gone or killed): {key}")
    print(f"wrote {args.json} and {args.markdown} in {run.seconds:.0f}s", flush=True)
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
