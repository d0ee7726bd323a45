"""`creditmodel-drift`: the drift report job (a Kubernetes CronJob created by the operator).

Reads a bundle's frozen reference and a time window of the prediction log, computes score and
per-feature PSI on the reference bins, renders an Evidently DataDrift report for the deeper view,
writes both next to the log, and prints the summary as JSON. Exit codes: 0 report written
(whatever the drift), 2 bad input (arguments, bundle), 4 storage unreachable.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from creditmodel.core import drift
from creditmodel.core import prediction_log as plog
from creditmodel.core.bundle import BundleError, load_bundle
from creditmodel.core.commands import DRIFT_COMMAND, DRIFT_WINDOW_PATTERN, DriftFlags
from creditmodel.core.drift import DriftSummary, SkippedFile
from creditmodel.core.jobs import ExitCode
from creditmodel.core.reference import NumericReference, Reference
from creditmodel.core.schema import Schema
from creditmodel.core.storage import StorageError, open_store
from creditmodel.training.drift_analysis import bins_psi, feature_drift, top_drifting

EXIT_OK, EXIT_BAD_INPUT, EXIT_STORAGE = ExitCode.OK, ExitCode.BAD_INPUT, ExitCode.STORAGE
log = logging.getLogger("creditmodel.drift")


class DriftInputError(Exception):
    """Arguments or inputs the job cannot work with."""


def parse_duration(text: str) -> timedelta:
    window = text.strip()
    if not re.fullmatch(DRIFT_WINDOW_PATTERN, window):
        raise argparse.ArgumentTypeError(
            f"window {text[:40]!r}: use a positive number with m, h or d (e.g. 24h), at most"
            " 999999m, 9999h or 999d"
        )
    units = {"m": "minutes", "h": "hours", "d": "days"}
    return timedelta(**{units[window[-1]]: int(window[:-1])})


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--end {text!r}: not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=DRIFT_COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument(
        DriftFlags.BUNDLE, required=True, help="bundle URI (directory or s3:// prefix)"
    )
    parser.add_argument(
        DriftFlags.LOG, required=True, help="prediction log root URI (directory or s3://)"
    )
    parser.add_argument(
        DriftFlags.MODEL, help="model name in the log (default: the bundle's model name)"
    )
    parser.add_argument(
        DriftFlags.WINDOW,
        type=parse_duration,
        default=timedelta(hours=24),
        help="how far back from --end to read (e.g. 24h, 7d; default 24h)",
    )
    parser.add_argument(
        "--end", type=parse_time, default=None, help="window end, ISO 8601 (default: now)"
    )
    parser.add_argument(
        "--evidently-sample",
        type=int,
        default=100_000,
        help="rows sampled for the Evidently report (PSI always uses every row)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


@dataclass
class LogWindow:
    frame: pd.DataFrame
    files_read: int
    skipped: list[SkippedFile]
    other_version_rows: int = 0


METADATA_KINDS = {plog.TIMESTAMP: "time", plog.SCORE: "number", plog.PROBABILITY: "number"}


def _kind_ok(dtype: Any, kind: str) -> bool:
    import pyarrow as pa

    if kind == "time":
        return bool(pa.types.is_timestamp(dtype))
    if kind == "number":
        return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype))
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype))


def usable_columns(table: Any, schema: Schema) -> tuple[list[str], str | None]:
    """(columns to read, reason to skip the part). Metadata columns are required; a feature column
    may be absent or of another type (dropped or pseudonymised as personal data) and is then left out."""
    for column, kind in METADATA_KINDS.items():
        if column not in table.column_names:
            return [], f"missing column {column!r}"
        if not _kind_ok(table.schema.field(column).type, kind):
            return (
                [],
                f"column {column!r} has type {table.schema.field(column).type}, expected {kind}",
            )
    columns = list(METADATA_KINDS)
    for feature in schema.features:
        column = plog.input_column(feature.name)
        kind = "text" if feature.kind == "categorical" else "number"
        if column in table.column_names and _kind_ok(table.schema.field(column).type, kind):
            columns.append(column)
    return columns, None


def read_window(
    log_uri: str,
    model: str,
    schema: Schema,
    start: datetime,
    end: datetime,
    version: str | None = None,
) -> LogWindow:
    """Every valid row logged in [start, end); unreadable or mismatched parts are skipped and named.
    With `version`, only that model version's rows count: during a canary the log holds the
    canary's rows too, and a report names the one version it judges."""
    import pyarrow.parquet as pq

    frames, skipped, files_read, other_version_rows = [], [], 0, 0
    for prefix in plog.hours_in_window(model, start, end):
        store = open_store(f"{log_uri.rstrip('/')}/{prefix}")
        for name in store.list_names():
            if not name.endswith(".parquet"):
                continue
            full = f"{prefix}/{name}"
            data = store.read_bytes(name)
            try:
                table = pq.read_table(io.BytesIO(data))
            except Exception as exc:  # any decoding failure means a corrupt part
                skipped.append(SkippedFile(name=full, reason=f"unreadable Parquet: {exc}"))
                continue
            columns, problem = usable_columns(table, schema)
            if problem:
                skipped.append(SkippedFile(name=full, reason=f"schema mismatch: {problem}"))
                continue
            has_version = version is not None and plog.VERSION in table.column_names
            frame = table.select([*columns, plog.VERSION] if has_version else columns).to_pandas()
            stamps = pd.to_datetime(frame[plog.TIMESTAMP], utc=True)
            frame = frame[(stamps >= start) & (stamps < end)]
            if has_version:
                same = frame[plog.VERSION] == version
                other_version_rows += int((~same).sum())
                frame = frame[same].drop(columns=plog.VERSION)
            frames.append(frame)
            files_read += 1
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=list(METADATA_KINDS))
    )
    return LogWindow(frame, files_read, skipped, other_version_rows)


def reference_sample(schema: Schema, reference: Reference, rows: int, seed: int) -> pd.DataFrame:
    """A synthetic sample of the frozen reference distribution for Evidently, which compares two
    datasets: categories by their frequencies; numbers uniform within each reference bin (outer bins
    bounded by the schema's valid range, else by one average bin width)."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for feature in schema.features:
        ref = reference.features[feature.name]
        if isinstance(ref, NumericReference):
            edges = np.asarray(ref.bins.edges, dtype=np.float64)
            width = float(np.mean(np.diff(edges))) if edges.size > 1 else 1.0
            low = (
                feature.minimum
                if feature.minimum is not None
                else (edges[0] if edges.size else 0.0) - width
            )
            high = (
                feature.maximum
                if feature.maximum is not None
                else (edges[-1] if edges.size else 0.0) + width
            )
            bounds = np.concatenate(
                [
                    [min(low, edges[0]) if edges.size else low],
                    edges,
                    [max(high, edges[-1]) if edges.size else high],
                ]
            )
            bins = rng.choice(
                len(ref.bins.fractions),
                size=rows,
                p=np.asarray(ref.bins.fractions) / sum(ref.bins.fractions),
            )
            data[feature.name] = rng.uniform(bounds[bins], bounds[bins + 1])
        else:
            categories = list(ref.frequencies)
            weights = np.asarray([ref.frequencies[c] for c in categories])
            data[feature.name] = rng.choice(categories, size=rows, p=weights / weights.sum())
    return pd.DataFrame(data)


def evidently_report(
    schema: Schema, reference: Reference, current: pd.DataFrame, sample: int, seed: int
) -> tuple[str, str, int, float, int]:
    """(html, json, drifted column count, drifted share, rows used) of an Evidently DataDrift report."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if len(current) > sample:
        current = current.sample(n=sample, random_state=seed)
    ref = reference_sample(schema, reference, max(len(current), 1_000), seed)
    definition = DataDefinition(
        numerical_columns=[f.name for f in schema.features if f.kind == "numeric"],
        categorical_columns=[f.name for f in schema.features if f.kind == "categorical"],
    )
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(current.reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    document = json.loads(snapshot.json())
    count = share = None
    for metric in document.get("metrics", []):
        if str(metric.get("metric_name", "")).startswith("DriftedColumnsCount"):
            count, share = metric["value"]["count"], metric["value"]["share"]
    html = snapshot.get_html_str(as_iframe=False)
    return html, json.dumps(document, indent=1), int(count or 0), float(share or 0.0), len(current)


def run(args: argparse.Namespace) -> DriftSummary:
    if args.evidently_sample < 100:
        raise DriftInputError("--evidently-sample must be at least 100")
    try:
        bundle = load_bundle(args.bundle)
    except BundleError as exc:
        raise DriftInputError(f"--bundle: {exc}") from None
    model = args.model or bundle.manifest.model_name
    end = args.end or datetime.now(UTC)
    start = end - args.window
    log.info(
        "reading predictions of %s from %s, %s to %s",
        model,
        args.log,
        start.isoformat(),
        end.isoformat(),
    )
    window = read_window(args.log, model, bundle.schema, start, end, bundle.version)
    for part in window.skipped:
        log.warning("skipped %s: %s", part.name, part.reason)
    frame = window.frame
    base: dict[str, Any] = {
        "model": model,
        "bundle_version": bundle.version,
        "window_start": start,
        "window_end": end,
        "created_at": datetime.now(UTC),
        "rows": len(frame),
        "files_read": window.files_read,
        "skipped_files": window.skipped,
        "other_version_rows": window.other_version_rows,
    }
    store = open_store(args.log)
    prefix = plog.report_prefix(model, end)
    if frame.empty:
        summary = DriftSummary(
            **base,
            score_psi=None,
            score_status="no-data",
            message="no predictions logged in the window; no drift verdict"
            + (
                f" ({window.other_version_rows} rows of other versions left out)"
                if window.other_version_rows
                else ""
            ),
        )
    else:
        columns = {
            f.name: frame[plog.input_column(f.name)].dropna().to_numpy()
            for f in bundle.schema.features
            if plog.input_column(f.name) in frame
        }
        features = feature_drift(bundle.schema, bundle.reference, columns)
        score_psi = bins_psi(bundle.reference.score, frame[plog.SCORE].to_numpy())
        logged = [f for f in bundle.schema.features if plog.input_column(f.name) in frame]
        current = frame[[plog.input_column(f.name) for f in logged]].dropna()
        current.columns = [f.name for f in logged]
        html, report_json, drifted, share, used = evidently_report(
            bundle.schema.model_copy(update={"features": logged}),
            bundle.reference,
            current,
            args.evidently_sample,
            args.seed,
        )
        store.write_bytes(f"{prefix}/drift.html", html.encode())
        store.write_bytes(f"{prefix}/evidently.json", report_json.encode())
        summary = DriftSummary(
            **base,
            score_psi=round(score_psi, 6),
            score_status=drift.status(score_psi),
            features=features,
            top_drifting_features=top_drifting(features),
            evidently_drifted_columns=drifted,
            evidently_drift_share=share,
            evidently_sample_rows=used,
            report_uri=f"{args.log.rstrip('/')}/{prefix}/drift.html",
            json_uri=f"{args.log.rstrip('/')}/{prefix}/evidently.json",
            message=f"score PSI {score_psi:.3f} ({drift.status(score_psi)})",
        )
    encoded = (summary.model_dump_json(indent=2) + "\n").encode()
    store.write_bytes(f"{prefix}/summary.json", encoded)
    store.write_bytes(plog.latest_report_name(model), encoded)
    return summary


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format='{"level":"%(levelname)s","logger":"%(name)s","message":"%(message)s"}',
    )
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except DriftInputError as exc:
        print(f"creditmodel-drift: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StorageError as exc:
        print(f"creditmodel-drift: storage error: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    print(summary.model_dump_json())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
