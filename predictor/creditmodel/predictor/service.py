"""The transport-independent request path (what MLServer calls the DataPlane): validate V2
inputs, pick the variant, score, record metrics and drift, feed the shadow challenger. The REST
fast route and the kserve.Model (gRPC, stock REST) both call it, so they behave identically."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from creditmodel.core.prediction_log import bundle_digest
from creditmodel.predictor.bounds import screen, show
from creditmodel.predictor.engine import LoadedBundle, Scored
from creditmodel.predictor.errors import INTERNAL, RequestError
from creditmodel.predictor.metrics import Telemetry
from creditmodel.predictor.monitoring import DriftLayout
from creditmodel.predictor.prediction_log import PredictionLogger
from creditmodel.predictor.routing import VARIANTS, choose_variant
from creditmodel.predictor.settings import PredictorSettings
from creditmodel.predictor.shadow import ShadowScorer
from creditmodel.predictor.validation import Batch, Tensor

log = logging.getLogger("creditmodel.predictor")

# name -> (V2 datatype, shape after the row count)
OUTPUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "probability": ("FP32", ()),
    "score": ("INT32", ()),
    "reason_codes": ("BYTES", (4,)),
}
# Shadow micro-batches and PSI binning run on every tick, a few hundred rows at a time: binning a
# second's worth of single-row requests at once (4,600 here) held the event loop for 10-13 ms,
# the worst latency of every request in flight meanwhile. Request counts are pushed to the
# multiprocess metric files once a second.
_TICK_SECONDS = 0.05
_COUNTS_TICK_SECONDS = 1.0


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~3x, on every request
class InferenceRequest:
    """A V2 inference request as any transport decoded it."""

    model_name: str
    tensors: Sequence[Tensor]
    request_id: str
    parameters: Mapping[str, Any] | None = None
    outputs: Sequence[str] | None = None


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~3x, on every request
class Job:
    request_id: str
    variant: str
    batch: Batch
    outputs: tuple[str, ...]


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~3x, on every request
class Prediction:
    request_id: str
    model_name: str
    version: str
    variant: str
    outputs: tuple[str, ...]
    scored: Scored

    def tensors(self) -> list[tuple[str, str, list[int], npt.NDArray[Any]]]:
        """(name, datatype, shape, values) of each requested output."""
        rows = self.scored.probability.shape[0]
        values = {
            "probability": self.scored.probability,
            "score": self.scored.score,
            "reason_codes": self.scored.reasons,
        }
        result = []
        for name in self.outputs:
            datatype, tail = OUTPUTS[name]
            array = values[name]
            assert array is not None
            result.append((name, datatype, [rows, *tail], array))
        return result


def new_request_id() -> str:
    return uuid.uuid4().hex


class ScoringService:
    def __init__(
        self,
        settings: PredictorSettings,
        champion: LoadedBundle,
        challenger: LoadedBundle | None = None,
        prediction_log: PredictionLogger | None = None,
    ) -> None:
        self.settings = settings
        self.prediction_log = prediction_log
        self.champion = champion
        self.champion_digest = bundle_digest(champion.bundle.manifest.files)
        self.champion_scaling = json.dumps(champion.scaling.model_dump(), sort_keys=True)
        self.name = settings.model_name
        self.telemetry = Telemetry(
            self.name, settings.drift_window_seconds, settings.drift_min_rows
        )
        layout = DriftLayout(champion.bundle.schema, champion.bundle.reference)
        for variant in VARIANTS:
            self.telemetry.track(champion.version, variant, layout)
        self.shadow: ShadowScorer | None = None
        if challenger is not None:
            _check_compatible(champion, challenger)
            self.shadow = ShadowScorer(challenger, self.telemetry, settings.shadow_queue_rows)
            self.telemetry.track(
                challenger.version,
                "shadow",
                DriftLayout(challenger.bundle.schema, challenger.bundle.reference),
            )
        self._background: asyncio.Task[None] | None = None

    # --- request path -------------------------------------------------------------------------

    def check_model(self, model_name: str, version: str | None = None) -> None:
        """The name, and a version when the client names one (V2's `/versions/{v}` paths,
        gRPC's model_version): another version is refused, never scored by this one."""
        if model_name != self.name:
            raise RequestError(
                "unknown_model",
                f"model {show(model_name)} is not served here (this is {self.name!r})",
            )
        if version and version != self.champion.version:
            raise RequestError(
                "unknown_model",
                f"model {self.name!r} version {show(version)} is not served here (it serves"
                f" version {self.champion.version!r})",
            )

    def prepare(self, request: InferenceRequest) -> Job:
        """Validate a request; a refusal is counted and logged here, then raised, and so is a
        failure to validate it (counted as failed)."""
        variant = "none"
        try:
            self.check_model(request.model_name)
            parameters = request.parameters or {}
            key = parameters.get("applicant_key")
            if key is not None and not isinstance(key, str | int | float):
                raise RequestError(
                    "invalid_request", f"parameter 'applicant_key': {show(key)} is not a scalar"
                )
            variant = choose_variant(
                parameters.get("variant"),
                self.settings.default_variant,
                self.settings.ab_percent,
                str(key) if key is not None else request.request_id,
            )
            wanted = tuple(request.outputs) if request.outputs else tuple(OUTPUTS)
            for name in wanted:
                if name not in OUTPUTS:
                    raise RequestError(
                        "invalid_request",
                        f"output {show(name)}: not an output of this model ({', '.join(OUTPUTS)})",
                    )
            if len(set(wanted)) != len(wanted):  # each output is answered once
                twice = next(name for i, name in enumerate(wanted) if name in wanted[:i])
                raise RequestError(
                    "invalid_request", f"output {show(twice)}: requested more than once"
                )
            validator = self.champion.validator
            try:
                batch = validator.validate(request.tensors)
            except (RequestError, RecursionError):  # refused: say why, client strings bounded
                batch = validator.validate(screen(request.tensors, validator.schema))
        except RequestError as error:
            self.refuse(error, request.request_id, variant)
            raise
        except RecursionError:
            raise  # a refusal: counted by the transport that names the nesting
        except Exception:
            self.fail(request.request_id, "none")
            raise
        return Job(request_id=request.request_id, variant=variant, batch=batch, outputs=wanted)

    def execute(self, job: Job) -> Prediction:
        scored = self._score(job.variant, job.batch, job.outputs)
        return self._answer(job, scored)

    def execute_batch(self, jobs: Sequence[Job]) -> list[Prediction]:
        """Jobs of one variant and one set of outputs scored by one model run, each answered and
        logged as the request it is. A row scores the same alone or in a batch (bound_run,
        test_scoring), so batching changes no answer; what it saves is the per-run cost, which
        for a single row is most of the model's share (gRPC's batched ModelInfer)."""
        if len(jobs) == 1:
            return [self.execute(jobs[0])]
        first = jobs[0]
        merged = self.champion.validator.concatenate([job.batch for job in jobs])
        scored = self._score(first.variant, merged, first.outputs)
        predictions, start = [], 0
        for job in jobs:
            rows = slice(start, start + job.batch.rows)
            start = rows.stop
            reasons = None if scored.reasons is None else scored.reasons[rows]
            part = Scored(scored.probability[rows], scored.score[rows], reasons)
            predictions.append(self._answer(job, part))
        return predictions

    def _score(self, variant: str, batch: Batch, outputs: tuple[str, ...]) -> Scored:
        """One model run, recorded (metrics, drift) and fed to the shadow."""
        started = time.perf_counter()
        scored = self.champion.variants[variant].score(
            batch, with_reasons="reason_codes" in outputs
        )
        elapsed = time.perf_counter() - started
        self.telemetry.scored(self.champion.version, variant, batch, scored.score, elapsed)
        if self.shadow is not None:
            self.shadow.submit(batch, scored.probability, variant)
        return scored

    def _answer(self, job: Job, scored: Scored) -> Prediction:
        """The prediction of one request, offered to the prediction log under its own id."""
        if self.prediction_log is not None:
            self.prediction_log.offer(
                request_id=job.request_id,
                version=self.champion.version,
                variant=job.variant,
                inputs=job.batch.columns,
                probability=scored.probability,
                score=scored.score,
                reason_codes=scored.reasons,
                bundle_digest=self.champion_digest,
                points_scaling=self.champion_scaling,
            )
        return Prediction(
            request_id=job.request_id,
            model_name=self.name,
            version=self.champion.version,
            variant=job.variant,
            outputs=job.outputs,
            scored=scored,
        )

    async def infer(self, request: InferenceRequest) -> Prediction:
        """Batches up to `inline_rows` are scored inline; bigger ones in a worker thread, so the
        event loop is not held for tens of milliseconds (kserve issue 3950)."""
        self.ensure_background()
        job = self.prepare(request)
        try:
            if job.batch.rows > self.settings.inline_rows:
                return await asyncio.to_thread(self.execute, job)
            return self.execute(job)
        except Exception:
            self.fail(job.request_id, job.variant)
            raise

    def done(self, prediction: Prediction, started: float) -> None:
        """Record a served request; `started` is its `time.perf_counter()` at arrival."""
        seconds = time.perf_counter() - started
        self.telemetry.request_done(prediction.version, prediction.variant, seconds)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "scored",
                extra={
                    "request_id": prediction.request_id,
                    "variant": prediction.variant,
                    "version": prediction.version,
                    "rows": int(prediction.scored.probability.shape[0]),
                    "duration_ms": round(seconds * 1000, 3),
                },
            )

    def refuse(self, error: RequestError, request_id: str, variant: str = "none") -> None:
        self.telemetry.error(self.champion.version, variant, error.reason)
        log.warning(
            "request refused: %s",
            error.message,
            extra={"request_id": request_id, "reason": error.reason, "variant": variant},
        )

    def fail(self, request_id: str, variant: str) -> None:
        """A validated request this server could not score (a model run that failed, a bug):
        counted as outcome=error with reason `internal`, so canary analysis and the error alert
        see it, and logged once with its traceback. The transport answers 500 / INTERNAL."""
        self.telemetry.error(self.champion.version, variant, INTERNAL)
        log.exception("request failed", extra={"request_id": request_id, "variant": variant})

    # --- background work ------------------------------------------------------------------------

    def ensure_background(self) -> None:
        """Start the housekeeping task (shadow, PSI binning, counts) on the running loop, once;
        the first async request starts it, and the gRPC server at its start (its batched
        ModelInfer never runs on the loop)."""
        if self._background is None or self._background.done():
            self._background = asyncio.get_running_loop().create_task(self._housekeeping())

    async def _housekeeping(self) -> None:
        last_counts = time.monotonic()
        while True:
            await asyncio.sleep(_TICK_SECONDS)
            if self.shadow is not None and self.shadow.pending:
                await asyncio.to_thread(self.shadow.drain)  # a slow challenger never holds the loop
            with contextlib.suppress(Exception):
                self.telemetry.bin_pending()
                if time.monotonic() - last_counts >= _COUNTS_TICK_SECONDS:
                    last_counts = time.monotonic()
                    self.telemetry.flush_counts()

    def flush(self) -> None:
        """Finish queued shadow and drift work now (scrapes, shutdown, tests)."""
        if self.shadow is not None:
            self.shadow.drain()
        self.telemetry.flush()

    async def flush_log(self) -> None:
        """Write the prediction log's queued rows now, for at most 10 s (the logger stays open)."""
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.flush, 10.0)

    async def close(self) -> None:
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
        self.flush()
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.close)


def _check_compatible(champion: LoadedBundle, challenger: LoadedBundle) -> None:
    """The challenger scores the champion's validated rows as they are, so it must declare the
    same inputs: names, datatypes and category lists, in the same order."""
    for ours, theirs in zip(
        champion.bundle.schema.features, challenger.bundle.schema.features, strict=False
    ):
        if (ours.name, ours.datatype, ours.categories) != (
            theirs.name,
            theirs.datatype,
            theirs.categories,
        ):
            raise ValueError(
                f"shadow bundle {challenger.bundle.uri}: input {theirs.name!r} differs from the"
                f" champion's {ours.name!r}; a shadow must accept the champion's inputs as they are"
            )
    if len(champion.bundle.schema.features) != len(challenger.bundle.schema.features):
        raise ValueError(
            f"shadow bundle {challenger.bundle.uri}: {len(challenger.bundle.schema.features)}"
            f" inputs, the champion has {len(champion.bundle.schema.features)}"
        )
