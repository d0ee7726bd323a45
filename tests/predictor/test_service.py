"""The transport-independent request path on a real trained bundle: variants, the A/B split,
large batches off the event loop, and a shadow challenger that cannot hurt a response."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from creditmodel.predictor.engine import LoadedBundle
from creditmodel.predictor.errors import RequestError
from creditmodel.predictor.service import InferenceRequest, ScoringService
from creditmodel.predictor.settings import PredictorSettings
from creditmodel.predictor.validation import Tensor
from tests.predictor.conftest import TrainedBundle

pytestmark = pytest.mark.unit


def service(
    champion: TrainedBundle, challenger: TrainedBundle | None = None, **settings: object
) -> ScoringService:
    name = f"svc-{uuid.uuid4().hex[:8]}"  # metrics are process-global: a fresh model label per test
    return ScoringService(
        PredictorSettings(model_name=name, **settings),  # type: ignore[arg-type]
        LoadedBundle(champion.bundle, max_rows=5_000),
        LoadedBundle(challenger.bundle, max_rows=5_000) if challenger else None,
    )


def request(
    svc: ScoringService, champion: TrainedBundle, n: int, **parameters: object
) -> InferenceRequest:
    tensors = [
        Tensor(i["name"], i["datatype"], i["shape"], i["data"]) for i in champion.v2_inputs(n)
    ]
    return InferenceRequest(svc.name, tensors, "req", parameters or None)


def metric(svc: ScoringService, name: str, **labels: str) -> float:
    text = svc.telemetry.exposition()[0].decode()
    total = 0.0
    for line in text.splitlines():
        wanted = {"model": svc.name, **labels}
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in wanted.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_failing_challenger_never_fails_or_changes_a_response(
    champion: TrainedBundle, challenger: TrainedBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_shadow = service(champion, challenger)
    alone = service(champion)
    assert with_shadow.shadow is not None

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("challenger exploded")

    monkeypatch.setattr(with_shadow.shadow.challenger.variants["int8"], "score", broken)
    got = await with_shadow.infer(request(with_shadow, champion, 5))
    want = await alone.infer(request(alone, champion, 5))
    np.testing.assert_array_equal(got.scored.probability, want.scored.probability)
    np.testing.assert_array_equal(got.scored.reasons, want.scored.reasons)
    with_shadow.flush()
    assert metric(with_shadow, "creditmodel_shadow_failures_total") == 1
    await with_shadow.close()
    await alone.close()


async def test_shadow_scores_the_same_rows_with_the_challenger(
    champion: TrainedBundle, challenger: TrainedBundle
) -> None:
    svc = service(champion, challenger)
    await svc.infer(request(svc, champion, 7))
    await svc.infer(request(svc, champion, 3))
    svc.flush()
    assert metric(svc, "creditmodel_predictions_total", variant="shadow", version="v2") == 10
    assert metric(svc, "creditmodel_shadow_probability_delta_count", version="v2") == 10
    await svc.close()


async def test_a_full_shadow_queue_drops_and_counts(
    champion: TrainedBundle, challenger: TrainedBundle
) -> None:
    svc = service(champion, challenger, shadow_queue_rows=8)
    await svc.infer(request(svc, champion, 5))
    await svc.infer(request(svc, champion, 5))  # would exceed 8 queued rows
    svc.flush()
    assert metric(svc, "creditmodel_shadow_dropped_rows_total") == 5
    assert metric(svc, "creditmodel_predictions_total", variant="shadow") == 5
    await svc.close()


def test_a_shadow_submit_that_lands_mid_drain_is_neither_lost_nor_unbounded(
    champion: TrainedBundle, challenger: TrainedBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large batch is scored in a worker thread and submits its shadow rows there while the
    # event loop drains. Here eight submits land wherever the drain reads its items' shapes in
    # Python (where a thread switch could put them): whenever they land, the rows must stay
    # counted against the bound, so the queue never holds more than the bound.
    svc = service(champion, challenger, shadow_queue_rows=8)
    shadow = svc.shadow
    assert shadow is not None
    scored: list[int] = []
    monkeypatch.setattr(shadow.telemetry, "scored", lambda v, k, b, *a: scored.append(b.rows))
    one = svc.champion.validator.validate(request(svc, champion, 1).tensors)
    landed: list[bool] = []
    armed: list[bool] = []

    class Interleaved(np.ndarray):  # type: ignore[type-arg]
        @property  # type: ignore[misc]
        def shape(self) -> tuple[int, ...]:
            if armed and not landed:
                landed.append(True)
                for _ in range(8):
                    shadow.submit(one, np.zeros(1, np.float32), "int8")
            return super().shape  # type: ignore[no-any-return]

    shadow.submit(one, np.zeros(1, np.float32).view(Interleaved), "int8")
    armed.append(True)
    shadow.drain()
    for _ in range(8):  # dropped if the 8 landed mid-drain, else queued
        shadow.submit(one, np.zeros(1, np.float32), "int8")
    shadow.drain()
    assert max(scored) <= 8
    assert sum(scored) == 9
    asyncio.run(svc.close())


async def test_ab_split_is_deterministic_per_applicant(champion: TrainedBundle) -> None:
    svc = service(champion, ab_percent=50.0)
    first = [
        (await svc.infer(request(svc, champion, 1, applicant_key=f"a{i}"))).variant
        for i in range(60)
    ]
    again = [
        (await svc.infer(request(svc, champion, 1, applicant_key=f"a{i}"))).variant
        for i in range(60)
    ]
    assert first == again
    assert set(first) == {"int8", "fp32"}
    pinned = await svc.infer(request(svc, champion, 1, applicant_key="a0", variant="fp32"))
    assert pinned.variant == "fp32"
    await svc.close()


async def test_large_batches_give_the_same_answers_off_the_event_loop(
    champion: TrainedBundle,
) -> None:
    svc = service(champion, inline_rows=10)
    big = await svc.infer(request(svc, champion, 200))  # runs in a worker thread
    small = await svc.infer(request(svc, champion, 10))  # runs inline
    np.testing.assert_array_equal(big.scored.probability[:10], small.scored.probability)
    np.testing.assert_array_equal(big.scored.reasons[:10], small.scored.reasons)
    await svc.close()


async def test_outputs_can_skip_reason_codes(champion: TrainedBundle) -> None:
    svc = service(champion)
    req = request(svc, champion, 3)
    prediction = await svc.infer(
        InferenceRequest(req.model_name, req.tensors, req.request_id, None, ["score"])
    )
    assert prediction.scored.reasons is None
    assert [name for name, *_ in prediction.tensors()] == ["score"]
    await svc.close()


async def test_an_output_asked_for_twice_is_refused_by_name(champion: TrainedBundle) -> None:
    svc = service(champion)
    req = request(svc, champion, 2)
    with pytest.raises(RequestError, match="output 'score': requested more than once") as caught:
        await svc.infer(
            InferenceRequest(
                req.model_name, req.tensors, req.request_id, None, ["score", "probability", "score"]
            )
        )
    assert caught.value.http_status == 400
    svc.flush()
    assert metric(svc, "creditmodel_request_errors_total", reason="invalid_request") == 1
    await svc.close()


def test_a_challenger_with_other_inputs_is_refused(champion: TrainedBundle) -> None:
    other = champion.bundle.schema.model_copy(
        update={"features": list(reversed(champion.bundle.schema.features))}
    )
    bundle = replace(champion.bundle, schema=other)
    with pytest.raises(ValueError, match="shadow must accept the champion's inputs"):
        ScoringService(
            PredictorSettings(model_name="svc-refused"),
            LoadedBundle(champion.bundle, 100),
            LoadedBundle(bundle, 100),
        )


def test_a_graph_that_fails_on_its_own_probe_rows_is_refused_as_a_bundle_error(
    champion: TrainedBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph that loads but fails when run (a Gather out of range on some batch shape) used to
    end the predictor with onnxruntime's traceback and exit 1; it is a bad bundle: BundleError,
    which the command line reports in one line and exits 2."""
    from creditmodel.core.bundle import BundleError
    from creditmodel.predictor.engine import VariantModel
    from creditmodel.predictor.scoring import PointsScale

    def failing(*args: object) -> None:
        raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : indices out of range")

    monkeypatch.setattr(VariantModel, "probability", failing)
    with pytest.raises(BundleError, match="fails on the bundle's own probe rows"):
        VariantModel(champion.bundle, "int8", PointsScale(factor=28.85, offset=487.0))


async def test_the_challenger_scores_off_the_event_loop(
    champion: TrainedBundle, challenger: TrainedBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The housekeeping tick drains the shadow queue in a worker thread: a slow challenger (a
    bigger model, a graph that takes 50 ms a batch) held the event loop, and every champion
    request with it, for as long as each run took."""
    import threading

    svc = service(champion, challenger)
    assert svc.shadow is not None
    ran_in: list[threading.Thread] = []
    original = svc.shadow.challenger.variants["int8"].score

    def recording(*args: Any, **kwargs: Any) -> Any:
        ran_in.append(threading.current_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(svc.shadow.challenger.variants["int8"], "score", recording)
    await svc.infer(request(svc, champion, 3))  # starts the housekeeping task
    for _ in range(100):
        if ran_in:
            break
        await asyncio.sleep(0.02)
    assert ran_in
    assert all(thread is not threading.main_thread() for thread in ran_in)
    await svc.close()


async def test_the_challenger_scores_with_the_variant_that_answered(
    champion: TrainedBundle,
) -> None:
    """A challenger identical to the champion disagrees with it by exactly 0 whichever variant
    answered: fp32 answers were compared with the challenger's int8, so the delta measured the
    quantisation (about 0.004 here), not the models."""
    svc = service(champion, champion)
    assert svc.shadow is not None
    for variant in ("fp32", "int8"):
        await svc.infer(request(svc, champion, 50, variant=variant))
    svc.flush()
    assert metric(svc, "creditmodel_shadow_probability_delta_count") == 100
    assert metric(svc, "creditmodel_shadow_probability_delta_sum") == 0.0
    await svc.close()
