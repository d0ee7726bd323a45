"""Prediction log contract: how the predictor writes scored rows and the drift job reads them.

Rows land as Parquet files under `<log-uri>/<model>/date=YYYY-MM-DD/hour=HH/<part>.parquet`
(UTC), so a time window is a set of hour prefixes and old partitions can expire by prefix. Each
row carries the metadata columns below plus one `input.<feature>` column per schema feature.
Fields listed as personal data are dropped or replaced by a salted SHA-256 before writing.

Format versions (the `log_format` column; a part without it is format 1):
1. timestamp, request_id, model, version, variant, probability, score, `input.<feature>`.
2. adds the decision record, so the adverse-action reasons given to an applicant can be
   reproduced: `log_format`, `bundle_digest` (`bundle_digest()` of the bundle that answered) and
   `reason_code_1` .. `reason_code_4` (the response's `reason_codes` row as returned, strongest
   first, "" for an empty slot; null when the request did not ask for reason codes) and
   `points_scaling` (JSON: `base_score`, `base_odds`, `points_to_double_odds` the predictor
   scored with, which its flags may set apart from the bundle's own).
Changes are additive: readers take a missing column as "not recorded" and ignore columns they
do not know. `variant` is the served variant (`int8` or `fp32`); only served rows are logged, a
shadow challenger's scores are not.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

TIMESTAMP = "timestamp"
REQUEST_ID = "request_id"
MODEL = "model"
VERSION = "version"
VARIANT = "variant"
PROBABILITY = "probability"
SCORE = "score"
METADATA_COLUMNS = (TIMESTAMP, REQUEST_ID, MODEL, VERSION, VARIANT, PROBABILITY, SCORE)
FORMAT_VERSION = 2
LOG_FORMAT = "log_format"
BUNDLE_DIGEST = "bundle_digest"
REASON_CODES_PER_ROW = 4
REASON_CODE_COLUMNS = tuple(f"reason_code_{i}" for i in range(1, REASON_CODES_PER_ROW + 1))
POINTS_SCALING = "points_scaling"
DECISION_COLUMNS = (LOG_FORMAT, BUNDLE_DIGEST, POINTS_SCALING, *REASON_CODE_COLUMNS)  # format 2
INPUT_PREFIX = "input."
REPORTS = "reports"
LATEST_REPORT = "latest.json"


def input_column(feature: str) -> str:
    return f"{INPUT_PREFIX}{feature}"


def hour_prefix(model: str, at: datetime) -> str:
    at = at.astimezone(UTC)
    return f"{model}/date={at:%Y-%m-%d}/hour={at:%H}"


def part_name(model: str, at: datetime, unique: str) -> str:
    """Object name of one Parquet part; `unique` keeps concurrent writers apart."""
    return f"{hour_prefix(model, at)}/part-{at.astimezone(UTC):%Y%m%dT%H%M%S}-{unique}.parquet"


def hours_in_window(model: str, start: datetime, end: datetime) -> Iterator[str]:
    """Hour prefixes overlapping [start, end)."""
    if end <= start:
        return
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield hour_prefix(model, hour)
        hour += timedelta(hours=1)


def report_prefix(model: str, end: datetime) -> str:
    return f"{model}/{REPORTS}/{end.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def latest_report_name(model: str) -> str:
    """Where the drift job leaves its newest summary for the operator to read."""
    return f"{model}/{REPORTS}/{LATEST_REPORT}"


PSEUDONYM_PATTERN = r"[0-9a-f]{64}"
"""What `pseudonymise` writes (a SHA-256 in hex): how a reader tells a hashed column."""


def pseudonymise(value: object, salt: str) -> str:
    """Stable salted SHA-256 of a value: joins on the same person still work, the value does not
    leave the pod."""
    return hashlib.sha256(f"{salt}\x00{value}".encode()).hexdigest()


class FileHash(Protocol):
    """What `bundle_digest` needs of a manifest file entry (`creditmodel.core.bundle.FileEntry`)."""

    @property
    def sha256(self) -> str: ...


def bundle_digest(files: Mapping[str, FileHash]) -> str:
    """Stable identifier of the exact bundle: `sha256:` + the SHA-256 of its manifest's file
    listing in `sha256sum` format (`<sha256>  <name>\\n` per file, sorted by name). It changes
    when any byte of any model, schema, reference or card file changes, and does not depend on how
    manifest.json happens to be formatted. By hand, in a bundle directory:
    `sha256sum model.int8.onnx model.onnx model_card.md reference.json schema.json | sha256sum`."""
    if not files:
        raise ValueError("a bundle digest needs the manifest's files")
    if any("\n" in name for name in files):
        raise ValueError("bundle file names cannot contain a newline")
    listing = "".join(f"{files[name].sha256}  {name}\n" for name in sorted(files))
    return "sha256:" + hashlib.sha256(listing.encode()).hexdigest()


@dataclass(frozen=True)
class DecisionRecord:
    """One logged row read back, whatever format wrote it; None = not recorded in that row."""

    log_format: int
    request_id: str
    model: str
    version: str
    variant: str
    probability: float
    score: int
    bundle_digest: str | None
    points_scaling: dict[str, float] | None
    reason_codes: tuple[str, ...] | None
    inputs: dict[str, Any]


def _given(value: Any) -> bool:
    """False for a missing cell: None (Arrow null) or NaN (pandas fills absent columns so)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def decision_record(row: Mapping[str, Any]) -> DecisionRecord:
    """Read one log row (a column -> value mapping, e.g. from `pyarrow.Table.to_pylist()`).
    Rows older than format 2 have no digest and no reason codes; unknown columns are ignored."""
    fmt: Any = row.get(LOG_FORMAT)
    reasons = [row.get(column) for column in REASON_CODE_COLUMNS]
    return DecisionRecord(
        log_format=int(fmt) if _given(fmt) else 1,
        request_id=str(row[REQUEST_ID]),
        model=str(row[MODEL]),
        version=str(row[VERSION]),
        variant=str(row[VARIANT]),
        probability=float(row[PROBABILITY]),
        score=int(row[SCORE]),
        bundle_digest=str(row[BUNDLE_DIGEST]) if _given(row.get(BUNDLE_DIGEST)) else None,
        points_scaling=(
            {k: float(v) for k, v in json.loads(str(row[POINTS_SCALING])).items()}
            if _given(row.get(POINTS_SCALING))
            else None
        ),
        reason_codes=(
            tuple(str(r) if _given(r) else "" for r in reasons)
            if any(_given(r) for r in reasons)
            else None
        ),
        inputs={
            name.removeprefix(INPUT_PREFIX): value
            for name, value in row.items()
            if name.startswith(INPUT_PREFIX)
        },
    )
