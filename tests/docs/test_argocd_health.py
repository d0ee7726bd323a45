"""The Argo CD health check in docs/argocd-health.lua, run by a real Lua interpreter (Debian's
lua5.4; also lua5.1, the dialect of Argo CD's gopher-lua, where installed) against CreditModel
objects whose status the operator's own state machine produced (tests/operator/statuses.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.operator.statuses import STORIES, as_object, new_object
from tests.support.process import REPO_ROOT, tool

pytestmark = pytest.mark.integration

SCRIPT = REPO_ROOT / "docs" / "argocd-health.lua"
# story: (Argo CD health status, a word the message must carry)
EXPECTED = {
    "deploying": ("Progressing", "Deploying"),
    "serving": ("Healthy", "Serving"),
    "spec-changed": ("Progressing", "observe generation 2"),
    "canary-waiting": ("Progressing", "WaitingForReady"),
    "canary-analysis": ("Progressing", "CanaryAnalysis"),
    "canary-paused": ("Suspended", "Paused"),
    "rolled-back": ("Degraded", "RolledBack"),
    "bundle-unavailable": ("Degraded", "no manifest.json"),
    "training-first": ("Progressing", "Training"),
    "training-failed": ("Degraded", "TrainingFailed"),
}


def lua_literal(value: Any) -> str:
    """A JSON-like value as a Lua table constructor (what Argo CD hands the script as `obj`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nil"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = "".join(
            chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\{b:03d}"
            for b in value.encode()
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(item) for item in value) + "}"
    if isinstance(value, dict):
        fields = ", ".join(f"[{lua_literal(k)}] = {lua_literal(v)}" for k, v in value.items())
        return "{" + fields + "}"
    raise TypeError(type(value))


def interpreters() -> list[str]:
    """Lua 5.4 (`make tools` links Debian's into ./bin), and 5.1 where installed."""
    found = [str(tool("lua5.4"))]
    return found + ([lua51] if (lua51 := shutil.which("lua5.1")) else [])


def health(lua: str, obj: dict[str, Any], tmp_path: Path) -> tuple[str, str]:
    harness = tmp_path / "harness.lua"
    harness.write_text(
        f"obj = {lua_literal(obj)}\n"
        f"local hs = dofile({lua_literal(str(SCRIPT))})\n"
        'io.write(hs.status, "\\n", hs.message, "\\n")\n'
    )
    run = subprocess.run([lua, str(harness)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    status, message = run.stdout.split("\n", 1)
    return status, message.strip()


def test_every_story_is_judged() -> None:
    assert sorted(EXPECTED) == sorted(STORIES)


@pytest.mark.parametrize("story", sorted(EXPECTED))
def test_health_of_operator_status(story: str, tmp_path: Path) -> None:
    obj = as_object(STORIES[story]())
    for lua in interpreters():
        status, message = health(lua, obj, tmp_path)
        assert (status, EXPECTED[story][1] in message) == (EXPECTED[story][0], True), (
            lua,
            message,
        )


def test_a_new_object_is_progressing(tmp_path: Path) -> None:
    for lua in interpreters():
        status, message = health(lua, new_object(), tmp_path)
        assert status == "Progressing"
        assert "report status" in message


def test_an_operator_without_kstatus_conditions_is_still_judged(tmp_path: Path) -> None:
    """Objects written before Reconciling/Stalled existed: Degraded and Progressing are read."""
    for story, expected in (("rolled-back", "Degraded"), ("canary-analysis", "Progressing")):
        obj = as_object(STORIES[story]())
        obj["status"]["conditions"] = [
            c for c in obj["status"]["conditions"] if c["type"] not in ("Reconciling", "Stalled")
        ]
        for lua in interpreters():
            assert health(lua, obj, tmp_path)[0] == expected


def test_the_docs_include_the_script() -> None:
    """docs/gitops.md carries the script verbatim, as it goes into argocd-cm."""
    page = (REPO_ROOT / "docs" / "gitops.md").read_text()
    body = SCRIPT.read_text()
    indented = "".join(f"    {line}\n" if line else "\n" for line in body.splitlines())
    assert indented in page
