"""`creditmodel-drift`: the drift report job (a Kubernetes CronJob created by the operator).

Reads a bundle's frozen reference and a time window of the prediction log, computes score and
per-feature PSI on the reference bins, renders an Evidently DataDrift report for the deeper view,
writes both next to the log, and prints the summary as JSON. Exit codes: 0 report written
(whatever the drift), 2 bad input (arguments, bundle), 4 storage unreachable.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from creditmodel.core import drift
from creditmodel.core import prediction_log as plog
from creditmodel.core.bundle import BundleError, bundle_scaling, load_bundle
from creditmodel.core.commands import DRIFT_COMMAND, DRIFT_WINDOW_PATTERN, DriftFlags
from creditmodel.core.drift import MIN_ROWS, DriftSummary
from creditmodel.core.jobs import ExitCode
from creditmodel.core.points import PointsScaling
from creditmodel.core.reference import Reference
from creditmodel.core.storage import StorageError, open_store
from creditmodel.training.drift_analysis import bins_psi, feature_drift, top_drifting
from creditmodel.training.drift_evidently import evidently_report
from creditmodel.training.drift_log import read_window

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
        raise argparse.ArgumentTypeError(f"--end {text[:40]!r}: not an ISO 8601 time") from None
    if not 2000 <= moment.year <= 9000:  # the window's start and the report's path are computed
        raise argparse.ArgumentTypeError(f"--end {text[:40]!r}: not between 2000 and 9000")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _bounded_int(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def _model_name(text: str) -> str:
    """A model name as a path segment of the log: `../x` read and wrote outside the model's."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}", text):
        raise argparse.ArgumentTypeError(
            f"--model {text[:40]!r}: letters, digits, '.', '_' and '-', at most 253"
        )
    return text


def _log_uri(text: str) -> str:
    """A directory or s3://bucket[/prefix]; an empty --log or another scheme is a usage error
    (exit 2), not a path to read from or a storage failure."""
    parsed = urlparse(text)
    if (
        not text.strip()
        or parsed.scheme not in ("", "file", "s3")
        or (parsed.scheme == "s3" and not parsed.netloc)
    ):
        raise argparse.ArgumentTypeError(
            f"--log {text[:80]!r}: a directory or s3://bucket[/prefix]"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=DRIFT_COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument(
        DriftFlags.BUNDLE, required=True, help="bundle URI (directory or s3:// prefix)"
    )
    parser.add_argument(
        DriftFlags.LOG,
        required=True,
        type=_log_uri,
        help="prediction log root URI (directory or s3://)",
    )
    parser.add_argument(
        DriftFlags.MODEL,
        type=_model_name,
        help="model name in the log (default: the bundle's model name)",
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
    parser.add_argument("--seed", type=_bounded_int(0, 2**32 - 1), default=0)
    parser.add_argument(
        "--min-rows",
        type=_bounded_int(1, 2**31 - 1),
        default=MIN_ROWS,
        help=f"rows the window needs for a verdict (default {MIN_ROWS}, the predictor's"
        " drift_min_rows): over ten bins, noise alone gives a PSI of about 9/rows",
    )
    return parser


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
        "skipped_files_total": window.skipped_total,
        "other_version_rows": window.other_version_rows,
    }
    store = open_store(args.log)
    prefix = plog.report_prefix(model, end)
    if len(frame) < args.min_rows:
        others = window.other_version_rows
        message = (
            "no predictions logged in the window; no drift verdict"
            if frame.empty
            else f"{len(frame)} rows in the window, fewer than the {args.min_rows} a verdict needs"
            " (over ten bins, noise alone gives a PSI of about 9/rows); no drift verdict"
        )
        summary = DriftSummary(
            **base,
            score_psi=None,
            score_status="no-data" if frame.empty else "insufficient-data",
            message=message + (f" ({others} rows of other versions left out)" if others else ""),
        )
    else:
        summary = _judged(args, bundle, frame, base, store, prefix)
    encoded = (summary.model_dump_json(indent=2) + "\n").encode()
    store.write_bytes(f"{prefix}/summary.json", encoded)
    if _is_latest(store, plog.latest_report_name(model), end):
        store.write_bytes(plog.latest_report_name(model), encoded)
    return summary


def _judged(
    args: argparse.Namespace,
    bundle: Any,
    frame: pd.DataFrame,
    base: dict[str, Any],
    store: Any,
    prefix: str,
) -> DriftSummary:
    """The verdict on a window with enough rows: score PSI (on the bundle's points scale),
    feature PSI (pseudonymised columns count as not logged), and Evidently's view, which never
    stops the report."""
    schema, reference = bundle.schema, bundle.reference
    columns = {}
    for feature in schema.features:
        column = plog.input_column(feature.name)
        if column not in frame:
            continue
        values = frame[column].dropna().to_numpy()
        if feature.kind == "categorical" and _pseudonymised(values, reference, feature.name):
            continue
        columns[feature.name] = values
    features = feature_drift(schema, reference, columns)
    scores = bundle_scores(frame, bundle_scaling(bundle))
    score_psi = bins_psi(reference.score, scores)
    status = drift.status(score_psi)
    evidently: dict[str, Any] = {}
    note = ""
    logged = [f for f in schema.features if f.name in columns]
    current = frame[[plog.input_column(f.name) for f in logged]]
    current.columns = [f.name for f in logged]
    current = current.dropna(axis="columns", how="all").dropna()
    kept = [f for f in logged if f.name in current.columns]
    try:
        if current.empty or not kept:
            raise ValueError("no complete row of logged features")
        html, report_json, drifted, share, used = evidently_report(
            schema.model_copy(update={"features": kept}), reference, current[[f.name for f in kept]],
            args.evidently_sample, args.seed,
        )  # fmt: skip
    except Exception as exc:
        log.warning("no Evidently report: %s", exc)
        note = f"; no Evidently report ({str(exc)[:200]})"
    else:
        store.write_bytes(f"{prefix}/drift.html", html.encode())
        store.write_bytes(f"{prefix}/evidently.json", report_json.encode())
        evidently = {
            "evidently_drifted_columns": drifted,
            "evidently_drift_share": share,
            "evidently_sample_rows": used,
            "report_uri": f"{args.log.rstrip('/')}/{prefix}/drift.html",
            "json_uri": f"{args.log.rstrip('/')}/{prefix}/evidently.json",
        }
    return DriftSummary(
        **base,
        **evidently,
        score_psi=None if math.isnan(score_psi) else round(score_psi, 6),
        score_status=status,
        features=features,
        top_drifting_features=top_drifting(features),
        message=(
            f"score PSI {score_psi:.3f} ({status}){note}"
            if not math.isnan(score_psi)
            else f"no finite score logged; no drift verdict{note}"
        ),
    )


def _pseudonymised(values: np.ndarray, reference: Reference, name: str) -> bool:
    """A categorical column the predictor hashed (hash_fields): none of its values is a
    category, all are digests. Compared as categories it would read as a huge PSI, `act`."""
    known = reference.features[name]
    categories = getattr(known, "frequencies", {})
    text = pd.Series(values, dtype=object).astype(str)
    return (
        bool(len(text))
        and bool(text.str.fullmatch(plog.PSEUDONYM_PATTERN).all())
        and not text.isin(list(categories)).any()
    )


def bundle_scores(frame: pd.DataFrame, scaling: PointsScaling) -> np.ndarray:
    """The logged scores on the bundle's points scale, which its reference scores were binned
    on: a predictor serving with --base_score 700 logs every score 100 points up, and the same
    applicants read as a PSI of 3 (`act`). Each row's scaling is in its points_scaling column
    (log format 2); non-finite scores are left out."""
    scores = pd.to_numeric(frame[plog.SCORE], errors="coerce").to_numpy(dtype=np.float64)
    if plog.POINTS_SCALING in frame:
        logged = frame[plog.POINTS_SCALING]
        for text in logged.dropna().unique():
            try:
                used = PointsScaling.model_validate_json(str(text))
            except ValueError:
                continue  # not a scaling: the scores are taken as they are
            if used == scaling:
                continue
            rows = (logged == text).to_numpy()
            log_odds = (scores[rows] - used.offset) / used.factor
            scores[rows] = np.rint(scaling.offset + scaling.factor * log_odds)
    finite: np.ndarray = scores[np.isfinite(scores)]
    return finite


def _is_latest(store: Any, name: str, end: datetime) -> bool:
    """Whether a report ending at `end` is the newest: a backfill for an older window must not
    replace latest.json, which the operator reads as the current drift."""
    try:
        if not store.exists(name):
            return True
        current = DriftSummary.model_validate_json(store.read_bytes(name))
    except ValueError:
        return True  # an unreadable latest.json is replaced
    return bool(current.window_end <= end)


class _JsonLines(logging.Formatter):
    """One JSON object per line, the message escaped (a part named with a quote or a newline,
    or Arrow's multi-line errors, broke the line)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
        )


def main(argv: list[str] | None = None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
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
