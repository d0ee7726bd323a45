"""Instructions per request, counted by valgrind's callgrind: a regression check that the
machine's load cannot move (wall-clock speed lives in bench_predictor.py). Two requests: the
common single-row one, and a 1,000-row batch (the batch path: array validation, one model run,
vectorised reason codes, drift binning of a thousand rows).

One process builds the predictor's ASGI app as predictor_cpu.py does (every feature on: validation,
probability, score, four reason codes, multiprocess metrics, live PSI), serves warm-up requests,
then serves a loop of requests with callgrind's instrumentation on only around that loop
(callgrind_toggle.c through ctypes; start-up and model load run uninstrumented, so a measurement
takes seconds, not minutes), binning drift and pushing metrics as the housekeeping task would
(every 50 single rows, every 5 batches). The count repeats to a fraction of a percent: the hash
seed is fixed, the request carries its id (no uuid), nothing but the loop runs (the fast path
never suspends, so the event loop runs no other task), and valgrind shows every host the same CPU
(no AVX-512), so numpy and onnxruntime take the same kernels.

The committed figures are predictor_instructions.json beside this file:

    python -m tests.bench.callgrind            # measure; exit 1 if > 10% above a committed figure
    python -m tests.bench.callgrind --update   # measure and commit new figures (a deliberate change)
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SOURCE = HERE / "callgrind_toggle.c"
COMMITTED = HERE / "predictor_instructions.json"
BUNDLE = REPO / "models" / "german-credit"
TOLERANCE = 0.10


@dataclass(frozen=True)
class Case:
    """One measured request: `rows` applicants per request, `requests` of them counted, drift
    binned and metrics pushed every `flush_every`."""

    rows: int
    requests: int
    flush_every: int

    @property
    def name(self) -> str:
        return f"batch {self.rows}"


CASES = (Case(rows=1, requests=300, flush_every=50), Case(rows=1000, requests=20, flush_every=5))


class ToolMissingError(Exception):
    """valgrind, its headers or a C compiler is missing: the reason says which."""


def valgrind() -> str:
    """valgrind's real path: Debian's is a wrapper script that runs "$0.bin", so a symlink to it
    elsewhere (./bin) would look for the binary beside the link."""
    path = shutil.which("valgrind")
    if path is None:
        raise ToolMissingError("valgrind is not installed (make tools installs it)")
    return os.path.realpath(path)


def toggle_library(build_dir: Path) -> Path:
    """The client-request library, compiled once per source version into `build_dir`."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ToolMissingError("no C compiler (cc) to build the callgrind client-request helper")
    library = build_dir / "callgrind_toggle.so"
    if library.exists() and library.stat().st_mtime >= SOURCE.stat().st_mtime:
        return library
    build_dir.mkdir(parents=True, exist_ok=True)
    built = subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(SOURCE)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if built.returncode != 0:
        raise ToolMissingError(f"cannot build the callgrind helper: {built.stderr.strip()[-300:]}")
    return library


def versions() -> dict[str, str]:
    """What the count depends on besides our code."""
    import numpy
    import onnxruntime

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def measure(work_dir: Path, case: Case) -> dict[str, Any]:
    """Run the case's loop under callgrind: instructions per request and what they depend on."""
    from tests.bench.bench_predictor import _body, _documents, _ensure_bundle

    _ensure_bundle()
    tool = valgrind()
    library = toggle_library(REPO / "build" / "callgrind")
    work_dir = work_dir / case.name.replace(" ", "-")
    work_dir.mkdir(parents=True, exist_ok=True)
    body = work_dir / "body.json"
    body.write_bytes(_body(_documents(case.rows)))
    for stale in work_dir.glob("callgrind.out*"):
        stale.unlink()
    argv = [
        tool, "--tool=callgrind", "--instr-atstart=no",
        f"--callgrind-out-file={work_dir / 'callgrind.out'}",
        sys.executable, "-m", "tests.bench.callgrind", "--loop", str(library), str(body),
        str(case.requests), str(case.flush_every),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    completed = subprocess.run(
        argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=900, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"callgrind run failed:\n{completed.stderr[-2000:]}")
    instructions = _measured_instructions(work_dir)
    return {
        "instructions_per_request": round(instructions / case.requests),
        "requests": case.requests,
        "request": f"{case.rows}-row V2 JSON, reference bundle int8, every feature on",
        **versions(),
    }


def _measured_instructions(work_dir: Path) -> int:
    """The `totals` of the dump the loop's client request triggered."""
    for path in sorted(work_dir.glob("callgrind.out*")):
        text = path.read_text(errors="replace")
        if "Client Request: measured" in text:
            for line in text.splitlines():
                if line.startswith(("totals:", "summary:")) and int(line.split()[1]) > 0:
                    return int(line.split()[1])
    raise RuntimeError(f"no callgrind dump of the measured loop in {work_dir}")


def committed(case: Case, committed_path: Path = COMMITTED) -> dict[str, Any]:
    """The committed figure of `case`."""
    figures: dict[str, Any] = json.loads(committed_path.read_text())
    return dict(figures[case.name])


def verdict(
    measured: dict[str, Any], case: Case, committed_path: Path = COMMITTED
) -> tuple[bool, str]:
    """(within the tolerance, a sentence saying so with both figures)."""
    then_figure = committed(case, committed_path)
    now, then = measured["instructions_per_request"], then_figure["instructions_per_request"]
    change = now / then - 1
    text = (
        f"{now:,} instructions per {case.rows}-row request, committed {then:,} ({change:+.1%};"
        f" the check allows +{TOLERANCE:.0%})"
    )
    differ = {k: (then_figure.get(k), v) for k, v in versions().items() if then_figure.get(k) != v}
    if differ:
        text += f"; versions differ from the committed run: {differ}"
    if change < -TOLERANCE:
        text += "; faster than committed: `python -m tests.bench.callgrind --update` records it"
    return change <= TOLERANCE, text


def _loop(library_path: str, body_path: str, requests: int, flush_every: int) -> None:
    """Inside valgrind: build the app, warm it up, count the loop."""
    from tests.bench import predictor_cpu

    app, finish = predictor_cpu.build("predictor", str(BUNDLE))
    body = Path(body_path).read_bytes()
    library = ctypes.CDLL(library_path)
    scope = predictor_cpu.request_scope(body)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def serve(count: int, start: Any = None, stop: Any = None) -> None:
        if start is not None:
            start()
        for index in range(count):
            await app(dict(scope), receive, send)
            if index % flush_every == flush_every - 1:
                finish()
        if stop is not None:
            stop()

    asyncio.run(serve(2 * flush_every))
    asyncio.run(
        serve(requests, library.creditmodel_callgrind_start, library.creditmodel_callgrind_stop)
    )
    if set(statuses) != {200}:
        raise SystemExit(f"non-200 answers: {sorted(set(statuses))}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--loop"]:
        _loop(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0
    with tempfile.TemporaryDirectory(prefix="callgrind-") as scratch:
        try:
            measured = {case.name: measure(Path(scratch), case) for case in CASES}
        except ToolMissingError as missing:
            print(f"callgrind check unavailable: {missing}", file=sys.stderr)
            return 2
    if "--update" in argv:
        COMMITTED.write_text(json.dumps(measured, indent=2) + "\n")
        for name, figure in measured.items():
            print(f"committed figure updated: {figure['instructions_per_request']:,} per request"
                  f" ({name})")  # fmt: skip
        return 0
    verdicts = [verdict(measured[case.name], case) for case in CASES]
    for _, text in verdicts:
        print(text)
    return 0 if all(ok for ok, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
