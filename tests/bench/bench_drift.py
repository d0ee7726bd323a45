"""Drift job at scale: 1,000,000 logged rows x 20 features (targets: <= 2 min, <= 2 GiB peak RSS),
plus the prediction logger's own cost per scored batch. The job runs in a subprocess so its peak
RSS is its own."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from creditmodel.core import bundle
from creditmodel.core.reference import Bins, CategoricalReference, NumericReference, Reference
from creditmodel.core.schema import Feature, Schema
from creditmodel.predictor.prediction_log import PredictionLogger, PredictionLogSettings

ROWS = 1_000_000
NUMERIC, CATEGORICAL = 14, 6
CATEGORIES = ["a", "b", "c", "d"]
END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _schema() -> Schema:
    features = [
        Feature(
            name=f"x{i}",
            kind="numeric",
            datatype="FP32",
            description=f"numeric {i}",
            reason_code=f"N{i:02d}",
        )
        for i in range(NUMERIC)
    ]
    features += [
        Feature(
            name=f"c{i}",
            kind="categorical",
            datatype="BYTES",
            description=f"category {i}",
            reason_code=f"C{i:02d}",
            categories=CATEGORIES,
        )
        for i in range(CATEGORICAL)
    ]
    return Schema(features=features, target="default", positive_label="bad")


def _deciles(values: np.ndarray) -> Bins:
    edges = np.unique(np.quantile(values, np.linspace(0.1, 0.9, 9)))
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return Bins(edges=edges.tolist(), fractions=(counts / counts.sum()).tolist())


def _publish_bundle(root: Path, schema: Schema, rng: np.random.Generator) -> str:
    sample = rng.normal(size=(50_000, NUMERIC))
    scores = rng.normal(600, 40, size=50_000)
    reference = Reference(
        features={
            **{
                f"x{i}": NumericReference(bins=_deciles(sample[:, i]), baseline=0.0)
                for i in range(NUMERIC)
            },
            **{
                f"c{i}": CategoricalReference(
                    frequencies=dict.fromkeys(CATEGORIES, 0.25), baseline="a"
                )
                for i in range(CATEGORICAL)
            },
        },
        score=_deciles(scores),
        probability=_deciles(rng.uniform(size=50_000)),
    )
    files = {
        bundle.MODEL_FP32: b"not used by the drift job",
        bundle.MODEL_INT8: b"not used by the drift job",
        bundle.SCHEMA: schema.model_dump_json().encode(),
        bundle.REFERENCE: reference.model_dump_json().encode(),
        bundle.MODEL_CARD: b"# bench\n",
    }
    manifest = bundle.Manifest(
        model_name="bench",
        version="v1",
        created_at=END,
        lineage=bundle.Lineage(
            data_uri="synthetic", data_sha256="0" * 64, rows=50_000, code_version="bench", seed=0
        ),
        files={name: bundle.file_entry(data) for name, data in files.items()},
    )
    uri = str(root / "bundle")
    bundle.publish_bundle(uri, files, manifest)
    return uri


def _log(root: Path, schema: Schema, rng: np.random.Generator) -> float:
    """Write ROWS rows (the second half drifted) through the predictor's logger; seconds spent in
    offer() per 1,000-row batch, the cost a request pays."""
    settings = PredictionLogSettings(
        uri=str(root / "log"), max_rows_per_file=100_000, queue_rows=2 * ROWS
    )
    logger = PredictionLogger(settings, schema, "bench", clock=lambda: END - timedelta(hours=1))
    offer_seconds = 0.0
    batch = 1_000
    for start in range(0, ROWS, batch):
        shift = 1.0 if start >= ROWS // 2 else 0.0
        inputs: dict[str, Any] = {
            f"x{i}": rng.normal(shift, size=batch).astype(np.float32) for i in range(NUMERIC)
        }
        inputs |= {f"c{i}": rng.choice(CATEGORIES, size=batch) for i in range(CATEGORICAL)}
        began = time.perf_counter()
        logger.offer(
            request_id=f"r{start}",
            version="v1",
            variant="int8",
            inputs=inputs,
            probability=rng.uniform(size=batch).astype(np.float32),
            score=rng.normal(600 - 60 * shift, 40, size=batch).astype(np.int32),
        )
        offer_seconds += time.perf_counter() - began
    logger.close(timeout=300)
    return offer_seconds / (ROWS // batch)


def run(out_dir: Path) -> list[dict[str, Any]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    schema = _schema()
    for child in ("bundle", "log"):
        subprocess.run(["rm", "-rf", str(out_dir / child)], check=True)
    bundle_uri = _publish_bundle(out_dir, schema, rng)
    offer_seconds = _log(out_dir, schema, rng)

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    began = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "creditmodel.training.drift_job",
            "--bundle",
            bundle_uri,
            "--log",
            str(out_dir / "log"),
            "--end",
            END.isoformat(),
            "--window",
            "24h",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - began
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if result.returncode != 0:
        raise RuntimeError(f"drift job failed: {result.stderr[-2000:]}")
    summary = json.loads(result.stdout)
    if before / 1024 >= peak_mib:  # ru_maxrss is a max over all children: make sure it is the job's
        raise RuntimeError("an earlier child's peak RSS masks the drift job's")
    return [
        {
            "case": "log 1k-row batch",
            "metric": "offer() time",
            "value": offer_seconds * 1e6,
            "unit": "us",
        },
        {
            "case": f"{ROWS:,} rows x 20 features",
            "metric": "drift job wall time",
            "value": seconds,
            "unit": "s",
            "target": "<= 120",
            "ok": seconds <= 120,
        },
        {
            "case": f"{ROWS:,} rows x 20 features",
            "metric": "drift job peak RSS",
            "value": peak_mib,
            "unit": "MiB",
            "target": "<= 2048",
            "ok": peak_mib <= 2048,
        },
        {
            "case": f"{ROWS:,} rows x 20 features",
            "metric": "score PSI (half drifted)",
            "value": summary["score_psi"],
            "unit": "",
            "target": "> 0.1 (drift seen)",
            "ok": summary["score_psi"] > 0.1,
        },
    ]
