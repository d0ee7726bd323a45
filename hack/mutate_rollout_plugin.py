"""A pytest plugin that hack/mutate_rollout.py loads (`-p mutate_rollout_plugin`) in every run.

It checks that the tests import the scratch copy of the package (MUTATE_ROLLOUT_SCRATCH), skips
hypothesis' shrinking (a mutant needs one counterexample, not the smallest), and with
MUTATE_ROLLOUT_COVERAGE=PATH records which lines of the rollout package each test runs (JSON:
test id -> ["module.py:line", ...]), so that a mutant runs only the tests that reach it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Generator
from types import FrameType
from typing import Any

import pytest
from hypothesis import Phase, settings

from creditmodel.operator import rollout

HERE = os.path.dirname(rollout.__file__) + os.sep
SCRATCH = os.environ.get("MUTATE_ROLLOUT_SCRATCH", "")
if not SCRATCH or not HERE.startswith(SCRATCH):
    raise RuntimeError(f"the tests import {HERE}, not the scratch copy under {SCRATCH!r}")
settings.register_profile(
    "mutate",
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    deadline=None,  # a loaded machine is no reason to fail
    derandomize=True,  # the same examples for every mutant
    database=None,
)
settings.load_profile("mutate")

OUT = os.environ.get("MUTATE_ROLLOUT_COVERAGE")
COVERED: dict[str, list[str]] = {}
LINES: set[str] = set()


def _lines(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "line":
        LINES.add(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}")
    return _lines


def _calls(frame: FrameType, event: str, arg: Any) -> Any:
    return _lines if frame.f_code.co_filename.startswith(HERE) else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    if OUT:
        LINES.clear()
        sys.settrace(_calls)
    yield
    if OUT:
        sys.settrace(None)
        COVERED[item.nodeid] = sorted(LINES)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if OUT:
        with open(OUT, "w") as out:
            json.dump(COVERED, out)
