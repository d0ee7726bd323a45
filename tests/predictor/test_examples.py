"""The examples in predictor/examples run as documented against a real predictor serving the
reference bundle: the gRPC script (KServe's client) answers what curl gets over REST."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.predictor.server import PredictorServer, predictor_server
from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.integration

EXAMPLES = REPO_ROOT / "predictor" / "examples"
MODEL = "german-credit"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorServer]:
    with predictor_server(
        str(REPO_ROOT / "models" / MODEL), tmp_path_factory.mktemp("examples"), model_name=MODEL
    ) as running:
        yield running


def rest_answer(server: PredictorServer, body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(
        server.infer_url, data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def run_example(server: PredictorServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "grpc_infer.py"), "--target", server.grpc_target, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("variant", [None, "fp32"])
def test_the_grpc_example_answers_what_rest_answers(
    server: PredictorServer, variant: str | None
) -> None:
    request = EXAMPLES / "german-credit-request.json"
    body = json.loads(request.read_text())
    if variant:
        body["parameters"] = {"variant": variant}
    expected = rest_answer(server, json.dumps(body).encode())

    run = run_example(server, *(["--variant", variant] if variant else []))

    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[-1] == (
        "german-credit: versions ['1.0.0'], platform onnxruntime_onnx, 17 inputs,"
        " outputs ['probability', 'score', 'reason_codes']"
    )
    got = json.loads(run.stdout)
    assert got["parameters"] == {"variant": variant or "int8"}
    assert (got["model_name"], got["model_version"], got["id"]) == (
        MODEL,
        "1.0.0",
        "applicant-0002",
    )
    outputs = {o["name"]: o for o in got["outputs"]}
    for want in expected["outputs"]:
        have = outputs[want["name"]]
        assert (have["datatype"], have["shape"]) == (want["datatype"], want["shape"])
        if want["datatype"] == "FP32":
            assert have["data"] == pytest.approx(want["data"], abs=1e-6)
        else:
            assert have["data"] == want["data"]


def test_the_grpc_example_reports_a_refusal_in_one_line(server: PredictorServer) -> None:
    run = run_example(server, "--model", "no-such-model")
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "grpc_infer: NOT_FOUND: Model with name no-such-model does not exist."
    )
