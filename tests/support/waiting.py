"""Waiting for the real components: poll until something holds, failing with the last thing seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes.client.rest import ApiException

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float = 60, what: str = "") -> T:
    """Poll `probe` until it returns something truthy. An object not created yet (ApiException)
    or a field not written yet (KeyError) means "not yet"; the failure names the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (ApiException, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what or probe}: last {last!r}")
