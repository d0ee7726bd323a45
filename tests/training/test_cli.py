"""`creditmodel-train` as a Job runs it: a real process, exit codes, one JSON document on stdout,
progress on stderr, never a traceback for bad input, nothing published unless everything passed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from creditmodel.core import bundle
from creditmodel.training import synthetic
from tests.support.process import free_port

pytestmark = pytest.mark.integration

QUICK = ["--hidden-units", "16", "--alphas", "3", "--folds", "3", "--max-iter", "200"]


def train(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    process = subprocess.run(
        [sys.executable, "-m", "creditmodel.training", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert process.stdout.count("\n{") == 0, "stdout must hold exactly one JSON document"
    return process.returncode, json.loads(process.stdout), process.stderr


def base_args(data: Path | str, output: Path | str, target: str = "default") -> list[str]:
    return [
        "--data", str(data), "--target", target, "--positive-label", "1",
        "--model-name", "demo", "--output", str(output), *QUICK,
    ]  # fmt: skip


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "applicants.csv"
    synthetic.generate(1_500, seed=5).to_csv(path, index=False)
    return path


def test_trains_and_publishes_with_a_json_summary(tmp_path: Path, csv: Path) -> None:
    output = tmp_path / "bundle"
    code, summary, stderr = train(*base_args(csv, output))
    assert code == 0, stderr
    assert summary["published"] is True
    assert summary["gates_passed"] is True
    assert summary["data"]["rows"] == 1_500
    assert "search: best" in stderr
    loaded = bundle.load_bundle(str(output))
    assert loaded.manifest.version == summary["version"]
    # default version: UTC timestamp + data hash
    assert summary["version"].endswith(loaded.manifest.lineage.data_sha256[:12])
    assert {name: e.sha256 for name, e in loaded.manifest.files.items()} == summary["files"]


def test_parquet_input(tmp_path: Path) -> None:
    path = tmp_path / "applicants.parquet"
    synthetic.generate(1_500, seed=5).to_parquet(path)
    code, summary, stderr = train(*base_args(path, tmp_path / "bundle"), "--version", "p1")
    assert code == 0, stderr
    assert summary["version"] == "p1"


def test_bad_input_exits_2_naming_the_problem(tmp_path: Path, csv: Path) -> None:
    output = tmp_path / "bundle"
    code, summary, stderr = train(*base_args(csv, output, target="missing"))
    assert code == 2
    assert summary["kind"] == "bad_input"
    assert "target column 'missing' not found" in summary["error"]
    assert "Traceback" not in stderr
    assert not output.exists()


def test_invalid_argument_exits_2(tmp_path: Path, csv: Path) -> None:
    code, summary, _ = train(*base_args(csv, tmp_path / "b"), "--model-name", "Not_A_DNS_Name")
    assert code == 2
    assert summary["error"].startswith("invalid argument model_name:")


def test_unknown_flag_exits_2_with_json(tmp_path: Path, csv: Path) -> None:
    code, summary, stderr = train(*base_args(csv, tmp_path / "b"), "--max-bryer", "0.2")
    assert code == 2
    assert summary["error"] == "invalid arguments: unrecognized arguments: --max-bryer 0.2"
    assert "usage: creditmodel-train" in stderr


def test_failed_gate_exits_3_and_publishes_nothing(tmp_path: Path, csv: Path) -> None:
    output = tmp_path / "bundle"
    termination_log = tmp_path / "termination-log"
    termination_log.touch()  # the kubelet creates it in every container
    code, summary, stderr = train(
        *base_args(csv, output),
        "--max-brier",
        "0.001",
        env={"CREDITMODEL_TERMINATION_LOG": str(termination_log)},
    )
    assert code == 3, stderr
    assert summary["published"] is False
    failed = [g["name"] for g in summary["gates"] if not g["passed"]]
    assert failed == ["calibration_brier"]
    assert not output.exists()
    message = json.loads(termination_log.read_text())
    assert message["exit_code"] == 3
    assert message["kind"] == "gate_failed"
    assert message["failed_gates"] == ["calibration_brier"]


def test_gates_not_enforced_publish_with_the_failure_recorded(tmp_path: Path, csv: Path) -> None:
    output = tmp_path / "bundle"
    code, _, stderr = train(*base_args(csv, output), "--max-brier", "0.001", "--no-enforce-gates")
    assert code == 0, stderr
    manifest = bundle.load_bundle(str(output)).manifest
    assert not manifest.gates_passed


def test_existing_bundle_is_never_overwritten_exit_4(tmp_path: Path, csv: Path) -> None:
    output = tmp_path / "bundle"
    assert train(*base_args(csv, output), "--version", "a")[0] == 0
    before = (output / bundle.MANIFEST).read_bytes()
    code, summary, _ = train(*base_args(csv, output), "--version", "b")
    assert code == 4
    assert "already published" in summary["error"]
    assert (output / bundle.MANIFEST).read_bytes() == before


CRASH_MIDWAY = """
import os, sys
from creditmodel.core import storage
from creditmodel.training import cli

written = []
original = storage.LocalStore.write_bytes

def write_then_die(self, name, data):
    original(self, name, data)
    written.append(name)
    if len(written) == 3:
        os._exit(137)  # the pod is OOM-killed mid-upload: no cleanup, no exception handlers

storage.LocalStore.write_bytes = write_then_die
sys.exit(cli.run(sys.argv[1:]))
"""


def test_a_crash_midway_through_publishing_leaves_no_readable_bundle(
    tmp_path: Path, csv: Path
) -> None:
    output = tmp_path / "bundle"
    process = subprocess.run(
        [sys.executable, "-c", CRASH_MIDWAY, *base_args(csv, output), "--version", "v1"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert process.returncode == 137, process.stderr
    # Three files landed in a hidden staging directory beside the output, never in it.
    assert not output.exists()
    staged = [p for p in tmp_path.iterdir() if p.name.startswith(".bundle.")]
    assert [len(list(p.iterdir())) for p in staged] == [3]
    with pytest.raises(bundle.BundleError, match=r"no manifest\.json"):
        bundle.load_bundle(str(output))
    # The retried Job publishes over the debris.
    code, _, stderr = train(*base_args(csv, output), "--version", "v1")
    assert code == 0, stderr
    assert bundle.load_bundle(str(output)).manifest.version == "v1"


FAIL_MIDWAY = """
import sys
from creditmodel.core import storage
from creditmodel.training import cli

store_class = getattr(storage, sys.argv[1])
attempted = []
original = store_class.write_bytes

def write_or_fail(self, name, data):
    attempted.append(name)
    if len(attempted) == 3:
        raise storage.StorageError(f"cannot write {name}: No space left on device")
    original(self, name, data)

store_class.write_bytes = write_or_fail
sys.exit(cli.run(sys.argv[2:]))
"""


def run_failing_midway(
    store_class: str, args: list[str], env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], str]:
    process = subprocess.run(
        [sys.executable, "-c", FAIL_MIDWAY, store_class, *args],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return process.returncode, json.loads(process.stdout), process.stderr


def test_a_publish_failing_midway_exits_4_and_leaves_nothing(tmp_path: Path, csv: Path) -> None:
    output = tmp_path / "out" / "bundle"
    code, summary, stderr = run_failing_midway("LocalStore", base_args(csv, output))
    assert code == 4, stderr
    assert summary["kind"] == "storage"
    assert "No space left on device" in summary["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["applicants.csv"]


def test_a_file_in_the_output_path_exits_4_before_training(tmp_path: Path, csv: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a directory")
    output = tmp_path / "taken" / "bundle"
    # A failing gate used to hide the storage problem behind exit 3, after the whole training.
    code, summary, stderr = train(*base_args(csv, output), "--max-brier", "0.001")
    assert code == 4, stderr
    assert summary["kind"] == "storage"
    assert summary["error"] == f"{output}: {tmp_path / 'taken'} is a file, not a directory"
    assert "search:" not in stderr, "the output must be checked before training"
    assert "Traceback" not in stderr


def test_an_output_that_is_a_file_exits_4_before_training(tmp_path: Path, csv: Path) -> None:
    output = tmp_path / "bundle"
    output.write_text("a file, not a directory")
    code, summary, stderr = train(*base_args(csv, output))
    assert code == 4, stderr
    assert summary["error"] == f"{output}: exists and is not a directory"
    assert "search:" not in stderr
    assert output.read_text() == "a file, not a directory"


def test_credentials_in_urls_are_never_printed(tmp_path: Path, csv: Path) -> None:
    termination_log = tmp_path / "termination-log"
    termination_log.touch()
    endpoint = f"http://minio:s3cr3t@127.0.0.1:{free_port()}"
    env = {
        "S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret-key",
        "CREDITMODEL_TERMINATION_LOG": str(termination_log),
    }
    code, summary, stderr = train(*base_args(csv, "s3://bucket/models/demo"), env=env)
    assert code == 4, stderr
    assert "S3 endpoint unreachable (http://***@127.0.0.1:" in summary["error"]
    for text in (json.dumps(summary), stderr, termination_log.read_text()):
        assert "s3cr3t" not in text
    data = "https://user:s3cr3t@example.com/applicants.csv?X-Amz-Signature=f00"
    code, summary, stderr = train(*base_args(data, tmp_path / "bundle"), env=env)
    assert code == 2, stderr
    assert "https://***@example.com/applicants.csv?X-Amz-Signature=***" in summary["error"]
    for text in (json.dumps(summary), stderr, termination_log.read_text()):
        assert "s3cr3t" not in text
        assert "f00" not in text


@pytest.mark.parametrize(
    ("flag", "field"), [("--hidden-units", "hidden_units"), ("--alphas", "alphas")]
)
def test_an_empty_grid_flag_exits_2_not_the_default_grid(
    tmp_path: Path, csv: Path, flag: str, field: str
) -> None:
    """`--hidden-units ""` (or ",,") was dropped, and the run searched the default grid."""
    output = tmp_path / "bundle"
    code, summary, stderr = train(*base_args(csv, output), flag, ",,")
    assert code == 2
    assert field in summary["error"]
    assert "Traceback" not in stderr
    assert not output.exists()


def test_a_refused_combination_of_settings_is_named_without_every_setting(
    tmp_path: Path, csv: Path
) -> None:
    """The audit/exclude overlap quoted the whole configuration back (every setting)."""
    code, summary, _ = train(
        *base_args(csv, tmp_path / "b"), "--exclude", "age", "--audit-only", "age"
    )
    assert code == 2
    assert "both audit_only and excluded" in summary["error"]
    assert "got" not in summary["error"]
    assert len(summary["error"]) < 300
