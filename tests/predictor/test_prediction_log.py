from __future__ import annotations

import io
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from creditmodel.core import prediction_log as plog
from creditmodel.core.storage import StorageError, open_store
from creditmodel.predictor.prediction_log import (
    ROWS_DROPPED,
    PredictionLogger,
    PredictionLogSettings,
)
from creditmodel.predictor.scoring import REASONS_PER_ROW
from tests.core.bundles import SCHEMA

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
DIGEST = "sha256:" + "0f" * 32


def reasons(rows: int) -> np.ndarray:
    """[rows, 4] reason codes as the predictor returns them; row i names age i."""
    codes = np.full((rows, 4), "", dtype=object)
    codes[:, 0] = [f"R01: Age {20 + i}" for i in range(rows)]
    codes[:, 1] = "R02: Housing"
    return codes


SCALING = '{"base_odds": 50.0, "base_score": 600.0, "points_to_double_odds": 20.0}'


def offer(
    logger: PredictionLogger, rows: int, request_id: str = "req-1", with_reasons: bool = True
) -> None:
    logger.offer(
        request_id=request_id,
        version="v1",
        variant="int8",
        inputs={"age": np.arange(rows) + 20, "housing": np.array(["own", "rent"] * (rows // 2))},
        probability=np.linspace(0, 1, rows, dtype=np.float32),
        score=np.arange(rows) + 500,
        reason_codes=reasons(rows) if with_reasons else None,
        bundle_digest=DIGEST,
        points_scaling=SCALING,
    )


def read_parts(root: Path) -> list[dict[str, list[object]]]:
    store = open_store(str(root))
    return [
        pq.read_table(io.BytesIO(store.read_bytes(name))).to_pydict() for name in store.list_names()
    ]


def test_rows_land_in_hourly_parquet_parts_with_metadata(tmp_path: Path) -> None:
    logger = PredictionLogger(
        PredictionLogSettings(uri=str(tmp_path)), SCHEMA, "german-credit", clock=lambda: AT
    )
    offer(logger, 4)
    logger.close()
    names = open_store(str(tmp_path)).list_names()
    assert len(names) == 1
    assert names[0].startswith("german-credit/date=2026-11-20/hour=09/part-")
    (part,) = read_parts(tmp_path)
    assert part[plog.REQUEST_ID] == ["req-1"] * 4
    assert part[plog.VARIANT] == ["int8"] * 4
    assert part[plog.SCORE] == [500, 501, 502, 503]
    assert part[plog.input_column("housing")] == ["own", "rent", "own", "rent"]
    assert part[plog.TIMESTAMP][0] == AT


def test_rows_carry_the_decision_record(tmp_path: Path) -> None:
    """Format 2: the reason codes as returned, the bundle digest and the format version."""
    logger = PredictionLogger(
        PredictionLogSettings(uri=str(tmp_path)), SCHEMA, "m", clock=lambda: AT
    )
    offer(logger, 2, request_id="asked")
    offer(logger, 2, request_id="not-asked", with_reasons=False)
    logger.close()
    (part,) = read_parts(tmp_path)
    assert part[plog.LOG_FORMAT] == [plog.FORMAT_VERSION] * 4
    assert part[plog.BUNDLE_DIGEST] == [DIGEST] * 4
    assert part[plog.POINTS_SCALING] == [SCALING] * 4
    records = [
        plog.decision_record(dict(zip(part, values, strict=True)))
        for values in zip(*part.values(), strict=True)
    ]
    assert [r.reason_codes for r in records] == [
        ("R01: Age 20", "R02: Housing", "", ""),
        ("R01: Age 21", "R02: Housing", "", ""),
        None,  # the response carried no reason codes: null, not four empty slots
        None,
    ]
    assert plog.REASON_CODES_PER_ROW == REASONS_PER_ROW


def test_a_part_without_any_reason_codes_still_has_their_columns(tmp_path: Path) -> None:
    logger = PredictionLogger(
        PredictionLogSettings(uri=str(tmp_path)), SCHEMA, "m", clock=lambda: AT
    )
    offer(logger, 2, with_reasons=False)
    logger.close()
    (part,) = read_parts(tmp_path)
    for column in plog.REASON_CODE_COLUMNS:
        assert part[column] == [None, None]


def test_sampled_rows_keep_their_own_reason_codes(tmp_path: Path) -> None:
    settings = PredictionLogSettings(uri=str(tmp_path), sample_rate=0.3)
    logger = PredictionLogger(settings, SCHEMA, "m", clock=lambda: AT, seed=5)
    offer(logger, 200)
    logger.close()
    (part,) = read_parts(tmp_path)
    assert 20 <= len(part[plog.SCORE]) <= 100
    for age, score, first in zip(
        part[plog.input_column("age")],
        part[plog.SCORE],
        part[plog.REASON_CODE_COLUMNS[0]],
        strict=True,
    ):
        assert (score, first) == (int(str(age)) + 480, f"R01: Age {age}")


def test_sampling_keeps_about_the_configured_share(tmp_path: Path) -> None:
    settings = PredictionLogSettings(uri=str(tmp_path), sample_rate=0.1)
    logger = PredictionLogger(settings, SCHEMA, "m", clock=lambda: AT, seed=3)
    for _ in range(100):
        offer(logger, 100)
    logger.close()
    kept = sum(len(part[plog.SCORE]) for part in read_parts(tmp_path))
    assert 850 <= kept <= 1150


def test_parts_respect_the_row_limit(tmp_path: Path) -> None:
    settings = PredictionLogSettings(uri=str(tmp_path), max_rows_per_file=100)
    logger = PredictionLogger(settings, SCHEMA, "m", clock=lambda: AT)
    for _ in range(5):
        offer(logger, 50)
    logger.close()
    sizes = sorted(len(part[plog.SCORE]) for part in read_parts(tmp_path))
    assert sum(sizes) == 250
    assert max(sizes) <= 100


def test_personal_data_is_dropped_or_hashed(tmp_path: Path) -> None:
    settings = PredictionLogSettings(
        uri=str(tmp_path), drop_fields=["age"], hash_fields=["housing"], hash_salt="pepper"
    )
    logger = PredictionLogger(settings, SCHEMA, "m", clock=lambda: AT)
    offer(logger, 2)
    logger.close()
    (part,) = read_parts(tmp_path)
    assert plog.input_column("age") not in part
    assert part[plog.input_column("housing")] == [
        plog.pseudonymise("own", "pepper"),
        plog.pseudonymise("rent", "pepper"),
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hash_fields": ["housing"]}, "hash_fields needs hash_salt"),
        (
            {"drop_fields": ["age"], "hash_fields": ["age"], "hash_salt": "s"},
            "both dropped and hashed",
        ),
        ({"sample_rate": 1.5}, "less than or equal to 1"),
    ],
)
def test_bad_settings_are_explained(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PredictionLogSettings.model_validate({"uri": "/tmp/x", **fields})


def test_personal_data_fields_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"not in the schema: \['ssn'\]"):
        PredictionLogger(PredictionLogSettings(uri=str(tmp_path), drop_fields=["ssn"]), SCHEMA, "m")


class StuckStore:
    """A store whose uploads hang until released, then fail: the worst case for a request path."""

    uri = "stuck://"

    def __init__(self) -> None:
        self.release = threading.Event()

    def write_bytes(self, name: str, data: bytes) -> None:
        self.release.wait(10)
        raise StorageError("endpoint down")

    def read_bytes(self, name: str) -> bytes:
        raise StorageError("endpoint down")

    def exists(self, name: str) -> bool:
        return False

    def list_names(self) -> list[str]:
        return []

    def delete(self, name: str) -> None:
        return None


def test_a_stuck_store_never_blocks_requests_and_overflow_is_counted() -> None:
    store = StuckStore()
    settings = PredictionLogSettings(
        uri="stuck://", queue_rows=100, max_rows_per_file=10, flush_interval_seconds=0.01
    )
    logger = PredictionLogger(settings, SCHEMA, "overflow-test", store=store, clock=lambda: AT)
    dropped_before = ROWS_DROPPED.labels("overflow-test")._value.get()
    for i in range(100):  # 1,000 rows into a 100-row queue behind a stuck writer
        offer(logger, 10, request_id=f"r{i}")
    dropped = ROWS_DROPPED.labels("overflow-test")._value.get() - dropped_before
    assert (
        800 <= dropped <= 900
    )  # queue (100) plus what the writer had already taken (<= 10 per part)
    store.release.set()
    logger.close(timeout=10)


def test_the_queue_is_bounded_in_memory_as_well_as_in_rows() -> None:
    """Single-row requests hold several KB each while queued: with the row bound alone, the
    default 200,000 rows behind a stuck store was about 1.7 GB of a predictor whose limit is
    1 GiB. The estimated bytes are bounded too; what does not fit is dropped and counted."""
    store = StuckStore()
    settings = PredictionLogSettings(
        uri="stuck://", queue_bytes=1 << 20, max_rows_per_file=1_000_000,
        flush_interval_seconds=3600,
    )  # fmt: skip
    logger = PredictionLogger(settings, SCHEMA, "bytes-test", store=store, clock=lambda: AT)
    dropped_before = ROWS_DROPPED.labels("bytes-test")._value.get()
    for i in range(2_000):  # two rows a request: the test's offer needs an even count
        offer(logger, 2, request_id=f"r{i}")
    dropped = ROWS_DROPPED.labels("bytes-test")._value.get() - dropped_before
    assert dropped > 0
    assert logger._queued_bytes <= settings.queue_bytes
    assert logger._queued_rows + dropped <= 4_000
    store.release.set()
    logger.close(timeout=10)


def test_half_the_memory_bound_queued_writes_a_part_before_the_interval(tmp_path: Path) -> None:
    """Single rows reach the memory bound long before max_rows_per_file: the writer starts a part
    at half of it, instead of waiting out the flush interval while new rows are dropped."""
    settings = PredictionLogSettings(
        uri=str(tmp_path), queue_bytes=1 << 20, max_rows_per_file=1_000_000,
        flush_interval_seconds=3600,
    )  # fmt: skip
    logger = PredictionLogger(settings, SCHEMA, "half-test", clock=lambda: AT)
    dropped_before = ROWS_DROPPED.labels("half-test")._value.get()
    for i in range(250):  # about 3 KB each: past half of the bound, short of all of it
        offer(logger, 2, request_id=f"r{i}")
    deadline = datetime.now(UTC).timestamp() + 10
    while not list(tmp_path.rglob("*.parquet")):
        assert datetime.now(UTC).timestamp() < deadline, "no part within 10 s (interval: 1 h)"
        threading.Event().wait(0.05)
    logger.close(timeout=10)
    assert ROWS_DROPPED.labels("half-test")._value.get() == dropped_before
    assert sum(len(part["request_id"]) for part in read_parts(tmp_path)) == 500
