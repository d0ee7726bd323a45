"""A compressed body is refused for what it is (415 naming the header), not misread as JSON in
another character set: gzip's magic bytes hold a NUL, which the JSON check took for UTF-16."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
from fastapi import FastAPI

from creditmodel.predictor import rest
from creditmodel.predictor.model import CreditScoringModel
from creditmodel.predictor.settings import PredictorSettings
from tests.predictor.conftest import TrainedBundle

pytestmark = pytest.mark.unit

NAME = "encoding"


CE, TE = "content-encoding", "transfer-encoding"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([(CE, "gzip")], 415),
        ([(CE, "GZIP")], 415),
        ([(CE, "deflate, gzip")], 415),
        ([(CE, "br")], 415),
        ([(CE, "identity, gzip")], 415),
        ([(CE, "identity"), (CE, "gzip")], 415),  # before: only the first header was read
        ([(CE, "gzip"), (CE, "identity")], 415),
        ([(TE, "gzip, chunked")], 415),
        # Behind uvicorn's httptools these two never reach the app (a Transfer-Encoding that does
        # not end in chunked is malformed HTTP, a 400: test_http_limits); another ASGI server
        # may pass them on, and the app's answer is the same as for any other coding.
        ([(TE, "gzip")], 415),
        ([(CE, "identity")], 200),
        ([(CE, "Identity"), (CE, "")], 200),
        ([(TE, "chunked")], 200),
        ([(TE, "identity")], 200),  # as above
    ],
)
async def test_a_body_coded_other_than_plain_is_refused_by_name(
    champion: TrainedBundle, headers: list[tuple[str, str]], status: int
) -> None:
    model = CreditScoringModel(PredictorSettings(model_name=NAME, model_dir=champion.uri))
    model.load()
    assert model.service is not None
    app = rest.FastPathApp(FastAPI())
    app.serve(model.service)
    document = json.dumps({"inputs": champion.v2_inputs(1)}).encode()
    body = document if status == 200 else gzip.compress(document)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.post(f"/v2/models/{NAME}/infer", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    if status == 415:
        message = answer.json()["error"]
        coded = next(name for name, value in headers if value.lower() not in ("identity", ""))
        assert f"header {coded!r}" in message, message
        assert "not supported" in message, message
