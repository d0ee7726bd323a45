"""The fork server behind each hack/mutate_rollout.py worker. It imports, once, everything a run
needs: pytest, the conftests, the pristine scratch copy of the package and the test modules. Then
for each mutant it forks a child that compiles the mutated module, swaps the new code objects into
the functions the package already has (so every `from ... import name` sees the mutant, wherever
it was imported), and runs pytest in-process: a mutant costs what its tests cost, not an
interpreter start, imports and collection.

Protocol, one JSON object a line. In: {"args": [...], "log": PATH, "timeout": S, "module": NAME,
"source": PATH, "function": NAME}. Out: {"rc": N}: pytest's exit code, -1 when the child ran out of
time and was killed, 99 when the mutated function was not found. Runs with the snapshot tree as its
working directory, the scratch copy first on PYTHONPATH, the test files as arguments.
`Worker`, below, is the other end: hack/mutate_rollout.py's handle on one fork server.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRELOAD = (
    "pytest",
    "hypothesis.stateful",
    "mutate_rollout_plugin",  # first: its hypothesis profile must be loaded before the tests
    "creditmodel.operator.rollout",
    "tests.conftest",
    "tests.operator.conftest",
)
NOT_APPLIED = 99
"""The fork server's exit code for a mutant it could not swap in (mutate_rollout_worker.py)."""


def preload(tests: list[str]) -> None:
    sys.path.insert(0, os.getcwd())  # as pytest's rootdir conftest does (import mode prepend)
    modules = [name.removesuffix(".py").replace("/", ".") for name in tests]
    for name in (*PRELOAD, *modules):
        importlib.import_module(name)


def _codes(code: types.CodeType, found: dict[str, types.CodeType]) -> dict[str, types.CodeType]:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found.setdefault(const.co_qualname, const)
            _codes(const, found)
    return found


def _functions(namespace: dict[str, Any], module: str) -> list[types.FunctionType]:
    found: list[types.FunctionType] = []
    for value in namespace.values():
        if isinstance(value, types.FunctionType) and value.__module__ == module:
            found.append(value)
        elif isinstance(value, type) and value.__module__ == module:
            for member in vars(value).values():
                inner = getattr(member, "fget", None) or getattr(member, "__func__", member)
                if isinstance(inner, types.FunctionType) and inner.__module__ == module:
                    found.append(inner)
    return found


def swap(module_name: str, source: str, function: str) -> bool:
    """The loaded module's functions get the code of `source`; whether `function` was among them."""
    module = sys.modules[module_name]
    codes = _codes(compile(source, module.__file__ or module_name, "exec"), {})
    swapped = False
    for func in _functions(vars(module), module_name):
        new = codes.get(func.__qualname__)
        if new is not None and new.co_freevars == func.__code__.co_freevars:
            swapped |= func.__code__.co_name == function and new != func.__code__
            func.__code__ = new
    return swapped


def run(job: dict[str, Any]) -> int:
    child = os.fork()
    if child == 0:  # the child: the mutant swapped in, then pytest
        out = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        import pytest

        code = 3
        try:
            with open(job["source"]) as text:
                found = swap(job["module"], text.read(), job["function"])
            code = int(pytest.main(job["args"])) if found else NOT_APPLIED
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + float(job["timeout"])
    while True:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            return -1
        time.sleep(0.02)


# --- the client side: hack/mutate_rollout.py's handle on one fork server ------------------------


PYTEST_ARGS = (
    *("-m", "unit", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"),
    *("-p", "mutate_rollout_plugin", "-o", "addopts=-ra", "--assert=plain"),
)
"""No plugin autoloading (PYTEST_DISABLE_PLUGIN_AUTOLOAD, below) and no assertion rewriting: a run's
start-up is most of what a mutant costs, and neither changes whether a test passes."""


def verdict(code: int, output: str, timeout: float) -> tuple[str, str]:
    """(killed|survived|timeout, the first failing test) from pytest's exit code and output."""
    if code == -1:
        return "timeout", f"(no verdict within {timeout:g}s)"
    if code == NOT_APPLIED:
        return "error", "(the mutated function was not found in the loaded package)"
    if code == 0:
        return "survived", ""
    # a test id, with its parameters (which may hold spaces)
    failed = re.search(r"^(?:FAILED|ERROR) (\S+?\[[^\]]*\]|\S+)", output, re.MULTILINE)
    if code in (1, 2) and failed:
        return "killed", failed.group(1)
    tail = output.strip().splitlines()[-5:]
    return "killed", f"(pytest exit {code}: {' | '.join(tail)})"


@dataclass
class Worker:
    """A fork server (hack/mutate_rollout_worker.py) on the scratch copy under `base`."""

    tree: Path
    base: Path
    examples: int
    timeout: float
    preload: Sequence[str] = ()
    """The test files the fork server imports up front."""
    process: subprocess.Popen[str] | None = None

    def env(self, coverage: Path | None = None) -> dict[str, str]:
        path = [str(self.base), str(ROOT / "hack"), os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
        env["MUTATE_ROLLOUT_SCRATCH"] = str(self.base)
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        env["CREDITMODEL_ROLLOUT_EXAMPLES"] = str(self.examples)
        if coverage is not None:
            env["MUTATE_ROLLOUT_COVERAGE"] = str(coverage)
        return env

    def baseline(self, tests: Sequence[str], coverage: Path) -> tuple[str, str, float]:
        """One plain pytest process over every test, recording what each test runs."""
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *PYTEST_ARGS, *tests],
            cwd=self.tree,
            env=self.env(coverage),
            capture_output=True,
            text=True,
            check=False,
        )
        status, killer = verdict(done.returncode, done.stdout + done.stderr, self.timeout)
        return status, killer, time.monotonic() - began

    def start(self) -> Worker:
        """The fork server imports the scratch copy now: it must still be pristine."""
        self.process = subprocess.Popen(
            [sys.executable, __file__, *self.preload],
            cwd=self.tree,
            env=self.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if "ready" not in self.process.stdout.readline():
            raise RuntimeError("the fork server did not start")
        return self

    def run(self, file: str, function: str, tests: Sequence[str]) -> tuple[str, str, float]:
        """`tests` against the mutant of `function` written into `file` of the scratch copy,
        swapped into the fork server's loaded package."""
        if self.process is None:
            raise RuntimeError("start() the fork server while the scratch copy is pristine")
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        log = self.base / "pytest.log"
        source = self.base / "creditmodel" / "operator" / "rollout" / file
        job = {
            "args": [*PYTEST_ARGS, *tests],
            "log": str(log),
            "timeout": self.timeout,
            "module": f"creditmodel.operator.rollout.{source.stem}",
            "source": str(source),
            "function": function,
        }
        began = time.monotonic()
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        code = int(json.loads(self.process.stdout.readline())["rc"])
        status, killer = verdict(code, log.read_text(), self.timeout)
        return status, killer, time.monotonic() - began

    def stop(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


def main() -> None:
    preload(sys.argv[1:])
    gc.freeze()  # pytest collects garbage at exit: not the preloaded heap, in every child
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps({"rc": run(json.loads(line))}), flush=True)


if __name__ == "__main__":
    main()
