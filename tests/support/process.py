"""Start and stop real component processes for tests, and decide skip-or-fail when they cannot run."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = REPO_ROOT / "bin"


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def unavailable(reason: str) -> None:
    """A real component cannot run: skip locally with the reason, fail under CI=true."""
    if under_ci():
        pytest.fail(f"real component unavailable under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def tool(name: str) -> Path:
    """Path of a pinned tool installed by `make tools` (./bin), or skip/fail naming the fix."""
    path = BIN / name
    if not os.access(path, os.X_OK):
        found = shutil.which(name)
        if found is None:
            unavailable(f"{name} not found in ./bin; run `make tools`")
            raise AssertionError("unreachable")
        return Path(found)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def orphan_proof(argv: Sequence[str]) -> list[str]:
    """`argv` run so that the child gets SIGKILL when this process dies (PR_SET_PDEATHSIG, set by
    util-linux's setpriv before it execs the component): pytest and the benchmarks run no teardown
    on SIGTERM or SIGKILL, and every kube-apiserver, etcd or operator left behind kept spinning on
    the CPU the next run measured. Only from the main thread: the signal follows the thread that
    started the child, so a worker thread that ends would take its components with it."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return list(argv)
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


class ManagedProcess:
    """A child process with its output in a log file, killed with its process group on stop,
    and by the kernel if this process dies first (orphan_proof)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        log_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            orphan_proof([str(a) for a in argv]),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_ready(self, probe: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `probe` until true; on timeout or early exit, stop and report with the log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                unavailable(
                    f"{self.name} exited with {self.proc.returncode} before {what}:\n"
                    f"{self.log_tail()}"
                )
            with contextlib.suppress(Exception):
                if probe():
                    return
            time.sleep(0.1)
        self.stop()
        unavailable(f"{self.name} not {what} after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def managed(
    name: str,
    argv: Sequence[str | os.PathLike[str]],
    log_dir: Path,
    env: dict[str, str] | None = None,
) -> Iterator[ManagedProcess]:
    process = ManagedProcess(name, argv, log_dir, env)
    try:
        yield process
    finally:
        process.stop()
