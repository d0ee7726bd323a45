"""Reading a window of the prediction log for the drift job: which parts to read, which of their
columns, and which rows count. Any predictor pod can write a part, so a part the job cannot use
is skipped and named (a bounded list), never a crash."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from creditmodel.core import prediction_log as plog
from creditmodel.core.drift import SKIPPED_REASON_MAX, SKIPPED_SHOWN_MAX, SkippedFile
from creditmodel.core.schema import Schema
from creditmodel.core.storage import open_store

METADATA_KINDS = {plog.TIMESTAMP: "time", plog.SCORE: "number", plog.PROBABILITY: "number"}
# A part is named after the first batch it holds; its later batches may lie up to one flush
# interval (and a backed-up queue) past the next hour, so the hour before the window is read too.
LOOKBACK = timedelta(hours=1)


@dataclass
class LogWindow:
    frame: pd.DataFrame
    files_read: int
    skipped: list[SkippedFile] = field(default_factory=list)
    skipped_total: int = 0
    other_version_rows: int = 0

    def skip(self, name: str, reason: str) -> None:
        """Keep the first few, with reasons cut short (Arrow's can dump a whole schema)."""
        self.skipped_total += 1
        if len(self.skipped) < SKIPPED_SHOWN_MAX:
            cut = reason if len(reason) <= SKIPPED_REASON_MAX else reason[: SKIPPED_REASON_MAX - 3]
            self.skipped.append(SkippedFile(name=name[:SKIPPED_REASON_MAX], reason=cut))


def _kind_ok(dtype: Any, kind: str) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(dtype):  # a writer may dictionary-encode repeated strings
        dtype = dtype.value_type
    if kind == "time":
        return bool(pa.types.is_timestamp(dtype))
    if kind == "number":
        return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype))
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype))


def usable_columns(arrow_schema: Any, schema: Schema) -> tuple[list[str], str | None]:
    """(columns to read, reason to skip the part). Metadata columns are required; a feature column
    may be absent or of another type (dropped or pseudonymised as personal data) and is then left out."""
    names = arrow_schema.names
    for column, kind in METADATA_KINDS.items():
        if column not in names:
            return [], f"missing column {column!r}"
        if not _kind_ok(arrow_schema.field(column).type, kind):
            return (
                [],
                f"column {column!r} has type {arrow_schema.field(column).type}, expected {kind}",
            )
    columns = list(METADATA_KINDS)
    for feature in schema.features:
        column = plog.input_column(feature.name)
        kind = "text" if feature.kind == "categorical" else "number"
        if column in names and _kind_ok(arrow_schema.field(column).type, kind):
            columns.append(column)
    if plog.POINTS_SCALING in names and _kind_ok(
        arrow_schema.field(plog.POINTS_SCALING).type, "text"
    ):
        columns.append(plog.POINTS_SCALING)  # what the scores were computed with (format 2)
    return columns, None


def _rows(
    data: bytes, schema: Schema, model: str, version: str | None, start: datetime, end: datetime
) -> tuple[pd.DataFrame, int]:
    """The part's rows in [start, end) of `version` (and how many of other versions), reading
    only the columns the job uses. Raises on anything a hostile or corrupt part holds, and on a
    part that cannot be attributed: one without the version column (a canary's rows would count
    as the stable's) or one holding another model's rows."""
    import pyarrow.parquet as pq

    arrow_schema = pq.read_schema(io.BytesIO(data))
    columns, problem = usable_columns(arrow_schema, schema)
    if not problem and version is not None and plog.VERSION not in arrow_schema.names:
        problem = f"missing column {plog.VERSION!r} (a report judges one version)"
    if problem:
        raise ValueError(f"schema mismatch: {problem}")
    extra = [c for c in (plog.VERSION, plog.MODEL) if c in arrow_schema.names]
    frame = pq.read_table(io.BytesIO(data), columns=[*columns, *extra]).to_pandas()
    if plog.MODEL in frame and (frame[plog.MODEL].astype(str) != model).any():
        raise ValueError(f"schema mismatch: rows of a model other than {model!r}")
    stamps = pd.to_datetime(frame[plog.TIMESTAMP], utc=True)
    frame = frame[(stamps >= start) & (stamps < end)]
    other = 0
    if version is not None:
        same = frame[plog.VERSION].astype(str) == version
        other = int((~same).sum())
        frame = frame[same]
    return frame.drop(columns=extra), other


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
    window = LogWindow(pd.DataFrame(columns=list(METADATA_KINDS)), 0)
    frames = []
    for prefix in plog.hours_in_window(model, start - LOOKBACK, end):
        store = open_store(f"{log_uri.rstrip('/')}/{prefix}")
        for name in store.list_names():
            if not name.endswith(".parquet"):
                continue
            full = f"{prefix}/{name}"
            data = store.read_bytes(name)  # a storage failure is the job's, not the part's
            try:
                frame, other = _rows(data, schema, model, version, start, end)
            except Exception as exc:
                reason = (
                    str(exc)
                    if str(exc).startswith("schema mismatch")
                    else f"unreadable Parquet: {exc}"
                )
                window.skip(full, reason)
                continue
            window.other_version_rows += other
            frames.append(frame)
            window.files_read += 1
    if frames:
        window.frame = pd.concat(frames, ignore_index=True)
    return window
