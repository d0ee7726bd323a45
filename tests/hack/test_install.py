"""`make install` (hack/install.py) says what it is doing: a line per pip phase, a progress line
with the elapsed time at least every heartbeat while pip is quiet, pip's warnings as they come,
the log's tail on failure, and a summary with times and versions. The editable install itself
raises no build-backend warning (issue 15: setuptools' "Editable installation" block)."""

from __future__ import annotations

import importlib.util
import itertools
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.process import REPO_ROOT

SCRIPT = REPO_ROOT / "hack" / "install.py"
STAMP = re.compile(r"^\[install \d+:\d\d\] ")


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hack_install", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def fake_pip(body: str) -> list[str]:
    return [sys.executable, "-u", "-c", textwrap.dedent(body)]


class Recorder:
    """A stream that notes when each line was written."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            self.lines.append((time.monotonic(), line))
        return len(text)

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


@pytest.mark.integration  # a child process (a fake pip)
def test_a_quiet_step_prints_progress_with_the_elapsed_time(tmp_path: Path) -> None:
    install = load()
    pip = fake_pip(
        """
        import time
        print("Collecting kserve==0.21.0")
        print("Collecting onnxruntime<2,>=1.20")
        time.sleep(1.3)
        print("Installing collected packages: a, b, c")
        time.sleep(1.3)
        print("Successfully installed a-1 b-2 c-3")
        """
    )
    out = Recorder()
    started = time.monotonic()
    result = install.run_step("installing", pip, install.Reporter(0.4, out), tmp_path / "log")
    finished = time.monotonic()
    assert result.returncode == 0
    assert result.installed == 3
    assert "resolving" in out.text
    assert "installing 3 packages" in out.text
    assert "installed 3 packages" in out.text
    assert "still" in out.text
    assert all(STAMP.match(line) for _, line in out.lines), out.text
    times = [started, *(t for t, _ in out.lines), finished]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 0.4 + 0.3, out.text  # never quiet for much longer than the heartbeat
    assert "Collecting onnxruntime" in (tmp_path / "log").read_text()


@pytest.mark.integration
def test_warnings_pass_through_and_a_failure_shows_the_log_tail(tmp_path: Path) -> None:
    install = load()
    pip = fake_pip(
        """
        import sys
        print("Collecting nothing-real")
        for n in range(50):
            print(f"detail line {n}")
        print("WARNING: the index is slow")
        print("ERROR: No matching distribution found for nothing-real")
        sys.exit(1)
        """
    )
    out = Recorder()
    result = install.run_step("installing", pip, install.Reporter(30, out), tmp_path / "log")
    assert result.returncode == 1
    assert "pip: WARNING: the index is slow" in out.text
    assert "detail line 5" not in [line.strip() for _, line in out.lines]  # only the tail
    assert "detail line 49" in out.text
    assert str(tmp_path / "log") in out.text


@pytest.mark.unit
def test_make_install_runs_the_talking_installer() -> None:
    shown = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "VENV=build/never-created", "install"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "hack/install.py --venv build/never-created" in shown
    assert "--quiet" not in shown


@pytest.mark.integration
def test_the_editable_install_is_warning_free_and_puts_the_four_folders_on_the_path(
    tmp_path: Path,
) -> None:
    """The real script, a fresh venv, the real build backend (without the third-party
    dependencies: those take minutes and are not what this checks)."""
    venv = tmp_path / "venv"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--venv",
            str(venv),
            "--spec",
            str(REPO_ROOT),
            "--pip-arg=--no-deps",
            "--log",
            str(tmp_path / "install.log"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Warning" not in out, out
    assert "WARNING" not in out, out
    assert "creating" in out
    assert re.search(r"done in (\d+m)?\d+s \(venv \d", out), out
    assert re.search(r"pip \d+\.\d+", out), out
    assert "creditmodel 0.1.0" in out
    found = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.util as u;"
            "print(*[u.find_spec('creditmodel.' + p).submodule_search_locations[0]"
            " for p in ('core', 'predictor', 'operator', 'training')], sep='\\n')",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert found == [
        str(REPO_ROOT / part / "creditmodel" / part)
        for part in ("core", "predictor", "operator", "training")
    ]
    scripts = {p.name for p in (venv / "bin").glob("creditmodel-*")}
    assert scripts == {
        "creditmodel-train",
        "creditmodel-predictor",
        "creditmodel-operator",
        "creditmodel-drift",
    }
