"""Training pipeline: German Credit quality and time, and a million synthetic rows.

- German Credit (the reference bundle's exact arguments): 5-fold CV AUC of the MLP and of the
  logistic-regression baseline on the same folds, out-of-fold Brier, fp32 vs INT8, whole-pipeline
  wall time (target <= 60 s on this 2-core machine).
- German Credit, 80/20 stratified hold-out: fp32 vs INT8 AUC on rows the model never saw.
- 1,000,000 synthetic applicants (Parquet): whole pipeline wall time (target <= 10 min) and peak
  RSS (target <= 4 GiB). The CV search and the LR baseline run on a 10,000-row stratified sample
  (`SearchSpace.search_rows`); the final MLP is fitted on all rows.

Each run is a real `creditmodel-train` process; its peak RSS comes from wait4's rusage, so it is
that process's own, not the benchmark harness's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from creditmodel.core import bundle
from creditmodel.training import export, german_credit, reference_bundle, synthetic

GIB = 1024**3
BIG_ROWS = 1_000_000


@dataclass(frozen=True)
class Run:
    wall: float
    # user + system CPU of the run and of the CV workers it reaped: what the wall time would be
    # on one idle core, comparable across runs on a machine shared with other work.
    cpu: float
    peak_rss: int
    load_before: float
    summary: dict[str, Any]


def _train(args: list[str], log: Path) -> Run:
    """Run creditmodel-train as its own process and measure it."""
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "creditmodel.training", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        assert process.stdout is not None
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"creditmodel-train exited {process.returncode}; see {log}")
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss=usage.ru_maxrss * 1024,
        load_before=load_before,
        summary=json.loads(out),
    )


def _row(case: str, metric: str, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    return {"case": case, "metric": metric, "value": value, "unit": unit, **extra}


def _timing(case: str, run: Run, target_seconds: float) -> list[dict[str, Any]]:
    return [
        _row(case, "pipeline_wall", run.wall, "s", target=f"<= {target_seconds:g} s", ok=run.wall <= target_seconds),
        _row(case, "pipeline_cpu", run.cpu, "s"),
        _row(case, "load_average_at_start", run.load_before, "runnable"),
        _row(case, "peak_rss", run.peak_rss / GIB, "GiB", target="<= 4 GiB", ok=run.peak_rss <= 4 * GIB),
    ]  # fmt: skip


def _quantization(case: str, m: dict[str, float]) -> list[dict[str, Any]]:
    return [
        _row(case, "int8_auc_drop", m["int8_auc_drop"], "AUC", target="<= 0.005", ok=m["int8_auc_drop"] <= 0.005),
        _row(case, "int8_max_abs_dp", m["int8_max_abs_dp"], "probability", target="<= 0.02", ok=m["int8_max_abs_dp"] <= 0.02),
        _row(case, "onnx_vs_sklearn_max_abs_dp", m["onnx_max_abs_dp"], "probability", target="<= 1e-5", ok=m["onnx_max_abs_dp"] <= 1e-5),
    ]  # fmt: skip


def _german(out: Path) -> list[dict[str, Any]]:
    run = _train(reference_bundle.arguments(out / "german-credit"), out / "german.log")
    m = run.summary["metrics"]
    case = "german-credit"
    return [
        _row(case, "cv_auc_mlp", m["cv_auc_mlp"], "AUC", target=">= LR - 0.005", ok=m["cv_auc_mlp"] >= m["cv_auc_baseline_lr"] - 0.005),
        _row(case, "cv_auc_baseline_lr", m["cv_auc_baseline_lr"], "AUC"),
        _row(case, "oof_brier_mlp", m["oof_brier"], "Brier"),
        _row(case, "oof_brier_lr", m["baseline_oof_brier"], "Brier"),
        _row(case, "auc_fp32_in_sample", m["auc_fp32"], "AUC"),
        _row(case, "auc_int8_in_sample", m["auc_int8"], "AUC"),
        *_quantization(case, m),
        *_timing(case, run, 60),
    ]  # fmt: skip


def _german_holdout(out: Path) -> list[dict[str, Any]]:
    frame = german_credit.load()
    train, test = train_test_split(
        frame, test_size=0.2, stratify=frame[german_credit.TARGET], random_state=0
    )
    data = out / "german_train.csv"
    train.to_csv(data, index=False)
    args = reference_bundle.arguments(out / "german-holdout", data=data)
    loaded = bundle.load_bundle(_train(args, out / "german_holdout.log").summary["uri"])
    numeric = {f.name: float for f in loaded.schema.features if f.kind == "numeric"}
    feed = export.feeds(loaded.schema, test.reset_index(drop=True).astype(numeric))
    labels = (test[german_credit.TARGET] == german_credit.POSITIVE_LABEL).to_numpy()
    aucs = {}
    for variant, name in (("fp32", bundle.MODEL_FP32), ("int8", bundle.MODEL_INT8)):
        session = ort.InferenceSession(loaded.files[name])
        aucs[variant] = float(roc_auc_score(labels, session.run(["probability"], feed)[0]))
    case = "german-credit 80/20 hold-out"
    drop = aucs["fp32"] - aucs["int8"]
    return [
        _row(case, "auc_fp32", aucs["fp32"], "AUC"),
        _row(case, "auc_int8", aucs["int8"], "AUC"),
        _row(case, "int8_auc_drop", drop, "AUC", target="<= 0.005", ok=drop <= 0.005),
    ]  # fmt: skip


def _million(out: Path) -> list[dict[str, Any]]:
    data = out / "synthetic_1m.parquet"
    synthetic.generate(BIG_ROWS, seed=7).to_parquet(data)
    args = [
        "--data", str(data), "--target", synthetic.TARGET, "--positive-label", synthetic.POSITIVE_LABEL,
        "--model-name", "synthetic-1m", "--version", "bench", "--output", str(out / "synthetic-1m"),
    ]  # fmt: skip
    run = _train(args, out / "synthetic_1m.log")
    m = run.summary["metrics"]
    case = f"synthetic {BIG_ROWS:,} rows"
    return [
        *_timing(case, run, 600),
        _row(case, "cv_auc_mlp (10k sample)", m["cv_auc_mlp"], "AUC"),
        _row(case, "cv_auc_baseline_lr (10k sample)", m["cv_auc_baseline_lr"], "AUC"),
        *_quantization(case, m),
    ]  # fmt: skip


def run(out_dir: Path) -> list[dict[str, Any]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("german-credit", "german-holdout", "synthetic-1m"):
        shutil.rmtree(out_dir / stale, ignore_errors=True)
    rows = _german(out_dir) + _german_holdout(out_dir)
    # BENCH_TRAINING_SKIP_1M=1 for a quick German-Credit-only run.
    if os.environ.get("BENCH_TRAINING_SKIP_1M") != "1":
        rows += _million(out_dir)
    return rows
