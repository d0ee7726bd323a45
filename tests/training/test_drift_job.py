"""The drift job against a real MinIO, fed by the predictor's own prediction-log writer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from creditmodel.core import bundle
from creditmodel.core import prediction_log as plog
from creditmodel.core.storage import open_store
from creditmodel.predictor.prediction_log import PredictionLogger, PredictionLogSettings
from creditmodel.training import drift_job
from tests.core.bundles import SCHEMA, files, manifest
from tests.support.minio import S3Bucket
from tests.support.process import free_port

pytestmark = pytest.mark.integration

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def publish_bundle(s3: S3Bucket) -> str:
    uri = f"{s3.uri}/bundles/german-credit/v1"
    contents = files()
    bundle.publish_bundle(uri, contents, manifest(contents))
    return uri


def log_rows(
    s3: S3Bucket, rows: int, *, shift: bool, at: datetime, seed: int = 1, version: str = "v1"
) -> None:
    """Score-like rows drawn from the reference distribution, or shifted away from it."""
    rng = np.random.default_rng(seed)
    age_bins = rng.choice(3, size=rows, p=[0.3, 0.4, 0.3] if not shift else [0.05, 0.15, 0.8])
    ages = np.array([20, 38, 60])[age_bins] + rng.integers(-3, 3, size=rows)
    housing = rng.choice(["own", "rent"], size=rows, p=[0.7, 0.3])
    score_bins = rng.choice(3, size=rows, p=[0.3, 0.4, 0.3] if not shift else [0.7, 0.2, 0.1])
    scores = np.array([520, 575, 640])[score_bins]
    logger = PredictionLogger(
        PredictionLogSettings(uri=f"{s3.uri}/predictions"),
        SCHEMA,
        "german-credit",
        clock=lambda: at,
    )
    try:
        for start in range(0, rows, 500):
            part = slice(start, start + 500)
            logger.offer(
                request_id=f"r{start}",
                version=version,
                variant="int8",
                inputs={"age": ages[part], "housing": housing[part]},
                probability=np.full(ages[part].shape, 0.2, dtype=np.float32),
                score=scores[part],
            )
    finally:
        logger.close()


def run_job(
    s3: S3Bucket, bundle_uri: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, object], str]:
    code = drift_job.main(
        [
            "--bundle",
            bundle_uri,
            "--log",
            f"{s3.uri}/predictions",
            "--end",
            END.isoformat(),
            "--window",
            "24h",
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def test_stable_traffic_reports_stable_psi_and_an_evidently_report(
    s3: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = publish_bundle(s3)
    log_rows(s3, 4000, shift=False, at=END - timedelta(hours=2))
    code, summary, _ = run_job(s3, uri, capsys)
    assert code == 0
    assert summary["rows"] == 4000
    assert summary["score_status"] == "stable"
    assert summary["top_drifting_features"] == []
    report = open_store(f"{s3.uri}/predictions").read_bytes(
        f"{plog.report_prefix('german-credit', END)}/drift.html"
    )
    assert b"<html" in report.lower()
    latest = json.loads(
        open_store(f"{s3.uri}/predictions").read_bytes(plog.latest_report_name("german-credit"))
    )
    assert latest["score_psi"] == summary["score_psi"]


def test_shifted_traffic_crosses_the_act_line(
    s3: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = publish_bundle(s3)
    log_rows(s3, 4000, shift=True, at=END - timedelta(hours=1))
    code, summary, _ = run_job(s3, uri, capsys)
    assert code == 0
    assert summary["score_status"] == "act"
    assert isinstance(summary["score_psi"], float)
    assert summary["score_psi"] > 0.25
    assert summary["top_drifting_features"] == ["age"]
    assert isinstance(summary["evidently_drifted_columns"], int)
    assert summary["evidently_drifted_columns"] >= 1


def test_only_the_bundle_version_rows_are_judged(
    s3: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    """A canary's drifted rows share the log with the stable's; the stable's report leaves them
    out and says how many."""
    uri = publish_bundle(s3)  # v1
    log_rows(s3, 3000, shift=False, at=END - timedelta(hours=2))
    log_rows(s3, 2000, shift=True, at=END - timedelta(hours=1), seed=2, version="v2")
    code, summary, _ = run_job(s3, uri, capsys)
    assert code == 0
    assert (summary["rows"], summary["other_version_rows"]) == (3000, 2000)
    assert summary["score_status"] == "stable"
    assert summary["top_drifting_features"] == []


def test_rows_outside_the_window_are_ignored(
    s3: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = publish_bundle(s3)
    log_rows(s3, 1000, shift=True, at=END - timedelta(days=3))
    code, summary, _ = run_job(s3, uri, capsys)
    assert code == 0
    assert summary["rows"] == 0
    assert summary["score_status"] == "no-data"
    assert summary["score_psi"] is None
    assert "no predictions logged" in str(summary["message"])


def test_corrupt_and_mismatched_parts_are_skipped_and_named(
    s3: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = publish_bundle(s3)
    log_rows(s3, 1000, shift=False, at=END - timedelta(hours=3))
    store = open_store(f"{s3.uri}/predictions")
    hour = plog.hour_prefix("german-credit", END - timedelta(hours=3))
    store.write_bytes(f"{hour}/part-corrupt.parquet", b"PAR1 this is not parquet")
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table({"score": pa.array(["high"])}), sink)
    store.write_bytes(f"{hour}/part-mismatch.parquet", sink.getvalue())

    code, summary, _ = run_job(s3, uri, capsys)
    assert code == 0
    assert summary["rows"] == 1000
    skipped = {item["name"].rsplit("/", 1)[-1]: item["reason"] for item in summary["skipped_files"]}  # type: ignore[attr-defined]
    assert skipped["part-corrupt.parquet"].startswith("unreadable Parquet")
    assert skipped["part-mismatch.parquet"] == "schema mismatch: missing column 'timestamp'"


def write_part(s3: S3Bucket, name: str, columns: dict[str, object], at: datetime) -> None:
    """A Parquet part written by hand: an older or newer writer than this code's."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(columns)
    stamp = pa.array([at] * table.num_rows, type=pa.timestamp("us", tz="UTC"))
    sink = io.BytesIO()
    pq.write_table(table.append_column(plog.TIMESTAMP, stamp), sink)
    hour = plog.hour_prefix("german-credit", at)
    open_store(f"{s3.uri}/predictions").write_bytes(f"{hour}/{name}.parquet", sink.getvalue())


def test_parts_of_every_log_format_are_read_together(
    s3: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    """Format 1 parts (no decision record), format 2 parts (this writer: reason codes, bundle
    digest) and parts of a later format with columns this reader does not know all count."""
    uri = publish_bundle(s3)
    log_rows(s3, 1000, shift=False, at=END - timedelta(hours=3))  # this writer: format 2
    format_1 = {
        plog.REQUEST_ID: ["old"] * 3,
        plog.MODEL: ["german-credit"] * 3,
        plog.VERSION: ["v1"] * 3,
        plog.VARIANT: ["int8"] * 3,
        plog.PROBABILITY: [0.2, 0.2, 0.2],
        plog.SCORE: [520, 575, 640],
        plog.input_column("age"): [25, 40, 60],
        plog.input_column("housing"): ["own", "rent", "own"],
    }
    write_part(s3, "part-format-1", format_1, END - timedelta(hours=2))
    later = {
        **format_1,
        plog.REQUEST_ID: ["new"] * 3,
        plog.LOG_FORMAT: [plog.FORMAT_VERSION + 1] * 3,
        plog.BUNDLE_DIGEST: ["sha256:" + "0" * 64] * 3,
        **dict.fromkeys(plog.REASON_CODE_COLUMNS, ["R01: Age in years"] * 3),
        "explanation": [[0.1, 0.2]] * 3,  # a column no reader knows yet
    }
    write_part(s3, "part-later-format", later, END - timedelta(hours=1))
    code, summary, _ = run_job(s3, uri, capsys)
    assert code == 0
    assert summary["rows"] == 1006
    assert summary["skipped_files"] == []
    import io

    import pyarrow.parquet as pq

    store = open_store(f"{s3.uri}/predictions")
    ours = next(n for n in store.list_names() if "/part-2026" in n)  # the writer's own part
    assert set(plog.DECISION_COLUMNS) <= set(
        pq.read_schema(io.BytesIO(store.read_bytes(ours))).names
    )


def test_personal_data_dropped_from_the_log_is_reported_not_logged(
    s3: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = publish_bundle(s3)
    settings = PredictionLogSettings(uri=f"{s3.uri}/predictions", drop_fields=["age"])
    logger = PredictionLogger(
        settings, SCHEMA, "german-credit", clock=lambda: END - timedelta(hours=1)
    )
    logger.offer(
        request_id="r",
        version="v1",
        variant="int8",
        inputs={"age": np.array([30, 40]), "housing": np.array(["own", "rent"], dtype=object)},
        probability=np.array([0.1, 0.2], dtype=np.float32),
        score=np.array([600, 580]),
    )
    logger.close()
    code, summary, _ = run_job(s3, uri, capsys, "--min-rows", "1")
    assert code == 0
    statuses = {f["name"]: f["status"] for f in summary["features"]}  # type: ignore[attr-defined]
    assert statuses["age"] == "not-logged"


def test_missing_bundle_is_bad_input(s3: S3Bucket, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_job(s3, f"{s3.uri}/bundles/nothing-here", capsys)
    assert code == drift_job.EXIT_BAD_INPUT
    assert "--bundle" in err
    assert "no manifest.json" in err


def test_log_storage_down_is_a_storage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    contents = files()
    bundle.publish_bundle(str(tmp_path / "bundle"), contents, manifest(contents))
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    code = drift_job.main(
        ["--bundle", str(tmp_path / "bundle"), "--log", "s3://logs", "--end", END.isoformat()]
    )
    err = capsys.readouterr().err
    assert code == drift_job.EXIT_STORAGE
    assert "storage error" in err
    assert "S3 endpoint unreachable" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [("24h", timedelta(hours=24)), ("999999m", timedelta(minutes=999_999)),
     ("9999h", timedelta(hours=9999)), ("999d", timedelta(days=999)), (" 7d ", timedelta(days=7))],
)  # fmt: skip
def test_drift_windows_up_to_the_bound_are_read(text: str, expected: timedelta) -> None:
    assert drift_job.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["0h", "1000d", "10000h", "1000000m", "999999d", "1w", "07d", ""])
def test_drift_windows_beyond_the_bound_are_refused_naming_it(text: str) -> None:
    """999999d once passed and then overflowed before year 1 (exit 1, a traceback)."""
    with pytest.raises(
        drift_job.argparse.ArgumentTypeError, match="at most 999999m, 9999h or 999d"
    ):
        drift_job.parse_duration(text)


# --- hostile logs and arguments, on a local log (found by an outside-tester helper) -------------


def local_rows(
    log: Path,
    rows: int,
    *,
    at: datetime,
    scaling: str | None = None,
    shift: int = 0,
    **settings: Any,
) -> None:
    """Stable traffic (the reference's score bins) into a local log; `shift` adds points to
    every score, as a predictor serving under another scaling does."""
    rng = np.random.default_rng(3)
    scores = np.array([520, 575, 640])[rng.choice(3, size=rows, p=[0.3, 0.4, 0.3])] + shift
    logger = PredictionLogger(
        PredictionLogSettings(uri=str(log), **settings), SCHEMA, "german-credit", clock=lambda: at
    )
    try:
        logger.offer(
            request_id="r", version="v1", variant="int8",
            inputs={
                "age": rng.choice([20, 38, 60], size=rows) + rng.integers(-3, 3, size=rows),
                "housing": rng.choice(["own", "rent"], size=rows, p=[0.7, 0.3]),
            },
            probability=np.full(rows, 0.2, dtype=np.float32), score=scores, points_scaling=scaling,
        )  # fmt: skip
    finally:
        logger.close()


def local_bundle(tmp_path: Path) -> str:
    uri = str(tmp_path / "bundle")
    if not (tmp_path / "bundle").exists():
        contents = files()
        bundle.publish_bundle(uri, contents, manifest(contents))
    return uri


def run_local(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any], str]:
    argv = ["--bundle", local_bundle(tmp_path), "--log", str(tmp_path / "log")]
    code = drift_job.main([*argv, "--end", END.isoformat(), *extra])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def test_too_few_rows_give_no_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One logged row read as score PSI 8.5, `act`, and the operator retrained on it."""
    local_rows(tmp_path / "log", 20, at=END - timedelta(hours=1))
    code, summary, _ = run_local(tmp_path, capsys)
    assert (code, summary["score_status"], summary["score_psi"]) == (0, "insufficient-data", None)
    assert "20 rows in the window, fewer than the 500" in summary["message"]
    code, summary, _ = run_local(tmp_path, capsys, "--min-rows", "10")
    assert summary["score_psi"] is not None


def test_scores_under_another_points_scaling_are_judged_on_the_bundles_scale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A predictor run with --base_score 700 logs every score 100 points up: the same
    applicants read as a PSI of 3, `act`."""
    scaling = json.dumps({"base_score": 700.0, "base_odds": 50.0, "points_to_double_odds": 20.0})
    local_rows(tmp_path / "log", 2000, at=END - timedelta(hours=1), scaling=scaling, shift=100)
    code, summary, _ = run_local(tmp_path, capsys)
    assert (code, summary["score_status"]) == (0, "stable")


def test_hashed_categories_are_not_logged_not_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Salted digests compared as categories read as a PSI of 17, `act`, and topped the list."""
    local_rows(
        tmp_path / "log", 2000, at=END - timedelta(hours=1), hash_fields=["housing"], hash_salt="s"
    )
    code, summary, _ = run_local(tmp_path, capsys)
    statuses = {f["name"]: f["status"] for f in summary["features"]}
    assert (code, statuses["housing"]) == (0, "not-logged")
    assert "housing" not in summary["top_drifting_features"]


def test_a_window_evidently_cannot_compare_still_gets_its_psi_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A drop_fields change within the window left no complete row: Evidently raised, the job
    exited 1 and wrote no report for as long as the mixed parts stayed in the window."""
    local_rows(tmp_path / "log", 1000, at=END - timedelta(hours=2), drop_fields=["age"])
    local_rows(tmp_path / "log", 1000, at=END - timedelta(hours=1), drop_fields=["housing"])
    code, summary, err = run_local(tmp_path, capsys)
    assert (code, summary["score_status"]) == (0, "stable")
    assert summary["evidently_drifted_columns"] is None
    assert "no Evidently report" in summary["message"]
    for line in err.strip().splitlines():  # every log line is one JSON object
        json.loads(line)


def test_rows_a_part_of_the_previous_hour_holds_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A part is named after its first batch: rows flushed with it after the hour turned were
    in no window."""
    at = [END - timedelta(hours=1, seconds=10)]
    logger = PredictionLogger(
        PredictionLogSettings(uri=str(tmp_path / "log")),
        SCHEMA,
        "german-credit",
        clock=lambda: at[0],
    )
    for moment in (at[0], END - timedelta(minutes=59)):
        at[0] = moment
        logger.offer(
            request_id="r", version="v1", variant="int8",
            inputs={"age": np.full(600, 38), "housing": np.full(600, "own", dtype=object)},
            probability=np.full(600, 0.2, dtype=np.float32), score=np.full(600, 575),
        )  # fmt: skip
    logger.close()
    code, summary, _ = run_local(tmp_path, capsys, "--window", "1h")
    assert (code, summary["rows"]) == (0, 600)


def test_a_backfill_leaves_the_newer_latest_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local_rows(tmp_path / "log", 1000, at=END - timedelta(hours=1))
    assert run_local(tmp_path, capsys)[0] == 0
    assert run_local(tmp_path, capsys, "--end", "2026-11-01T00:00:00")[0] == 0
    latest = json.loads((tmp_path / "log" / plog.latest_report_name("german-credit")).read_text())
    assert latest["window_end"].startswith(END.strftime("%Y-%m-%dT%H:%M"))


@pytest.mark.parametrize(
    "argument",
    [
        ("--end", "0001-01-01T00:30:00"),
        ("--end", "9999-12-31T23:30:00"),
        ("--seed", "-1"),
        ("--seed", "1099511627776"),
        ("--model", "../escape"),
        ("--model", "m" * 254),
        ("--log", ""),
        ("--log", "ftp://host/x"),
        ("--log", "s3://"),
    ],
)
def test_a_bad_argument_is_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argument: tuple[str, str]
) -> None:
    """Tracebacks (OverflowError, ValueError, a pydantic error after reading the whole window),
    exit 4 for what is no storage failure, and an empty --log that read from /."""
    argv = ["--bundle", local_bundle(tmp_path), "--log", str(tmp_path / "log"), *argument]
    with pytest.raises(SystemExit) as stopped:
        drift_job.main(argv)
    assert stopped.value.code == drift_job.EXIT_BAD_INPUT
    assert "Traceback" not in capsys.readouterr().err


def test_a_window_of_non_finite_scores_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The message read "score PSI nan (no-data)"."""
    logger = PredictionLogger(
        PredictionLogSettings(uri=str(tmp_path / "log")), SCHEMA, "german-credit",
        clock=lambda: END - timedelta(hours=1),
    )  # fmt: skip
    logger.offer(
        request_id="r", version="v1", variant="int8",
        inputs={"age": np.full(600, 38), "housing": np.full(600, "own", dtype=object)},
        probability=np.full(600, 0.2, dtype=np.float32), score=np.full(600, np.nan),
    )  # fmt: skip
    logger.close()
    code, summary, _ = run_local(tmp_path, capsys)
    assert (code, summary["score_psi"], summary["score_status"]) == (0, None, "no-data")
    assert summary["message"].startswith("no finite score logged; no drift verdict")


def test_parts_without_a_version_or_of_another_model_are_skipped_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A part without the version column was judged with no version filter (a canary's rows
    counted as the stable's), and one holding another model's rows as this model's."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    local_rows(tmp_path / "log", 1000, at=END - timedelta(hours=2))
    hour = plog.hour_prefix("german-credit", END - timedelta(hours=1))
    for name, extra in (("no-version", {}), ("other-model", {plog.VERSION: ["v1"] * 600})):
        columns = {
            plog.SCORE: [900] * 600, plog.PROBABILITY: [0.01] * 600,
            plog.MODEL: ["german-credit" if name == "no-version" else "mortgage"] * 600, **extra,
        }  # fmt: skip
        table = pa.table(columns).append_column(
            plog.TIMESTAMP, pa.array([END - timedelta(hours=1)] * 600, pa.timestamp("us", "UTC"))
        )
        sink = io.BytesIO()
        pq.write_table(table, sink)
        open_store(str(tmp_path / "log")).write_bytes(f"{hour}/{name}.parquet", sink.getvalue())
    code, summary, _ = run_local(tmp_path, capsys)
    reasons = {s["name"].rsplit("/", 1)[-1]: s["reason"] for s in summary["skipped_files"]}
    assert (code, summary["rows"], summary["score_status"]) == (0, 1000, "stable")
    assert reasons == {
        "no-version.parquet": "schema mismatch: missing column 'version' (a report judges one"
        " version)",
        "other-model.parquet": "schema mismatch: rows of a model other than 'german-credit'",
    }
