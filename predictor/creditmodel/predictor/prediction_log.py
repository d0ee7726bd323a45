"""Prediction log: sampled scored rows, batched in the background into Parquet parts on S3.

A request only appends to a bounded in-memory queue (O(1), no I/O); a writer thread turns batches
into Parquet and uploads them. When the store is slow or down, the queue fills and new rows are
dropped and counted rather than buffered without limit or allowed to slow scoring. Personal data
columns are dropped or pseudonymised before anything leaves the process. The layout and columns
are the contract in `creditmodel.core.prediction_log`, which the drift job reads.
"""

from __future__ import annotations

import atexit
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditmodel.core import metrics as names
from creditmodel.core import prediction_log as plog
from creditmodel.core.commands import PREDICTION_LOG_ENV_PREFIX
from creditmodel.core.schema import Schema
from creditmodel.core.storage import S3Store, StorageError, Store, open_store

log = logging.getLogger("creditmodel.predictor.prediction_log")

ROWS_WRITTEN = Counter(
    names.LOG_WRITTEN_ROWS, "Scored rows written to the prediction log", [names.MODEL]
)
ROWS_DROPPED = Counter(
    names.LOG_DROPPED_ROWS,
    "Scored rows dropped because the prediction-log queue was full",
    [names.MODEL],
)
WRITE_ERRORS = Counter(
    names.LOG_WRITE_ERRORS,
    "Prediction-log parts that failed to upload (their rows are lost)",
    [names.MODEL],
)


class PredictionLogSettings(BaseSettings):
    """`CREDITMODEL_PREDICTION_LOG_*` environment variables; logging is off without a URI."""

    model_config = SettingsConfigDict(env_prefix=PREDICTION_LOG_ENV_PREFIX)

    uri: str | None = None
    sample_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    max_rows_per_file: Annotated[int, Field(ge=1)] = 50_000
    flush_interval_seconds: Annotated[float, Field(gt=0)] = 60.0
    queue_rows: Annotated[int, Field(ge=1)] = 200_000
    queue_bytes: Annotated[int, Field(ge=1 << 20)] = 256 << 20
    """The queue's memory bound, estimated (`_footprint`): a queued single-row request holds about
    8.5 KB, so 200,000 of them would need 1.7 GB, more than a predictor's usual limit."""
    drop_fields: list[str] = []
    hash_fields: list[str] = []
    hash_salt: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _salted_if_hashing(self) -> PredictionLogSettings:
        if self.hash_fields and not self.hash_salt.get_secret_value():
            raise ValueError(
                "hash_fields needs hash_salt: unsalted hashes of small domains are reversible"
            )
        overlap = set(self.drop_fields) & set(self.hash_fields)
        if overlap:
            raise ValueError(f"fields both dropped and hashed: {sorted(overlap)}")
        return self


@dataclass(frozen=True)
class _Batch:
    at: datetime
    request_id: str
    version: str
    variant: str
    bundle_digest: str | None
    points_scaling: str | None
    columns: dict[str, npt.NDArray[Any]]
    rows: int
    footprint: int
    """Its estimated memory in bytes (`_footprint`)."""


class PredictionLogger:
    """Background Parquet writer for one model; `offer()` is what the request path calls."""

    def __init__(
        self,
        settings: PredictionLogSettings,
        schema: Schema,
        model: str,
        store: Store | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        seed: int | None = None,
    ) -> None:
        if settings.uri is None:
            raise ValueError("prediction log URI is not set")
        unknown = (set(settings.drop_fields) | set(settings.hash_fields)) - {
            f.name for f in schema.features
        }
        if unknown:
            raise ValueError(f"personal-data fields not in the schema: {sorted(unknown)}")
        self.settings = settings
        self.schema = schema
        self.model = model
        self.store = store or open_store(settings.uri)
        self._clock = clock
        self._rng = np.random.default_rng(seed)
        # Single-row requests dominate; drawing one number from `random` is ~50x cheaper than numpy.
        self._draw = random.Random(seed).random  # noqa: S311 - sampling, not secrecy
        _warm_up_arrow()
        if isinstance(self.store, S3Store):
            # boto3 builds a client in ~0.3 s of CPU (service model, endpoint rules): at startup,
            # not in the writer thread's first flush, where it would hold the GIL under load.
            _ = self.store.client
        self._queue: deque[_Batch] = deque()
        self._queued_rows = 0
        self._queued_bytes = 0
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        # A graceful shutdown (SIGTERM from the kubelet) writes what is queued instead of losing it.
        atexit.register(self.close, 10.0)

    # --- request path ------------------------------------------------------------------------------
    def offer(
        self,
        *,
        request_id: str,
        version: str,
        variant: str,
        inputs: Mapping[str, npt.ArrayLike],
        probability: npt.NDArray[Any],
        score: npt.NDArray[Any],
        reason_codes: npt.NDArray[Any] | None = None,
        bundle_digest: str | None = None,
        points_scaling: str | None = None,
    ) -> None:
        """Queue the sampled rows of one scored batch; never blocks, never raises on overflow.
        `reason_codes` is the [N, 4] `reason_codes` output as returned (None when the request did
        not ask for it); `bundle_digest` is `plog.bundle_digest()` of the bundle that answered;
        `points_scaling` the JSON of the scaling the scores were computed with."""
        rate = self.settings.sample_rate
        n = len(probability)
        if n == 0 or rate == 0.0:
            return
        keep = None
        if rate < 1.0:
            if n == 1:
                if self._draw() >= rate:
                    return
            else:
                keep = self._rng.random(n) < rate
                if not keep.any():
                    return
        probabilities = np.asarray(probability)
        columns = {
            plog.PROBABILITY: probabilities.reshape(n),
            plog.SCORE: np.asarray(score).reshape(n),
        }
        if reason_codes is not None:
            reasons = np.asarray(reason_codes).reshape(n, plog.REASON_CODES_PER_ROW)
            for slot, name in enumerate(plog.REASON_CODE_COLUMNS):
                columns[name] = reasons[:, slot]
        for name, values in inputs.items():
            columns[plog.input_column(name)] = np.asarray(values).reshape(n)
        if keep is not None:
            columns = {name: values[keep] for name, values in columns.items()}
        rows = int(columns[plog.PROBABILITY].shape[0])
        batch = _Batch(
            self._clock(),
            request_id,
            version,
            variant,
            bundle_digest,
            points_scaling,
            columns,
            rows,
            _footprint(columns),
        )
        settings = self.settings
        with self._lock:
            if (
                self._queued_rows + rows > settings.queue_rows
                or self._queued_bytes + batch.footprint > settings.queue_bytes
            ):
                ROWS_DROPPED.labels(self.model).inc(rows)
                return
            self._queue.append(batch)
            self._queued_rows += rows
            self._queued_bytes += batch.footprint
            # a part is due; so it is when half the memory bound is queued, or single rows
            # would fill it and be dropped before max_rows_per_file or the interval comes
            if (
                self._queued_rows >= settings.max_rows_per_file
                or self._queued_bytes >= settings.queue_bytes // 2
            ):
                self._lock.notify()

    # --- writer thread -----------------------------------------------------------------------------
    def _take(self, wait: bool) -> list[_Batch]:
        with self._lock:
            due = (
                self._queued_rows >= self.settings.max_rows_per_file
                or self._queued_bytes >= self.settings.queue_bytes // 2
            )
            if wait and not self._closed and not due:
                self._lock.wait(self.settings.flush_interval_seconds)
            taken: list[_Batch] = []
            rows = 0
            while self._queue and rows < self.settings.max_rows_per_file:
                batch = self._queue.popleft()
                taken.append(batch)
                rows += batch.rows
                self._queued_bytes -= batch.footprint
            self._queued_rows -= rows
            return taken

    def _run(self) -> None:
        while True:
            batches = self._take(wait=True)
            if batches:
                self._write(batches)
            with self._lock:
                if self._closed and not self._queue:
                    return

    def _write(self, batches: list[_Batch]) -> None:
        rows = sum(b.rows for b in batches)
        try:
            data = encode_parquet(batches_to_columns(batches, self.model), self.settings)
            self.store.write_bytes(
                plog.part_name(self.model, batches[0].at, uuid.uuid4().hex[:12]), data
            )
        except StorageError as exc:
            WRITE_ERRORS.labels(self.model).inc()
            log.warning("prediction log upload failed, %d rows lost: %s", rows, exc)
            return
        ROWS_WRITTEN.labels(self.model).inc(rows)

    def flush(self, timeout: float = 30.0) -> None:
        """Write everything queued so far (used at shutdown and by tests)."""
        deadline = time.monotonic() + timeout
        while True:
            batches = self._take(wait=False)
            if not batches:
                return
            self._write(batches)
            if time.monotonic() > deadline:
                return

    def close(self, timeout: float = 30.0) -> None:
        atexit.unregister(self.close)
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout)
        self.flush(timeout)


_ARRAY_OVERHEAD = 300  # a numpy array object (a view), its dict slot, the base it keeps alive
_BATCH_OVERHEAD = 600  # the _Batch, its column dict and strings


def _footprint(columns: Mapping[str, npt.NDArray[Any]]) -> int:
    """Estimated bytes a queued batch holds: its arrays' data (pointers for text, whose strings
    the batch shares with the schema and reason tables) and their objects: 8.9 KB for a queued
    single-row request of the reference bundle (27 columns), whose resident memory grew by
    8.5 KB a request queued (20,000 of them, in process)."""
    data = sum(values.nbytes for values in columns.values())
    return data + _ARRAY_OVERHEAD * len(columns) + _BATCH_OVERHEAD


_NULLABLE_TEXT = frozenset((plog.BUNDLE_DIGEST, plog.POINTS_SCALING, *plog.REASON_CODE_COLUMNS))


def _warm_up_arrow() -> None:
    """Import pyarrow's lazy parts now: the last flush can run during interpreter shutdown, when
    pyarrow's first-use import of its pandas shim would fail and lose the queued rows."""
    import pyarrow as pa
    import pyarrow.parquet

    pa.array(np.zeros(1))


def batches_to_columns(batches: list[_Batch], model: str) -> dict[str, npt.NDArray[Any]]:
    """Concatenate queued batches into log columns, repeating per-request metadata per row. A
    column a batch lacks (reason codes a request did not ask for) is null in its rows."""
    total = sum(b.rows for b in batches)
    columns: dict[str, npt.NDArray[Any]] = {
        plog.LOG_FORMAT: np.full(total, plog.FORMAT_VERSION, dtype=np.int16),
        plog.TIMESTAMP: np.concatenate(
            [np.full(b.rows, np.datetime64(b.at.replace(tzinfo=None), "us")) for b in batches]
        ),
        plog.REQUEST_ID: np.concatenate(
            [np.full(b.rows, b.request_id, dtype=object) for b in batches]
        ),
        plog.MODEL: np.full(total, model, dtype=object),
        plog.VERSION: np.concatenate([np.full(b.rows, b.version, dtype=object) for b in batches]),
        plog.VARIANT: np.concatenate([np.full(b.rows, b.variant, dtype=object) for b in batches]),
        plog.BUNDLE_DIGEST: np.concatenate(
            [np.full(b.rows, b.bundle_digest, dtype=object) for b in batches]
        ),
        plog.POINTS_SCALING: np.concatenate(
            [np.full(b.rows, b.points_scaling, dtype=object) for b in batches]
        ),
    }
    # Every format-2 part has the reason-code columns, so parts share one schema.
    names = dict.fromkeys([*plog.REASON_CODE_COLUMNS, *(n for b in batches for n in b.columns)])
    for name in names:
        columns[name] = np.concatenate(
            [
                b.columns[name] if name in b.columns else np.full(b.rows, None, dtype=object)
                for b in batches
            ]
        )
    return columns


def encode_parquet(columns: dict[str, npt.NDArray[Any]], settings: PredictionLogSettings) -> bytes:
    """Apply the personal-data policy, then encode one Parquet part (zstd)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    salt = settings.hash_salt.get_secret_value()
    arrays: dict[str, Any] = {}
    for name, values in columns.items():
        feature = (
            name.removeprefix(plog.INPUT_PREFIX) if name.startswith(plog.INPUT_PREFIX) else None
        )
        if feature in settings.drop_fields:
            continue
        column = values
        if feature in settings.hash_fields:
            column = np.array([plog.pseudonymise(v, salt) for v in values], dtype=object)
        if name in _NULLABLE_TEXT:
            arrays[name] = pa.array(column, type=pa.string())  # None -> null
            continue
        if column.dtype.kind in "OSU":
            column = column.astype(str)
        arrays[name] = pa.array(column)
    table = pa.table(arrays)
    table = table.cast(
        table.schema.set(
            table.schema.get_field_index(plog.TIMESTAMP),
            pa.field(plog.TIMESTAMP, pa.timestamp("us", tz="UTC")),
        )
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
