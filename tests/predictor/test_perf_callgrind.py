"""The instruction-count regression check (tests/bench/callgrind.py): instructions per single-row
request, counted by valgrind's callgrind around a loop of requests in process, stay within 10% of
the figure committed in tests/bench/predictor_instructions.json. A count, not a timing: the
machine's load does not move it (about 15 s on an idle two-core machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench import callgrind
from tests.support.process import unavailable

pytestmark = pytest.mark.integration


def test_instructions_per_single_row_request_stay_within_10_percent_of_the_committed_figure(
    tmp_path: Path,
) -> None:
    try:
        measured = callgrind.measure(tmp_path)
    except callgrind.ToolMissingError as missing:
        unavailable(str(missing))
        raise AssertionError("unreachable") from None
    ok, verdict = callgrind.verdict(measured)
    assert ok, verdict
