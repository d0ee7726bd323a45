#!/usr/bin/env python3
"""`make install`: create the virtualenv and install the project with every extra, saying what
is going on.

pip runs without --quiet, its whole output going to a log file (build/install.log). On the
terminal: one line when pip moves to another phase (resolving and downloading, building,
installing), a progress line with the elapsed time whenever nothing was printed for --heartbeat
seconds (30), pip's warnings and errors as they come, the log's last lines if pip fails, and a
summary with the time of each step and the versions installed. Standard library only: it runs
before the virtualenv exists.

    python3 hack/install.py [--venv .venv] [--constraint constraints.txt] [--spec '.[dev]']
                            [--log build/install.log] [--heartbeat 30] [--pip-arg ARG ...]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

TAIL_LINES = 30
# Shown in the summary when installed (the libraries whose versions matter to a bug report).
SUMMARY_PACKAGES = (
    "creditmodel",
    "kserve",
    "onnxruntime",
    "scikit-learn",
    "numpy",
    "pandas",
    "kopf",
)
_PROBLEM = re.compile(r"^\s*(WARNING|ERROR|DEPRECATION):|Warning:|Error:")
_REQUIREMENT = re.compile(r"^(?:Collecting|Requirement already satisfied:|Obtaining)\s+(\S+)")


def clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


class Reporter:
    """Prints `[install m:ss] message` lines, the time counted from the start of the install;
    `due` says when nothing was printed for `heartbeat` seconds."""

    def __init__(self, heartbeat: float = 30.0, out: TextIO | None = None) -> None:
        self.heartbeat = heartbeat
        self.out = out if out is not None else sys.stdout
        self.started = time.monotonic()
        self.last = self.started

    def say(self, message: str) -> None:
        now = time.monotonic()
        self.out.write(f"[install {clock(now - self.started)}] {message}\n")
        self.out.flush()
        self.last = now

    def raw(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def until_due(self) -> float:
        return max(0.0, self.last + self.heartbeat - time.monotonic())


@dataclass
class PipProgress:
    """What pip's output says it is doing."""

    phase: str = "starting"
    requirements: int = 0
    downloads: int = 0
    to_install: int = 0
    installed: int = 0
    latest: str = ""
    changed: bool = field(default=False, repr=False)
    # Packages in the target environment now (pip says nothing while it unpacks them).
    present: Callable[[], int] | None = field(default=None, repr=False)
    _before: int = field(default=0, repr=False)

    def feed(self, line: str) -> None:
        text = line.strip()
        requirement = _REQUIREMENT.match(text)
        if requirement:
            self.requirements += 1
            self._enter("resolving")
            self.latest = requirement.group(1)
        elif text.startswith("Downloading "):  # pip downloads while it resolves
            self.downloads += 1
            self.latest = text.split()[1].rsplit("/", 1)[-1]
        elif text.startswith(("Building wheel for", "Building editable for")):
            self._enter("building")
            self.latest = text.split()[3]
        elif text.startswith("Installing collected packages:"):
            self.to_install = len(text.split(":", 1)[1].split(","))
            self._before = self.present() if self.present else 0
            self._enter("installing")
        elif text.startswith("Successfully installed"):
            self.installed = len(text.split()) - 2
            self._enter("done")

    def _enter(self, phase: str) -> None:
        if phase != self.phase:
            self.phase, self.changed = phase, True

    def describe(self) -> str:
        if self.phase == "resolving":
            so_far = plural(self.requirements, "requirement")
            fetched = plural(self.downloads, "file")
            return f"resolving: {so_far} so far, {fetched} downloaded (latest {self.latest})"
        if self.phase == "building":
            return f"building {self.latest}"
        if self.phase == "installing":
            installing = f"installing {plural(self.to_install, 'package')}"
            placed = self.present() - self._before if self.present else 0
            return f"{installing}, {placed} in place" if placed > 0 else installing
        if self.phase == "done":
            return f"installed {plural(self.installed, 'package')}"
        return "starting pip"


@dataclass(frozen=True)
class StepResult:
    returncode: int
    seconds: float
    installed: int


def _pump(stream: TextIO, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def run_step(
    label: str,
    argv: list[str],
    reporter: Reporter,
    log: Path,
    present: Callable[[], int] | None = None,
) -> StepResult:
    """Run one pip command: its output to `log` (appended), progress to the reporter;
    `present` counts the packages in the target environment."""
    started = time.monotonic()
    reporter.say(label)
    log.parent.mkdir(parents=True, exist_ok=True)
    progress = PipProgress(present=present)
    heard = started
    with log.open("a", encoding="utf-8") as sink:
        sink.write(f"\n$ {' '.join(argv)}\n")
        child = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=_child_env(),
        )
        assert child.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(child.stdout, lines), daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=reporter.until_due())
            except queue.Empty:
                quiet = time.monotonic() - heard
                note = f" (pip quiet for {duration(quiet)})" if quiet >= reporter.heartbeat else ""
                reporter.say(f"still {progress.describe()}{note}")
                continue
            if line is None:
                break
            heard = time.monotonic()
            sink.write(line + "\n")
            progress.feed(line)
            if _PROBLEM.search(line):
                reporter.say(f"pip: {line.strip()}")
            if progress.changed:
                progress.changed = False
                reporter.say(progress.describe())
        returncode = child.wait()
    seconds = time.monotonic() - started
    if returncode != 0:
        reporter.say(f"{label}: pip failed (exit {returncode}); the last lines of {log}:")
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-TAIL_LINES:]
        for line in tail:
            reporter.raw(f"    {line}")
    return StepResult(returncode, seconds, progress.installed)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # pip's lines as they happen, not in 8 KiB blocks
    return env


def counter(venv: Path) -> Callable[[], int]:
    """Packages installed in `venv` (its *.dist-info folders)."""
    return lambda: sum(1 for _ in venv.glob("lib/python*/site-packages/*.dist-info"))


def versions(python: Path) -> dict[str, str]:
    """Installed versions of pip and SUMMARY_PACKAGES in the virtualenv (absent ones left out)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "found = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "found['(packages)'] = str(len({d.metadata['Name'] for d in m.distributions()}))\n"
        "print(json.dumps(found))\n"
    )
    out = subprocess.run(
        [str(python), "-c", code, "pip", *SUMMARY_PACKAGES],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", default=".venv")
    parser.add_argument("--constraint", default="constraints.txt")
    parser.add_argument("--spec", default=".[dev]", help="what to install, editable")
    parser.add_argument("--log", default="build/install.log")
    parser.add_argument("--heartbeat", type=float, default=30.0, help="seconds between lines")
    parser.add_argument("--pip-arg", action="append", default=[], help="extra pip argument")
    args = parser.parse_args(argv)
    reporter = Reporter(args.heartbeat)
    venv, log = Path(args.venv), Path(args.log)
    python = venv / "bin" / "python"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("", encoding="utf-8")
    times: list[tuple[str, float]] = []

    started = time.monotonic()
    if python.exists():
        reporter.say(f"using the existing virtualenv {venv}")
    else:
        reporter.say(f"creating the virtualenv {venv} with Python {sys.version.split()[0]}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    times.append(("venv", time.monotonic() - started))

    pip = [str(python), "-m", "pip", "install", "--progress-bar", "off", *args.pip_arg]
    for name, label, command in (
        ("pip", "upgrading pip", [*pip, "--upgrade", "pip"]),
        (
            "packages",
            f"installing {args.spec} (editable) pinned by {args.constraint}; full pip output in"
            f" {log}; about 4 minutes the first time",
            [*pip, "--constraint", args.constraint, "--editable", args.spec],
        ),
    ):
        result = run_step(label, command, reporter, log, counter(venv))
        if result.returncode != 0:
            return result.returncode
        times.append((name, result.seconds))

    total = time.monotonic() - reporter.started
    steps = ", ".join(f"{name} {duration(seconds)}" for name, seconds in times)
    found = versions(python)
    count = found.pop("(packages)")
    reporter.say(f"done in {duration(total)} ({steps}); {count} packages in {venv}")
    python_version = subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    listed = ", ".join(f"{name} {version}" for name, version in found.items())
    reporter.say(f"python {python_version}, {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
