"""Predictor settings as a Deployment gives them: environment variables (prefix
CREDITMODEL_PREDICTOR_) and flags, and how a bad one stops start-up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from creditmodel.predictor import __main__ as cli
from tests.support.process import REPO_ROOT

REFERENCE = REPO_ROOT / "models" / "german-credit"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("MAX_BATCH_ROWS", "0", "CREDITMODEL_PREDICTOR_MAX_BATCH_ROWS (or --max_batch_rows): "),
        ("DRIFT_WINDOW_SECONDS", "inf", "finite number"),  # a window that never slides
        ("REQUEST_READ_TIMEOUT_SECONDS", "1e-9", "greater than or equal to 0.1"),
        ("BASE_SCORE", "700", "give all of --base_score"),  # read like every other flag
        ("SCALING", '{"base_score": 700}', "give all of base_score, base_odds"),  # not 50 and 20
    ],
)
def test_a_bad_setting_stops_the_predictor_with_one_line_naming_the_variable(
    variable: str, value: str, says: str
) -> None:
    """The real entry point, as a Deployment starts it: before, CREDITMODEL_PREDICTOR_BASE_SCORE
    was ignored without a word, a partial SCALING took 50 and 20 for the rest instead of the
    bundle's, and an infinite window or a 1e-9 s read timeout was taken."""
    env = {**os.environ, f"CREDITMODEL_PREDICTOR_{variable}": value}
    run = subprocess.run(
        [sys.executable, "-m", "creditmodel.predictor", "--model_dir", str(REFERENCE)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr[-500:]
    (line,) = [line for line in run.stderr.splitlines() if "creditmodel-predictor:" in line]
    assert says in line
    assert "Traceback" not in run.stderr


@pytest.mark.unit
def test_the_scaling_variables_are_read_like_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (
        ("BASE_SCORE", "700"),
        ("BASE_ODDS", "30"),
        ("POINTS_TO_DOUBLE_ODDS", "40"),
    ):
        monkeypatch.setenv(f"CREDITMODEL_PREDICTOR_{name}", value)
    scaling = cli.settings_from(cli.build_parser().parse_args([])).scaling
    assert (scaling.base_score, scaling.base_odds, scaling.points_to_double_odds) == (700, 30, 40)
