"""The predictor as a real process, through KServe's own clients and NVIDIA's tritonclient (REST
and gRPC): outputs equal a direct onnxruntime run of the bundle; bad input is refused with 400 /
INVALID_ARGUMENT naming the input, counted by reason, and the server keeps serving."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse

from creditmodel.core.bundle import MODEL_FP32, MODEL_INT8
from creditmodel.predictor.engine import LoadedBundle
from creditmodel.predictor.scoring import PointsScale
from creditmodel.predictor.settings import PointsScaling
from creditmodel.predictor.validation import Tensor
from tests.predictor.conftest import TrainedBundle
from tests.predictor.server import SCRIPT, PredictorServer, predictor_server
from tests.support.process import ManagedProcess, free_port

pytestmark = pytest.mark.integration

ROWS = 8
MAX_ROWS = 2_000
MAX_BODY = 1_048_576


@pytest.fixture(scope="module")
def server(
    champion: TrainedBundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PredictorServer]:
    extra = ["--max_batch_rows", str(MAX_ROWS), "--max_body_bytes", str(MAX_BODY)]
    with predictor_server(champion.uri, tmp_path_factory.mktemp("logs"), extra=extra) as running:
        yield running


def expected(champion: TrainedBundle, n: int, variant: str = "int8") -> dict[str, np.ndarray]:
    """A direct onnxruntime run of the bundle's model file, and the points it implies."""
    model = champion.bundle.files[MODEL_INT8 if variant == "int8" else MODEL_FP32]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (probability,) = session.run(["probability"], champion.feed(n))
    scale = PointsScale.from_scaling(
        PointsScaling.model_validate(champion.bundle.manifest.lineage.params["scoring"])
    )
    # Reason codes: the library's own tables for this bundle, applied in this process.
    loaded = LoadedBundle(champion.bundle, max_rows=MAX_ROWS)
    tensors = [
        Tensor(i["name"], i["datatype"], i["shape"], i["data"]) for i in champion.v2_inputs(n)
    ]
    batch = loaded.validator.validate(tensors)
    reasons = loaded.variants[variant].score(batch).reasons
    return {"probability": probability, "score": scale.score(probability), "reason_codes": reasons}


def assert_matches(
    champion: TrainedBundle, outputs: dict[str, np.ndarray], n: int, variant: str = "int8"
) -> None:
    want = expected(champion, n, variant)
    np.testing.assert_allclose(outputs["probability"], want["probability"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(outputs["score"], want["score"])
    reasons = [
        [r.decode() if isinstance(r, bytes) else str(r) for r in row]
        for row in np.asarray(outputs["reason_codes"]).reshape(n, 4).tolist()
    ]
    assert reasons == want["reason_codes"].tolist()
    assert any(row[0] for row in reasons)


def kserve_request(champion: TrainedBundle, n: int, **parameters: str) -> InferRequest:
    inputs = []
    for spec in champion.v2_inputs(n):
        item = InferInput(spec["name"], spec["shape"], spec["datatype"])
        dtype = object if spec["datatype"] == "BYTES" else np.float32
        item.set_data_from_numpy(
            np.asarray(spec["data"], dtype=dtype).reshape(n, 1), binary_data=False
        )
        inputs.append(item)
    return InferRequest(
        model_name="demo", infer_inputs=inputs, request_id="req-1", parameters=parameters or None
    )


def outputs_of(response: InferResponse) -> dict[str, np.ndarray]:
    return {o.name: o.as_numpy() for o in response.outputs}


def post(
    server: PredictorServer, body: bytes | dict[str, Any], path: str | None = None
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        path or server.infer_url, data=data, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# --- correct answers through every client ---------------------------------------------------------


async def test_rest_through_kserve_client(server: PredictorServer, champion: TrainedBundle) -> None:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    try:
        response = await client.infer(server.url, kserve_request(champion, ROWS), model_name="demo")
    finally:
        await client.close()
    assert response.id == "req-1"
    assert response.parameters == {"variant": "int8"}
    assert_matches(champion, outputs_of(response), ROWS)
    assert [o.datatype for o in response.outputs] == ["FP32", "INT32", "BYTES"]


async def test_grpc_through_kserve_client(server: PredictorServer, champion: TrainedBundle) -> None:
    client = InferenceGRPCClient(server.grpc_target, retries=0)
    try:
        response = await client.infer(kserve_request(champion, ROWS))
    finally:
        await client.close()
    assert_matches(champion, outputs_of(response), ROWS)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary-extension"])
def test_rest_through_tritonclient(
    server: PredictorServer, champion: TrainedBundle, binary: bool
) -> None:
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    inputs = []
    for spec in champion.v2_inputs(ROWS):
        item = triton_http.InferInput(spec["name"], [ROWS, 1], spec["datatype"])
        dtype = object if spec["datatype"] == "BYTES" else np.float32
        item.set_data_from_numpy(
            np.asarray(spec["data"], dtype=dtype).reshape(ROWS, 1), binary_data=binary
        )
        inputs.append(item)
    outputs = [
        triton_http.InferRequestedOutput(n, binary_data=False)
        for n in ("probability", "score", "reason_codes")
    ]
    result = client.infer("demo", inputs, outputs=outputs)
    got = {name: result.as_numpy(name) for name in ("probability", "score", "reason_codes")}
    assert_matches(champion, got, ROWS)
    client.close()


def triton_grpc_infer(
    server: PredictorServer, model: str, document: dict[str, Any]
) -> dict[str, Any]:
    """tritonclient.grpc in a child process (see triton_grpc_client.py for why)."""
    completed = subprocess.run(
        [sys.executable, "-m", "tests.predictor.triton_grpc_client", server.grpc_target, model],
        input=json.dumps(document),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return dict(json.loads(completed.stdout))


def test_grpc_through_tritonclient(server: PredictorServer, champion: TrainedBundle) -> None:
    result = triton_grpc_infer(
        server, "demo", {"inputs": champion.v2_inputs(ROWS), "parameters": {"variant": "fp32"}}
    )
    assert result["status"] == "OK", result
    got = {name: np.asarray(values) for name, values in result["outputs"].items()}
    assert_matches(champion, got, ROWS, variant="fp32")


def test_variant_parameter_selects_the_fp32_model(
    server: PredictorServer, champion: TrainedBundle
) -> None:
    status, body = post(
        server, {"inputs": champion.v2_inputs(ROWS), "parameters": {"variant": "fp32"}}
    )
    assert status == 200
    assert body["model_version"] == "v1"
    assert body["parameters"] == {"variant": "fp32"}
    got = {o["name"]: np.asarray(o["data"]) for o in body["outputs"]}
    assert_matches(champion, got, ROWS, variant="fp32")


def test_requested_outputs_only(server: PredictorServer, champion: TrainedBundle) -> None:
    status, body = post(
        server, {"inputs": champion.v2_inputs(2), "outputs": [{"name": "score"}], "id": "abc"}
    )
    assert status == 200
    assert body["id"] == "abc"
    assert [o["name"] for o in body["outputs"]] == ["score"]


def test_a_thousand_rows_in_one_request(server: PredictorServer, champion: TrainedBundle) -> None:
    status, body = post(server, {"inputs": champion.v2_inputs(1000)})
    assert status == 200
    got = {o["name"]: np.asarray(o["data"]) for o in body["outputs"]}
    assert_matches(champion, got, 1000)


def test_metadata_lists_inputs_and_outputs(
    server: PredictorServer, champion: TrainedBundle
) -> None:
    with urllib.request.urlopen(f"{server.url}/v2/models/demo", timeout=10) as response:
        metadata = json.loads(response.read())
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        (f.name, f.datatype, [-1, 1]) for f in champion.bundle.schema.features
    ]
    assert metadata["outputs"] == [
        {"name": "probability", "datatype": "FP32", "shape": [-1]},
        {"name": "score", "datatype": "INT32", "shape": [-1]},
        {"name": "reason_codes", "datatype": "BYTES", "shape": [-1, 4]},
    ]
    # The served bundle's version, and the platform name Triton gives an ONNX Runtime model.
    assert metadata["versions"] == ["v1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    with urllib.request.urlopen(f"{server.url}/v2/models/demo/ready", timeout=10) as response:
        assert json.loads(response.read())["ready"] is True


def get(server: PredictorServer, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{server.url}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_version_path_is_answered_only_for_the_served_version(
    server: PredictorServer, champion: TrainedBundle
) -> None:
    """V2's `/versions/{v}` paths (KServe answers metadata and readiness by version with 501,
    and scored any version asked for): the served version answers as the unversioned paths do;
    another is a 404 naming both, and its request is never scored."""
    assert get(server, "/v2/models/demo/versions/v1") == get(server, "/v2/models/demo")
    assert get(server, "/v2/models/demo/versions/v1/ready") == (
        200, {"name": "demo", "ready": True},
    )  # fmt: skip
    request = {"inputs": champion.v2_inputs(1)}
    status, body = post(server, request, f"{server.url}/v2/models/demo/versions/v1/infer")
    assert (status, body["model_version"]) == (200, "v1")
    refused = server.metric("creditmodel_request_errors_total", reason="unknown_model")
    for answer in (
        get(server, "/v2/models/demo/versions/v2"),
        get(server, "/v2/models/demo/versions/v2/ready"),
        post(server, request, f"{server.url}/v2/models/demo/versions/v2/infer"),
    ):
        assert answer == (
            404, {"error": "model 'demo' version 'v2' is not served here (it serves version 'v1')"}
        )  # fmt: skip
    status, _ = post(server, request, f"{server.url}/v2/models/demo/versions//infer")
    assert status == 404  # an empty version is no version path, and nothing is scored
    # Counted as refused requests: the inference (metadata and readiness never are).
    assert server.metric("creditmodel_request_errors_total", reason="unknown_model") == refused + 1


# --- bad input ------------------------------------------------------------------------------------


def mutate(champion: TrainedBundle, name: str, **changes: Any) -> list[dict[str, Any]]:
    inputs = champion.v2_inputs(2)
    for item in inputs:
        if item["name"] == name:
            item.update(changes)
    return inputs


def categorical(champion: TrainedBundle) -> str:
    return next(f.name for f in champion.bundle.schema.features if f.kind == "categorical")


def numeric(champion: TrainedBundle) -> str:
    return next(f.name for f in champion.bundle.schema.features if f.minimum is not None)


BAD_INPUT = {
    "missing input": (lambda c: {"inputs": c.v2_inputs(2)[1:]}, "missing_input", 0),
    "unknown input": (lambda c: {"inputs": [*c.v2_inputs(2), {"name": "colour", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]}, "unknown_input", "colour"),
    "wrong datatype": (lambda c: {"inputs": mutate(c, numeric(c), datatype="INT64")}, "wrong_datatype", "num"),
    "wrong shape": (lambda c: {"inputs": mutate(c, numeric(c), shape=[1, 2])}, "wrong_shape", "num"),
    "mismatched lengths": (lambda c: {"inputs": mutate(c, numeric(c), shape=[3, 1], data=[1.0, 2.0, 3.0])}, "length_mismatch", "num"),
    "NaN": (lambda c: {"inputs": mutate(c, numeric(c), data=[float("nan"), 1.0])}, "non_finite", "num"),
    "Infinity": (lambda c: {"inputs": mutate(c, numeric(c), data=[1.0, float("inf")])}, "non_finite", "num"),
    "out of range": (lambda c: {"inputs": mutate(c, numeric(c), data=[-5.0, 1.0])}, "out_of_range", "num"),
    "unknown category": (lambda c: {"inputs": mutate(c, categorical(c), data=["castle", "castle"])}, "unknown_category", "cat"),
    "empty batch": (lambda c: {"inputs": [dict(i, shape=[0, 1], data=[]) for i in c.v2_inputs(1)]}, "empty_batch", 0),
    "batch over the limit": (lambda c: {"inputs": c.v2_inputs(MAX_ROWS + 1)}, "batch_too_large", 0),
    "unknown variant": (lambda c: {"inputs": c.v2_inputs(1), "parameters": {"variant": "fp16"}}, "unknown_variant", "variant"),
    "inputs not a list": (lambda c: {"inputs": {"age": 1}}, "invalid_request", "inputs"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_over_rest(server: PredictorServer, champion: TrainedBundle, case: str) -> None:
    build, reason, names = BAD_INPUT[case]
    before = server.metric("creditmodel_request_errors_total", reason=reason)
    status, body = post(server, build(champion))
    assert status == 400, body
    expected_name = {
        "num": numeric(champion),
        "cat": categorical(champion),
        0: champion.bundle.schema.features[0].name,
    }.get(names, names)
    assert f"'{expected_name}'" in body["error"] or expected_name in body["error"], body
    assert server.metric("creditmodel_request_errors_total", reason=reason) == before + 1
    # ... and the server keeps serving.
    status, _ = post(server, {"inputs": champion.v2_inputs(1)})
    assert status == 200


def test_non_json_body(server: PredictorServer) -> None:
    status, body = post(server, b'{"inputs": [')
    assert status == 400
    assert "not valid JSON" in body["error"]
    assert server.metric("creditmodel_request_errors_total", reason="invalid_json") >= 1


def test_body_over_the_size_limit(server: PredictorServer) -> None:
    """Refused on the declared length, before the body is read (a raw socket: an HTTP client
    that insists on sending the whole body first would see the connection close under it)."""
    head = (
        f"POST /v2/models/demo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as connection:
        connection.sendall(head.encode() + b'{"inputs": [')
        response = b""
        while b"limit of" not in response and (chunk := connection.recv(65536)):
            response += chunk
    status_line, _, rest = response.decode().partition("\r\n")
    assert status_line.startswith("HTTP/1.1 413"), rest
    assert f"limit of {MAX_BODY}" in rest
    assert server.metric("creditmodel_request_errors_total", reason="body_too_large") >= 1


def test_unknown_model_name(server: PredictorServer, champion: TrainedBundle) -> None:
    status, body = post(
        server, {"inputs": champion.v2_inputs(1)}, f"{server.url}/v2/models/nope/infer"
    )
    assert status == 404
    assert "'nope'" in body["error"]


@pytest.mark.parametrize(
    "case", ["missing input", "wrong shape", "NaN", "unknown category", "unknown variant"]
)
async def test_bad_input_over_grpc(
    server: PredictorServer, champion: TrainedBundle, case: str
) -> None:
    build, _, names = BAD_INPUT[case]
    document = build(champion)
    inputs = [
        InferInput(i["name"], i["shape"], i["datatype"], i["data"]) for i in document["inputs"]
    ]
    request = InferRequest("demo", inputs, parameters=document.get("parameters"))
    client = InferenceGRPCClient(server.grpc_target, retries=0)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.infer(request)
    finally:
        await client.close()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    expected_name = {
        "num": numeric(champion),
        "cat": categorical(champion),
        0: champion.bundle.schema.features[0].name,
    }.get(names, names)
    assert expected_name in (caught.value.details() or "")


def test_errors_over_tritonclient_grpc(server: PredictorServer, champion: TrainedBundle) -> None:
    unknown = triton_grpc_infer(server, "nope", {"inputs": champion.v2_inputs(1)})
    assert unknown["status"] == "StatusCode.NOT_FOUND"
    bad = triton_grpc_infer(
        server, "demo", {"inputs": mutate(champion, categorical(champion), data=["castle"] * 2)}
    )
    assert bad["status"] == "StatusCode.INVALID_ARGUMENT"
    assert categorical(champion) in bad["message"]


# --- refusing a bad bundle ---------------------------------------------------------------------------


def test_a_tampered_bundle_is_refused_and_never_ready(
    champion: TrainedBundle, tmp_path: Path
) -> None:
    tampered = tmp_path / "bundle"
    shutil.copytree(champion.uri, tampered)
    model = tampered / MODEL_INT8
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    process = ManagedProcess(
        "tampered",
        [SCRIPT, "--model_name", "demo", "--model_dir", str(tampered),
         "--http_port", str(free_port()), "--grpc_port", str(free_port())],
        tmp_path,
    )  # fmt: skip
    try:
        assert process.proc.wait(timeout=60) == 2
    finally:
        process.stop()
    log = process.log_path.read_text()
    assert "refusing to serve" in log
    assert "checksum mismatch" in log
    assert MODEL_INT8 in log
    assert "Uvicorn running" not in log


def test_a_grpc_message_over_the_body_limit_is_resource_exhausted(
    server: PredictorServer, champion: TrainedBundle
) -> None:
    """--max_body_bytes bounded REST bodies only: a ModelInfer stopped at KServe's own 8 MiB."""
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="demo", raw_input_contents=[b"\0" * MAX_BODY])
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.ModelReady(pb.ModelReadyRequest(name="demo"), timeout=30).ready
