"""Prediction log contract: how the predictor writes scored rows and the drift job reads them.

Rows land as Parquet files under `<log-uri>/<model>/date=YYYY-MM-DD/hour=HH/<part>.parquet`
(UTC), so a time window is a set of hour prefixes and old partitions can expire by prefix. Each
row carries the metadata columns below plus one `input.<feature>` column per schema feature.
Fields listed as personal data are dropped or replaced by a salted SHA-256 before writing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Literal

TIMESTAMP = "timestamp"
REQUEST_ID = "request_id"
MODEL = "model"
VERSION = "version"
VARIANT = "variant"
PROBABILITY = "probability"
SCORE = "score"
METADATA_COLUMNS = (TIMESTAMP, REQUEST_ID, MODEL, VERSION, VARIANT, PROBABILITY, SCORE)
INPUT_PREFIX = "input."
REPORTS = "reports"
LATEST_REPORT = "latest.json"

PersonalDataAction = Literal["drop", "hash"]


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


def pseudonymise(value: object, salt: str) -> str:
    """Stable salted SHA-256 of a value: joins on the same person still work, the value does not
    leave the pod."""
    return hashlib.sha256(f"{salt}\x00{value}".encode()).hexdigest()
