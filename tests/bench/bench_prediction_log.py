"""Cost of the prediction log on predictor throughput: single-row V2 REST under wrk (16
connections, 1 worker), logging off vs on at 100 % and 10 % sampling into a real MinIO.
Rounds run interleaved; a case's cost is the median over rounds of its throughput against the
logging-off run of the same round, so a burst of load from elsewhere on this shared machine moves
one round's pair together instead of deciding the verdict (a best-of across rounds compares one
lucky run with another). Target: at 10 % sampling, throughput drops by at most 10 %."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.bench.bench_predictor import BUNDLE, MODEL, _body, _documents, _ensure_bundle
from tests.bench.predictor_load import LoadResult, wrk
from tests.predictor.server import predictor_server
from tests.support.minio import minio_server

SECONDS = float(os.environ.get("PREDICTOR_BENCH_SECONDS", "6"))
ROUNDS = int(os.environ.get("PREDICTOR_LOG_BENCH_ROUNDS", "5"))
CASES = {"log off": None, "log 100%": "1.0", "log 10%": "0.1"}


def run(out_dir: Path) -> list[dict[str, Any]]:
    _ensure_bundle()
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    body = _body(_documents(1))
    best: dict[str, LoadResult] = {}
    per_round: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch, minio_server(Path(scratch)) as minio:
        bucket = minio.create_bucket("predictions")
        for round_number in range(ROUNDS):
            this_round: dict[str, float] = {}
            per_round.append(this_round)
            for case, rate in CASES.items():
                env = dict(minio.env())
                if rate is not None:
                    env |= {
                        "CREDITMODEL_PREDICTION_LOG_URI": f"s3://{bucket}/log",
                        "CREDITMODEL_PREDICTION_LOG_SAMPLE_RATE": rate,
                        "CREDITMODEL_PREDICTION_LOG_FLUSH_INTERVAL_SECONDS": "5",
                    }
                with predictor_server(
                    str(BUNDLE),
                    logs,
                    model_name=MODEL,
                    env=env,
                    name=f"predictor-{case.replace(' ', '-').replace('%', 'pct')}",
                ) as server:
                    result = wrk(server.infer_url, body, out_dir / "wrk", seconds=SECONDS)
                print(
                    f"   round {round_number + 1} {case}: {result.requests_per_second:,.0f} req/s",
                    file=sys.stderr,
                    flush=True,
                )
                this_round[case] = result.requests_per_second
                if case not in best or result.requests_per_second > best[case].requests_per_second:
                    best[case] = result
    rows: list[dict[str, Any]] = []
    for case, result in best.items():
        rows.extend(result.rows(case))
    for case in ("log 100%", "log 10%"):
        cost = statistics.median(1 - r[case] / r["log off"] for r in per_round)
        rows.append(
            {
                "case": case,
                "metric": f"throughput cost vs log off (median of {ROUNDS} paired rounds)",
                "value": cost * 100,
                "unit": "%",
                **({"target": "<= 10", "ok": cost <= 0.10} if case == "log 10%" else {}),
            }
        )
    return rows
