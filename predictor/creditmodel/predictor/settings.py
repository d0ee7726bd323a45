"""Typed predictor settings. Every field can come from the environment (prefix
`CREDITMODEL_PREDICTOR_`, e.g. `CREDITMODEL_PREDICTOR_MAX_BATCH_ROWS=5000`) or from the matching
command-line flag, which wins."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditmodel.core import drift
from creditmodel.core.points import PointsScaling


class PredictorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITMODEL_PREDICTOR_", frozen=True)

    model_name: str = "german-credit"
    # Address the REST and gRPC servers listen on: 0.0.0.0 (every interface, as KServe binds;
    # gRPC then listens on [::], both address families, as KServe's does) in pods; 127.0.0.1
    # on a workstation. An IPv6 address is written without brackets (::1).
    host: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:%-]{1,253}$")] = "0.0.0.0"  # noqa: S104
    model_dir: str = "models/german-credit"
    # Challenger bundle scored beside the champion without changing any response.
    shadow_model_dir: str | None = None
    default_variant: Annotated[str, Field(pattern=r"^(int8|fp32)$")] = "int8"
    # Share of traffic (0-100) without an explicit `variant` that the A/B split sends to the
    # other variant, keyed by the `applicant_key` request parameter or else the request id.
    ab_percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 0.0
    max_batch_rows: Annotated[int, Field(ge=1)] = 10_000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    # A request's head and body must arrive within this many seconds of its first byte (of the
    # connection's opening, for its first request), else 408 and the connection is closed
    # (http_limits.py): a client sending nothing, or a byte at a time, cannot hold a connection.
    # Envoy sets no request timeout by default; nginx gives a head, and each body read, 60 s.
    request_read_timeout_seconds: Annotated[float, Field(ge=0.1, le=3600, allow_inf_nan=False)] = (
        60.0
    )
    # Batches larger than this are scored in a worker thread. The thread frees the event loop only
    # while onnxruntime and numpy release the GIL, and the hand-off plus the housekeeping that
    # runs meanwhile cost 0.3-0.4 ms per batch. Measured under mixed load (single rows from wrk
    # and a client sending big batches, `make bench`): inline up to 4,000 rows answers the big
    # batch 15-25% sooner with the same single-row p99; at 10,000 rows the thread gives the
    # single rows 10% more throughput.
    inline_rows: Annotated[int, Field(ge=1)] = 4_000
    # Sliding window of the live PSI gauges.
    drift_window_seconds: Annotated[float, Field(ge=1, le=7 * 86400, allow_inf_nan=False)] = 600.0
    # The PSI gauges of a (version, variant) are published only while its window holds at least
    # this many rows (the row count always is): on a few rows they are noise (8.3 after two
    # requests). core.drift.MIN_ROWS says why 500, for the drift job and the chart too.
    drift_min_rows: Annotated[int, Field(ge=1)] = drift.MIN_ROWS
    # Override the bundle's points scaling (all three or none).
    scaling: PointsScaling | None = None

    @field_validator("scaling", mode="before")
    @classmethod
    def _all_three(cls, value: object) -> object:
        """A partial scaling (CREDITMODEL_PREDICTOR_SCALING='{"base_score": 700}') is refused, as
        the flags refuse it: the rest would be defaults, not the bundle's."""
        if isinstance(value, dict) and set(value) != set(PointsScaling.model_fields):
            raise ValueError("give all of base_score, base_odds and points_to_double_odds")
        return value

    # Rows the shadow challenger may have queued before new ones are dropped (and counted).
    shadow_queue_rows: Annotated[int, Field(ge=1)] = 50_000
