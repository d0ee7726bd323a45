"""The request id, alike over REST and gRPC: the request's V2 `id` first, then the `x-request-id`
header (gRPC metadata), then a generated one. The response echoes it and, without an
`applicant_key`, it keys the A/B split, so a request gets the same variant whichever transport
carries it. A V2 `id` that is not a string is refused naming it, not replaced."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from creditmodel.predictor import rest
from creditmodel.predictor.grpc_fast import FastInferenceServicer
from creditmodel.predictor.model import CreditScoringModel
from creditmodel.predictor.settings import PredictorSettings
from tests.predictor.conftest import TrainedBundle
from tests.predictor.test_grpc import Context, infer_request
from tests.predictor.test_service import metric

pytestmark = pytest.mark.unit

NAME = "request-ids"  # metrics are process-global: a model label of this module's own


@pytest.fixture(scope="module")
def model(champion: TrainedBundle) -> CreditScoringModel:
    settings = PredictorSettings(model_name=NAME, model_dir=champion.uri, ab_percent=50)
    loaded = CreditScoringModel(settings)
    loaded.load()
    return loaded


async def over_rest(
    model: CreditScoringModel, document: dict[str, Any], header: str | bytes | None = None
) -> httpx.Response:
    """`document` through the REST fast path of this process, in process (no server)."""
    assert model.service is not None
    app = rest.FastPathApp(FastAPI())
    app.serve(model.service)
    transport = httpx.ASGITransport(app=app)
    headers = {"x-request-id": header} if header is not None else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(
            f"/v2/models/{NAME}/infer", content=json.dumps(document), headers=headers
        )


async def over_grpc(model: CreditScoringModel, request: Any, header: str | None = None) -> Any:
    repository = ModelRepository()
    repository.update(model)
    extension = ModelRepositoryExtension(repository)
    servicer = FastInferenceServicer(DataPlane(model_registry=repository), extension)
    metadata = {"x-request-id": header} if header is not None else {}
    return await servicer.ModelInfer(request, Context(**metadata))


def document(champion: TrainedBundle, **extra: Any) -> dict[str, Any]:
    return {"inputs": champion.v2_inputs(1), **extra}


async def test_the_body_id_is_echoed_and_keys_the_split_alike_on_both_transports(
    model: CreditScoringModel, champion: TrainedBundle
) -> None:
    """REST took the header's id over the body's (gRPC the body's), so a request carrying both
    came back with another id and could be scored by the other variant over REST."""
    variants = set()
    for index in range(40):
        body_id, header = f"body-{index}", f"header-{index}"
        answer = await over_rest(model, document(champion, id=body_id), header)
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == body_id
        assert answer.headers["x-request-id"] == body_id
        request = infer_request(champion.v2_inputs(1), model=NAME, request_id=body_id)
        response = await over_grpc(model, request, header)
        assert response.id == body_id
        variant = answer.json()["parameters"]["variant"]
        assert response.parameters["variant"].string_param == variant, body_id
        variants.add(variant)
    assert variants == {"int8", "fp32"}  # the id did key the split


@pytest.mark.parametrize("body_id", [None, "", "absent"])
async def test_without_a_body_id_the_header_then_a_generated_one(
    model: CreditScoringModel, champion: TrainedBundle, body_id: str | None
) -> None:
    extra = {} if body_id == "absent" else {"id": body_id}
    answer = await over_rest(model, document(champion, **extra), "trace-7")
    assert (answer.status_code, answer.json()["id"]) == (200, "trace-7")
    generated = (await over_rest(model, document(champion, **extra))).json()["id"]
    assert len(generated) == 32
    request = infer_request(champion.v2_inputs(1), model=NAME, request_id="")
    assert (await over_grpc(model, request, "trace-7")).id == "trace-7"


@pytest.mark.parametrize("given", ["café", "é" * 128, "申请-7", "🙂" * 100])
async def test_a_header_id_beyond_ascii_comes_back_as_given(
    model: CreditScoringModel, champion: TrainedBundle, given: str
) -> None:
    """The header was read as latin-1: "café" came back as "cafÃ©", and the limit counted its
    UTF-8 bytes as characters (43 characters of three bytes each were refused)."""
    answer = await over_rest(model, document(champion), given.encode())
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == given
    assert answer.headers["x-request-id"] == rest.header_value(given).decode()


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ("é" * 129, "header 'x-request-id': 129 characters, longer than the limit of 128"),
        (b"caf\xe9", "header 'x-request-id' is not UTF-8 text"),
    ],
)
async def test_a_header_id_too_long_or_not_utf8_is_refused(
    model: CreditScoringModel, champion: TrainedBundle, header: str | bytes, error: str
) -> None:
    raw = header if isinstance(header, bytes) else header.encode()
    answer = await over_rest(model, document(champion), raw)
    assert (answer.status_code, answer.json()) == (400, {"error": error})


@pytest.mark.parametrize(("given", "shown"), [(5, "5"), (True, "True"), ([], "<list>")])
async def test_an_id_that_is_no_string_is_refused_naming_it(
    model: CreditScoringModel, champion: TrainedBundle, given: Any, shown: str
) -> None:
    """It was replaced by a random uuid, silently."""
    assert model.service is not None
    before = metric(model.service, "creditmodel_request_errors_total", reason="invalid_request")
    answer = await over_rest(model, document(champion, id=given), "trace-8")
    assert answer.status_code == 400
    assert answer.json() == {"error": f"'id' must be a string, got {shown}"}
    assert answer.headers["x-request-id"] == "trace-8"  # the refusal is logged under this id
    after = metric(model.service, "creditmodel_request_errors_total", reason="invalid_request")
    assert after == before + 1


async def test_a_grpc_refusal_is_logged_under_the_requests_own_id(
    model: CreditScoringModel, champion: TrainedBundle, caplog: pytest.LogCaptureFixture
) -> None:
    """gRPC logged a refusal of the raw contents' layout under a fresh id, so the client's
    trace id found nothing in the log; REST logs it under the request's."""
    request = infer_request(champion.v2_inputs(1), model=NAME, request_id="trace-9")
    request.raw_input_contents.append(b"\x00" * 8)  # typed contents and raw ones: refused
    with (
        caplog.at_level(logging.WARNING, logger="creditmodel.predictor"),
        pytest.raises(Exception, match="raw"),
    ):
        await over_grpc(model, request)
    (refusal,) = [r for r in caplog.records if r.getMessage().startswith("request refused")]
    assert getattr(refusal, "request_id", None) == "trace-9"


async def test_a_refusal_for_another_model_or_version_keeps_the_clients_id(
    model: CreditScoringModel, champion: TrainedBundle, caplog: pytest.LogCaptureFixture
) -> None:
    """The model and version were checked before the id was read, so such a refusal came back,
    and was logged, under a fresh id (REST's x-request-id header, gRPC's `id`)."""
    assert model.service is not None
    app = rest.FastPathApp(FastAPI())
    app.serve(model.service)
    transport = httpx.ASGITransport(app=app)
    paths = ["/v2/models/nope/infer", f"/v2/models/{NAME}/versions/9/infer"]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for index, path in enumerate(paths):
            headers = {"x-request-id": f"rid-rest-{index}"}
            with caplog.at_level(logging.WARNING, logger="creditmodel.predictor"):
                answer = await client.post(path, content=b"{}", headers=headers)
            assert answer.status_code == 404
            assert answer.headers["x-request-id"] == f"rid-rest-{index}"
    grpc_requests = [
        infer_request(champion.v2_inputs(1), model=NAME, request_id="rid-grpc"),
        infer_request(champion.v2_inputs(1), model=NAME, request_id=""),
    ]
    grpc_requests[0].model_version = "9"
    grpc_requests[1].model_version = "9"
    for request, metadata in zip(grpc_requests, (None, "rid-grpc-header"), strict=True):
        with (
            caplog.at_level(logging.WARNING, logger="creditmodel.predictor"),
            pytest.raises(Exception, match="version"),
        ):
            await over_grpc(model, request, metadata)
    logged = [
        getattr(r, "request_id", None)
        for r in caplog.records
        if r.getMessage().startswith("request refused")
    ]
    assert logged == ["rid-rest-0", "rid-rest-1", "rid-grpc", "rid-grpc-header"]


async def test_a_request_the_server_fails_to_score_is_counted_and_answered_on_both_transports(
    model: CreditScoringModel,
    champion: TrainedBundle,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A model run that fails (a bundle whose graph breaks on some batch) is a server error:
    counted as outcome=error with reason `internal`, which the canary analysis' success rate and
    the error alert read, and answered 500 with a V2 error object (REST) or INTERNAL (gRPC),
    logged once with its traceback. Before, neither transport counted it: a canary failing on
    large batches scored 100% success."""
    from creditmodel.predictor.grpc_fast import RefusedRpcError

    service = model.service
    assert service is not None

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the graph failed")

    for variant in service.champion.variants.values():
        monkeypatch.setattr(variant, "score", broken)
    labels = {"version": service.champion.version, "outcome": "error"}
    before = metric(service, "creditmodel_requests_total", **labels)
    internal = {"version": service.champion.version, "reason": "internal"}
    errors_before = metric(service, "creditmodel_request_errors_total", **internal)
    with caplog.at_level(logging.ERROR, logger="creditmodel.predictor"):
        answer = await over_rest(model, document(champion, id="failing-1"))
        assert answer.status_code == 500
        assert "internal error scoring request 'failing-1'" in answer.json()["error"]
        assert answer.headers["x-request-id"] == "failing-1"
        with pytest.raises(RefusedRpcError) as refused:
            await over_grpc(model, infer_request(champion.v2_inputs(1), model=NAME))
    assert refused.value.code.name == "INTERNAL"
    assert "internal error scoring request" in refused.value.message
    assert metric(service, "creditmodel_requests_total", **labels) == before + 2
    assert metric(service, "creditmodel_request_errors_total", **internal) == errors_before + 2
    failed = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert len(failed) == 2
    assert all(r.exc_info for r in failed)
