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


@pytest.mark.parametrize(
    ("encoding", "status"),
    [("gzip", 415), ("GZIP", 415), ("deflate, gzip", 415), ("br", 415), ("identity", 200)],
)
async def test_a_content_encoding_other_than_identity_is_refused_by_name(
    champion: TrainedBundle, encoding: str, status: int
) -> None:
    model = CreditScoringModel(PredictorSettings(model_name=NAME, model_dir=champion.uri))
    model.load()
    assert model.service is not None
    rest.install(model.service)
    document = json.dumps({"inputs": champion.v2_inputs(1)}).encode()
    body = document if encoding == "identity" else gzip.compress(document)
    transport = httpx.ASGITransport(app=rest.FastPathApp(FastAPI()))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.post(
            f"/v2/models/{NAME}/infer", content=body, headers={"content-encoding": encoding}
        )
    assert answer.status_code == status, answer.text
    if status == 415:
        message = answer.json()["error"]
        assert "header 'content-encoding'" in message, message
        assert "not supported" in message, message
