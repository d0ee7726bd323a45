"""Drift demo path through real processes: the predictor logs what it scores to MinIO, and the
drift job sees the score distribution move when the synthetic generator's drift knob turns."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from creditmodel.core.bundle import Bundle
from creditmodel.training import drift_job, synthetic
from tests.predictor.conftest import TrainedBundle
from tests.predictor.server import PredictorServer, predictor_server
from tests.support.minio import S3Bucket

pytestmark = pytest.mark.integration


def v2_request(bundle: Bundle, frame: pd.DataFrame) -> dict[str, Any]:
    inputs = []
    for feature in bundle.schema.features:
        values = frame[feature.name].to_numpy()
        data = (
            [str(v) for v in values]
            if feature.kind == "categorical"
            else [float(v) if feature.datatype == "FP32" else int(v) for v in values]
        )
        inputs.append(
            {
                "name": feature.name,
                "datatype": feature.datatype,
                "shape": [len(frame), 1],
                "data": data,
            }
        )
    return {"inputs": inputs}


def score(server: PredictorServer, bundle: Bundle, frame: pd.DataFrame, batch: int = 200) -> None:
    for start in range(0, len(frame), batch):
        body = json.dumps(v2_request(bundle, frame.iloc[start : start + batch])).encode()
        request = urllib.request.Request(
            server.infer_url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200


def wait_logged(server: PredictorServer, rows: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.metric("creditmodel_prediction_log_written_rows_total", model="demo") >= rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {rows} rows reached the prediction log")


def drift_summary(
    champion: TrainedBundle, s3: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    end = datetime.now(UTC) + timedelta(minutes=1)
    code = drift_job.main(
        [
            "--bundle",
            champion.uri,
            "--log",
            f"{s3.uri}/predictions",
            "--end",
            end.isoformat(),
            "--window",
            "1h",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    return dict(json.loads(out))


def test_logged_predictions_show_drift_rising(
    champion: TrainedBundle, s3: S3Bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        **s3.env(),
        "CREDITMODEL_PREDICTION_LOG_URI": f"{s3.uri}/predictions",
        "CREDITMODEL_PREDICTION_LOG_FLUSH_INTERVAL_SECONDS": "0.2",
    }
    names = [f.name for f in champion.bundle.schema.features]
    stable = synthetic.generate(2_000, seed=11, drift=0.0)[names]
    drifted = synthetic.generate(2_000, seed=12, drift=1.0)[names]
    with predictor_server(champion.uri, tmp_path, env=env) as server:
        score(server, champion.bundle, stable)
        wait_logged(server, 2_000)
        before = drift_summary(champion, s3, capsys)
        score(server, champion.bundle, drifted)
        wait_logged(server, 4_000)
        after = drift_summary(champion, s3, capsys)

    assert before["rows"] == 2_000
    assert after["rows"] == 4_000
    assert before["score_status"] == "stable", before
    assert after["score_psi"] > before["score_psi"] + 0.05
    assert after["top_drifting_features"], after
    assert after["report_uri"].endswith("drift.html")


def test_rows_queued_at_exit_are_written(tmp_path: Path) -> None:
    """A predictor process that exits without closing its logger (SIGTERM -> normal interpreter
    exit) still writes what it had queued."""
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "from creditmodel.predictor.prediction_log import PredictionLogger, PredictionLogSettings\n"
        "from tests.core.bundles import SCHEMA\n"
        f"settings = PredictionLogSettings(uri={str(tmp_path / 'log')!r}, flush_interval_seconds=3600)\n"
        "logger = PredictionLogger(settings, SCHEMA, 'm')\n"
        "logger.offer(request_id='r', version='v1', variant='int8',\n"
        "             inputs={'age': np.array([30]), 'housing': np.array(['own'], dtype=object)},\n"
        "             probability=np.array([0.1], dtype=np.float32), score=np.array([600]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len(list((tmp_path / "log").rglob("*.parquet"))) == 1


def test_a_sigterm_to_a_multi_worker_predictor_writes_every_queued_row(
    champion: TrainedBundle, tmp_path: Path
) -> None:
    """The kubelet's SIGTERM reaches the parent of `--workers 2`; each REST worker then ends by
    the SIGTERM uvicorn re-raises after its shutdown, where no atexit hook runs: every row its
    logger still held was lost (0 of 60 before). The lifespan's shutdown now writes them."""
    import os
    import signal

    import pyarrow.parquet as pq

    frame = synthetic.generate(60, seed=3).drop(columns=["default"], errors="ignore")
    log_dir = tmp_path / "log"
    env = {
        "CREDITMODEL_PREDICTION_LOG_URI": str(log_dir),
        "CREDITMODEL_PREDICTION_LOG_FLUSH_INTERVAL_SECONDS": "3600",
    }
    with predictor_server(
        champion.uri, tmp_path, extra=["--workers", "2"], env=env, name="workers-log"
    ) as server:
        for start in range(0, len(frame)):
            score(server, champion.bundle, frame.iloc[start : start + 1], batch=1)
        assert not list(log_dir.rglob("*.parquet"))  # all still queued (an hour's interval)
        os.kill(server.process.proc.pid, signal.SIGTERM)  # the parent only, as the kubelet does
        server.process.proc.wait(timeout=60)
    written = sum(pq.read_metadata(part).num_rows for part in log_dir.rglob("*.parquet"))
    assert written == len(frame)
