"""`make help` documents every target the Makefile declares."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.unit

REQUIRED = (
    "help",
    "fmt",
    "lint",
    "test",
    "test-unit",
    "test-integration",
    "test-e2e",
    "tools",
    "bench",
    "clean",
    "install",
)


def phony_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return {t for line in re.findall(r"^\.PHONY:(.*)$", text, re.MULTILINE) for t in line.split()}


def test_help_lists_every_phony_target() -> None:
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = set(re.findall(r"^\s+(?:\x1b\[\d+m)?([a-zA-Z0-9_-]+)", shown, re.MULTILINE))
    missing = phony_targets() - listed
    assert not missing, f"targets without a ## description: {sorted(missing)}"
    assert set(REQUIRED) <= listed
