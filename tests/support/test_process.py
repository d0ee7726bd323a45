"""Skip-or-fail policy and process cleanup of the real-component fixtures."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.process import ManagedProcess, unavailable

pytestmark = pytest.mark.integration


def test_unavailable_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="etcd missing"):
        unavailable("etcd missing")


def test_unavailable_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(
        pytest.fail.Exception, match="real component unavailable under CI: etcd missing"
    ):
        unavailable("etcd missing")


def test_early_exit_is_reported_with_the_log_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    process = ManagedProcess(
        "crasher",
        [sys.executable, "-c", "import sys; print('bad flag --foo'); sys.exit(3)"],
        tmp_path,
    )
    with pytest.raises(
        pytest.fail.Exception, match=r"crasher exited with 3 before ready:\nbad flag --foo"
    ):
        process.wait_ready(lambda: False, timeout=10, what="ready")


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # The parent spawns a grandchild and ignores SIGTERM; stop() must still leave nothing behind.
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    process = ManagedProcess("stubborn", [sys.executable, "-c", script], tmp_path)
    process.wait_ready(pid_file.exists, timeout=10, what="started")
    grandchild = int(pid_file.read_text())
    process.stop(timeout=1)
    assert process.proc.returncode is not None
    assert wait_until_dead(grandchild), f"grandchild {grandchild} survived stop()"


def test_components_die_with_the_process_that_started_them(tmp_path: Path) -> None:
    """A test run killed outright (SIGKILL: no teardown) leaves no component behind."""
    if shutil.which("setpriv") is None:
        unavailable("setpriv (util-linux) not found: components could outlive a killed run")
    pid_file = tmp_path / "component.pid"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tests.support.process import ManagedProcess\n"
        f"log_dir = Path({str(tmp_path)!r})\n"
        "component = ManagedProcess('sleeper', [sys.executable, '-c',"
        " 'import time; time.sleep(60)'], log_dir)\n"
        f"Path({str(pid_file)!r}).write_text(str(component.proc.pid))\n"
        "time.sleep(60)\n"
    )
    runner = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            assert runner.poll() is None, "the runner died before starting its component"
            time.sleep(0.05)
        component = int(pid_file.read_text())
        assert not wait_until_dead(component, timeout=0.5), "the component did not start"
    finally:
        runner.kill()
        runner.wait()
    alive = not wait_until_dead(component)
    if alive:
        os.kill(component, signal.SIGKILL)
    assert not alive, f"component {component} outlived the process that started it"


def wait_until_dead(pid: int, timeout: float = 5) -> bool:
    """True once `pid` is gone or a zombie (dead, waiting for init to reap it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False
