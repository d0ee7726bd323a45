"""Hostile input over gRPC against a real predictor process (issue 13, item 3): the repository
extension cannot unload the model, NOT_FOUND and INVALID_ARGUMENT carry bounded messages, and
bytes that are not a protobuf message are INVALID_ARGUMENT without Python class names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from tests.predictor.conftest import TrainedBundle
from tests.predictor.hostile import BOUNDED, Reference, grpc_outputs, infer_request
from tests.predictor.server import PredictorServer, predictor_server

pytestmark = pytest.mark.integration

MEGABYTE = 1_000_000


@pytest.fixture(scope="module")
def server(
    champion: TrainedBundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PredictorServer]:
    with predictor_server(champion.uri, tmp_path_factory.mktemp("hostile-grpc")) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server: PredictorServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as opened:
        yield opened


def refusal(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def test_repository_unload_and_load_are_refused_and_the_model_keeps_serving(
    channel: grpc.Channel, champion: TrainedBundle
) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    for call, request in (
        (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name="demo")),
        (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="demo")),
    ):
        error = refusal(call, request)
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "model repository extension is disabled" in (error.details() or "")
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="demo")).ready
    Reference(champion).check(grpc_outputs(stub.ModelInfer(infer_request(champion, 3))), 3)
    assert (
        "model_repository_extension"
        not in stub.ServerMetadata(pb.ServerMetadataRequest()).extensions
    )


def test_a_megabyte_model_name_is_not_found_with_a_bounded_message(
    channel: grpc.Channel, champion: TrainedBundle
) -> None:
    """Before: the 1 MB name came back in the status message, over gRPC's metadata limit, and
    the client saw RESOURCE_EXHAUSTED instead of NOT_FOUND. Every RPC quotes the name cut the
    same way (ModelReady and ModelMetadata cut it to about 240 characters)."""
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    name = "m" * MEGABYTE
    for call, request in (
        (stub.ModelInfer, infer_request(champion, 1, model_name=name)),
        (stub.ModelReady, pb.ModelReadyRequest(name=name)),
        (stub.ModelMetadata, pb.ModelMetadataRequest(name=name)),
    ):
        error = refusal(call, request)
        assert error.code() == grpc.StatusCode.NOT_FOUND, error
        assert error.details() == (
            f"Model with name {'m' * 64}…({MEGABYTE} characters) does not exist."
        )


@pytest.mark.parametrize(
    "method", ["ModelInfer", "ModelReady", "ModelMetadata", "RepositoryModelUnload"]
)
@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00garbage\x12\x99", b"\x0a\x05hello\x12"])
def test_garbage_bytes_are_invalid_argument_without_class_names(
    channel: grpc.Channel, method: str, garbage: bytes
) -> None:
    call = channel.unary_unary(
        f"/inference.GRPCInferenceService/{method}",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    error = refusal(call, garbage)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    details = error.details() or ""
    assert details == f"{method}: the request is not a valid protobuf message"


def test_bounded_ids_and_names_over_grpc(
    server: PredictorServer, channel: grpc.Channel, champion: TrainedBundle
) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    error = refusal(stub.ModelInfer, infer_request(champion, 1, id="i" * MEGABYTE))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == f"'id': {MEGABYTE} characters, longer than the limit of 128"
    metadata = (("x-request-id", "h" * 200),)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(infer_request(champion, 1, id=""), metadata=metadata, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata 'x-request-id': 200 characters" in (caught.value.details() or "")
    request = infer_request(champion, 1)
    request.inputs[0].name = "n" * MEGABYTE
    error = refusal(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.details() or "") < BOUNDED
    request = infer_request(champion, 1)
    request.inputs[0].datatype = "D" * MEGABYTE
    request.inputs[1].shape[:] = list(range(100_000))
    error = refusal(stub.ModelInfer, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.details() or "") < BOUNDED
    good = stub.ModelInfer(infer_request(champion, 2, id="a\r\nb"))
    assert good.id == "a\r\nb"
    Reference(champion).check(grpc_outputs(good), 2)
    lines = server.process.log_path.read_text().splitlines()
    assert max(len(line) for line in lines) < 2 * BOUNDED
    assert "Traceback" not in "\n".join(lines)
