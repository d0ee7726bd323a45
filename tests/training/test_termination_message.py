"""What creditmodel-train leaves in the termination message is what the operator reads: the real
CLI's failure paths, the file the kubelet would keep, and the operator's account of the failed Job
(creditmodel.operator.rollout.training.training_failure), end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from creditmodel.core import jobs
from creditmodel.core.commands import TrainFlags
from creditmodel.core.jobs import ExitCode
from creditmodel.operator.rollout.training import EXIT_REASONS, training_failure
from creditmodel.operator.rollout.values import JobState
from creditmodel.training import cli, synthetic

JOB = "demo-train-1"
QUICK = ["--hidden-units", "16", "--alphas", "3", "--folds", "3", "--max-iter", "200"]


@pytest.fixture
def termination_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "termination-log"
    path.touch()  # the kubelet creates it in every container
    monkeypatch.setenv(jobs.TERMINATION_LOG_ENV, str(path))
    return path


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "applicants.csv"
    synthetic.generate(1_500, seed=5).to_csv(path, index=False)
    return path


def args(data: Path | str, output: Path | str, *extra: str) -> list[str]:
    return [
        TrainFlags.DATA, str(data), TrainFlags.TARGET, synthetic.TARGET,
        TrainFlags.POSITIVE_LABEL, str(synthetic.POSITIVE_LABEL), TrainFlags.MODEL_NAME, "demo",
        TrainFlags.OUTPUT, str(output), *QUICK, *extra,
    ]  # fmt: skip


def run(
    argv: list[str], termination_log: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[ExitCode, dict[str, object], str, tuple[str, str, str]]:
    """Exit code, stdout summary, the raw termination message, and the operator's reading of the
    Job that ended so."""
    code = cli.run(argv)
    summary = json.loads(capsys.readouterr().out)
    message = termination_log.read_text()
    assert len(message.encode()) <= jobs.TERMINATION_MESSAGE_MAX_BYTES
    job = JobState("Failed", "BackoffLimitExceeded", "Job has reached the backoff limit", message)
    return code, summary, message, training_failure(JOB, job)


@pytest.mark.unit
def test_every_failure_code_has_an_operator_reason() -> None:
    assert set(EXIT_REASONS) == set(ExitCode) - {ExitCode.OK}
    assert len(set(EXIT_REASONS.values())) == len(EXIT_REASONS)


@pytest.mark.unit
def test_bad_arguments(
    tmp_path: Path, termination_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*args(tmp_path / "none.csv", tmp_path / "out"), "--max-bryer", "0.2"]
    code, summary, message, failure = run(argv, termination_log, capsys)
    assert code == ExitCode.BAD_INPUT == summary["exit_code"]
    parsed = jobs.parse(message)
    assert parsed is not None
    assert parsed.kind == summary["kind"] == ExitCode.BAD_INPUT.kind
    assert failure == (
        "Failed",
        "BadInput",
        f"Job {JOB}: creditmodel-train exited 2: {summary['error']}",
    )


@pytest.mark.unit
def test_an_oversized_error_still_reaches_the_operator(
    tmp_path: Path, termination_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 20,000-character data path, too long for the filesystem, quoted in the error: the
    message stays valid JSON under the kubelet's cap, and the operator still reads the code and
    the start of the error."""
    data = "/".join([str(tmp_path), *["é" * 100] * 200, "applicants.csv"])
    code, summary, message, failure = run(args(data, tmp_path / "out"), termination_log, capsys)
    assert code == ExitCode.BAD_INPUT
    assert str(summary["error"]) == f"data file {data}: cannot be read (File name too long)"
    assert json.loads(message)["exit_code"] == ExitCode.BAD_INPUT
    result, reason, text = failure
    assert (result, reason) == ("Failed", "BadInput")
    assert text.startswith(f"Job {JOB}: creditmodel-train exited 2: data file {tmp_path}/éé")
    assert text.endswith("...")


@pytest.mark.unit
def test_storage_error(
    tmp_path: Path, csv: Path, termination_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "bundle"
    output.write_text("a file, not a directory")
    code, summary, _, failure = run(args(csv, output), termination_log, capsys)
    assert code == ExitCode.STORAGE == summary["exit_code"]
    assert failure[:2] == ("Failed", "StorageError")
    assert failure[2].endswith(f"exited 4: {output}: exists and is not a directory")


@pytest.mark.integration
def test_failed_gates(
    tmp_path: Path, csv: Path, termination_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = args(csv, tmp_path / "bundle", TrainFlags.MAX_BRIER, "0.001")
    code, summary, message, failure = run(argv, termination_log, capsys)
    assert code == ExitCode.GATE_FAILED == summary["exit_code"]
    parsed = jobs.parse(message)
    assert parsed is not None
    assert (parsed.version, parsed.gates_passed) == (summary["version"], False)
    assert failure == (
        "GatesFailed",
        "GatesFailed",
        f"Job {JOB}: creditmodel-train exited 3: failed gates: calibration_brier",
    )
