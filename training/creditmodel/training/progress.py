"""Progress lines for the long training steps: one per finished unit of work, with the count and
the time since the step started, and a heartbeat line whenever nothing was logged for
`HEARTBEAT_SECONDS` (one fit on a million rows takes minutes)."""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

HEARTBEAT_SECONDS = 30.0


class Progress:
    """`with Progress(log, "cross-validation", 35, "fits") as progress: ... progress.done(...)`."""

    def __init__(self, log: logging.Logger, step: str, total: int = 0, unit: str = "") -> None:
        self.log, self.step, self.total, self.unit = log, step, total, unit
        self.count = 0
        self.heartbeat = HEARTBEAT_SECONDS
        self.started = self.last = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"progress {step}", daemon=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def done(self, what: str) -> None:
        """One unit finished: `<step> 3/35 (4.2 s): <what>`."""
        with self._lock:
            self.count += 1
            self.log.info(
                "%s %d/%d (%.1f s): %s", self.step, self.count, self.total, self.elapsed(), what
            )
            self.last = time.perf_counter()

    def note(self, what: str) -> None:
        """A line about the step, not a unit of it: `<step> (4.2 s): <what>`."""
        with self._lock:
            self.log.info("%s (%.1f s): %s", self.step, self.elapsed(), what)
            self.last = time.perf_counter()

    def _beat(self) -> None:
        while not self._stop.wait(max(0.0, self.last + self.heartbeat - time.perf_counter())):
            with self._lock:
                if time.perf_counter() - self.last < self.heartbeat:
                    continue
                if self.total:
                    self.log.info(
                        "%s: %d/%d %s done after %.1f s, still running",
                        self.step,
                        self.count,
                        self.total,
                        self.unit,
                        self.elapsed(),
                    )
                else:
                    self.log.info("%s: still running after %.1f s", self.step, self.elapsed())
                self.last = time.perf_counter()

    def __enter__(self) -> Progress:
        self.started = self.last = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
