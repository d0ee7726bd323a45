"""The instruction-count regression check (tests/bench/callgrind.py): instructions per request,
single row and 1,000-row batch, counted by valgrind's callgrind around a loop of requests in
process, stay within 10% of the figures committed in tests/bench/predictor_instructions.json. A
count, not a timing: the machine's load does not move it (about 15 s per case on an idle two-core
machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench import callgrind
from tests.support.process import unavailable

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("case", callgrind.CASES, ids=lambda case: case.name.replace(" ", "-"))
def test_instructions_per_request_stay_within_10_percent_of_the_committed_figure(
    case: callgrind.Case, tmp_path: Path
) -> None:
    try:
        measured = callgrind.measure(tmp_path, case)
    except callgrind.ToolMissingError as missing:
        unavailable(str(missing))
        raise AssertionError("unreachable") from None
    ok, verdict = callgrind.verdict(measured, case)
    assert ok, verdict
