"""Training says what it is doing (issue 15): every cross-validation fit is logged as it finishes,
with the elapsed time and the count; each model's CV AUC as soon as its folds are in; a heartbeat
line while a long fit runs; and `make train` runs twice in a row from the repository without a
collision (each run gets its own output folder)."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from creditmodel.training import features, model, progress, synthetic
from creditmodel.training.config import SearchSpace
from tests.support.process import REPO_ROOT
from tests.training.conftest import quick_config

FIT_LINE = re.compile(
    r"^cross-validation (\d+)/(\d+) \((\d+\.\d) s\): (.+) fold (\d)/(\d): AUC 0\.\d{4}$"
)


def prepared(rows: int = 600) -> features.PreparedData:
    return features.prepare(synthetic.generate(rows, seed=3), quick_config(None))


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("creditmodel.training")]


@pytest.mark.unit
def test_each_fit_is_logged_with_the_elapsed_time(caplog: pytest.LogCaptureFixture) -> None:
    data = prepared()
    space = SearchSpace(hidden_units=[4], alphas=[1.0, 3.0], folds=3, max_iter=30, jobs=1)
    with caplog.at_level(logging.INFO, logger="creditmodel.training"):
        result = model.search(data.inputs, data.labels, data.schema, space, seed=0)
    lines = messages(caplog)
    assert lines[0] == (
        "cross-validation: 3 models (the LR baseline and 2 MLPs) x 3 folds = 9 fits"
        " on 600 rows in 1 process"
    )
    fits = [FIT_LINE.match(line) for line in lines if FIT_LINE.match(line)]
    assert [int(m.group(1)) for m in fits] == list(range(1, 10))
    assert {m.group(2) for m in fits} == {"9"}
    elapsed = [float(m.group(3)) for m in fits]
    assert elapsed == sorted(elapsed)
    assert {m.group(4) for m in fits} == {
        "baseline LR",
        "MLP hidden=4 alpha=1",
        "MLP hidden=4 alpha=3",
    }
    # A model's CV AUC right after its last fold, the same number the search returns.
    done = [line for line in lines if ": CV AUC " in line]
    assert len(done) == 3
    assert f"baseline LR: CV AUC {result.baseline_cv_auc:.4f}" in done[0]
    for candidate in result.candidates:
        assert any(
            f"MLP hidden={candidate.hidden_units} alpha={candidate.alpha:g}:"
            f" CV AUC {candidate.cv_auc:.4f}" in line
            for line in done
        )


@pytest.mark.integration  # worker processes
def test_results_do_not_depend_on_the_order_fits_finish() -> None:
    data = prepared()
    space = SearchSpace(hidden_units=[4], alphas=[1.0], folds=3, max_iter=30, jobs=1)
    one = model.search(data.inputs, data.labels, data.schema, space, seed=0)
    two = model.search(
        data.inputs, data.labels, data.schema, space.model_copy(update={"jobs": 3}), seed=0
    )
    assert one.candidates == two.candidates
    assert one.baseline_fold_aucs == two.baseline_fold_aucs
    np.testing.assert_array_equal(one.oof_probability, two.oof_probability)
    np.testing.assert_array_equal(one.baseline_oof_probability, two.baseline_oof_probability)


@pytest.mark.unit
def test_a_long_fit_gets_heartbeat_lines(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.2)
    fit = model._fold_probability

    def slow(*args: object) -> np.ndarray:
        time.sleep(0.7)
        return fit(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(model, "_fold_probability", slow)
    data = prepared()
    space = SearchSpace(hidden_units=[4], alphas=[1.0], folds=2, max_iter=20, jobs=1)
    with caplog.at_level(logging.INFO, logger="creditmodel.training"):
        model.search(data.inputs, data.labels, data.schema, space, seed=0)
    beats = [line for line in messages(caplog) if "still running" in line]
    assert len(beats) >= 4, messages(caplog)
    assert re.match(r"^cross-validation: 0/4 fits done after 0\.\d s, still running$", beats[0])


@pytest.mark.unit
def test_the_final_fit_says_when_it_starts_and_ends(caplog: pytest.LogCaptureFixture) -> None:
    data = prepared(300)
    space = SearchSpace(hidden_units=[4], alphas=[1.0], folds=2, max_iter=20, jobs=1)
    best = model.Candidate(4, 1.0, 0.7, (0.7, 0.7))
    with caplog.at_level(logging.INFO, logger="creditmodel.training"):
        model.fit_final(data.inputs, data.labels, data.schema, best, space, seed=0)
    lines = messages(caplog)
    assert lines[0] == "final fit: MLP hidden=4 alpha=1 on 300 rows"
    assert re.match(r"^final fit: done in \d+\.\d s$", lines[-1])


QUICK = (
    "--hidden-units 4 --alphas 3 --folds 2 --max-iter 30 --search-rows 300 --cpu-models none"
    " --no-enforce-gates"
)


@pytest.mark.integration
def test_make_train_runs_twice_into_fresh_folders() -> None:
    """The README's training command as a make target: console script from the venv, output
    build/bundles/german-credit-<UTC time>, so a second run does not hit "bundles are immutable"
    (exit 4). Small search: what is checked is the target, not the model."""
    venv = Path(sys.executable).parent.parent
    outputs: list[Path] = []
    try:
        for _ in range(2):
            run = subprocess.run(
                [
                    "make", "--no-print-directory", f"VENV={venv}",
                    "-o", f"{venv}/.installed", "train", f"TRAIN_ARGS={QUICK}",
                ],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )  # fmt: skip
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
            document = re.search(r"^\{$", run.stdout, re.MULTILINE)  # the JSON summary
            assert document is not None, run.stdout
            summary = json.loads(run.stdout[document.start() :])
            output = REPO_ROOT / summary["uri"]  # relative to the repository
            outputs.append(output)
            assert output.parent == REPO_ROOT / "build" / "bundles"
            assert re.fullmatch(r"german-credit-\d{8}-\d{6}", output.name)
            assert (output / "manifest.json").is_file()
            assert "cross-validation 1/4 (" in run.stderr
        assert outputs[0] != outputs[1]
    finally:
        for output in outputs:
            shutil.rmtree(output, ignore_errors=True)
