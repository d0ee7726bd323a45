"""The fast gRPC ModelInfer (grpc_fast.py) against KServe's own path for the same model.

In process: KServe's stock InferenceServicer (from_grpc -> DataPlane -> Model.predict -> to_grpc)
and FastInferenceServicer over one DataPlane answer the same ModelInferRequests with equal
protobuf (typed contents, raw contents, output subsets, variants, the A/B key) and refuse the
same bad inputs with the same message; everything that is not ModelInfer for our model falls
through to KServe. Over the wire: a real predictor process answers typed requests in typed
contents and raw requests in raw_output_contents, keeps KServe's other RPCs and status codes,
and no longer writes an INFO line per RPC."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from kserve.errors import InvalidInput, ModelNotFound
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from creditmodel.predictor import grpc_fast
from creditmodel.predictor.grpc_fast import FastInferenceServicer
from creditmodel.predictor.model import CreditScoringModel
from creditmodel.predictor.serving import HonestDataPlane
from creditmodel.predictor.settings import PredictorSettings
from tests.predictor.conftest import TrainedBundle
from tests.predictor.server import PredictorServer, predictor_server
from tests.predictor.test_server import categorical, mutate, numeric

ROWS = 3


@dataclass(frozen=True)
class Metadatum:
    key: str
    value: str


class Context:
    """The part of grpc's ServicerContext KServe's servicer reads."""

    def __init__(self, **metadata: str) -> None:
        self.metadata = tuple(Metadatum(k, v) for k, v in metadata.items())

    def invocation_metadata(self) -> tuple[Metadatum, ...]:
        return self.metadata


def raw_bytes(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def raw_of(spec: dict[str, Any]) -> bytes:
    if spec["datatype"] == "BYTES":
        return raw_bytes([str(v).encode() for v in spec["data"]])
    dtype = {"FP32": "<f4", "INT64": "<i8", "FP64": "<f8"}[spec["datatype"]]
    return np.asarray(spec["data"], dtype=dtype).tobytes()


def infer_request(
    inputs: list[dict[str, Any]],
    *,
    raw: bool = False,
    model: str = "demo",
    request_id: str = "req-1",
    parameters: dict[str, str] | None = None,
    outputs: tuple[str, ...] = (),
) -> pb.ModelInferRequest:
    """A ModelInferRequest from V2 JSON-style input specs, in typed or raw contents."""
    tensors = []
    for spec in inputs:
        tensor = pb.ModelInferRequest.InferInputTensor(
            name=spec["name"], datatype=spec["datatype"], shape=spec["shape"]
        )
        if not raw:
            data = spec["data"]
            if spec["datatype"] == "BYTES":
                tensor.contents.bytes_contents.extend(
                    v if isinstance(v, bytes) else str(v).encode() for v in data
                )
            else:
                field = {"FP32": "fp32_contents", "INT64": "int64_contents"}.get(
                    spec["datatype"], "fp64_contents"
                )
                getattr(tensor.contents, field).extend(data)
        tensors.append(tensor)
    request = pb.ModelInferRequest(
        model_name=model,
        id=request_id,
        inputs=tensors,
        raw_input_contents=[raw_of(s) for s in inputs] if raw else [],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs],
    )
    for key, value in (parameters or {}).items():
        request.parameters[key].string_param = value
    return request


@dataclass
class Servicers:
    stock: InferenceServicer
    fast: FastInferenceServicer
    model: CreditScoringModel


@pytest.fixture(scope="module")
def servicers(champion: TrainedBundle) -> Servicers:
    settings = PredictorSettings(
        model_name="demo", model_dir=champion.uri, ab_percent=50, inline_rows=256
    )
    model = CreditScoringModel(settings)
    model.load()
    repository = ModelRepository()
    repository.update(model)
    plane = DataPlane(model_registry=repository)
    extension = ModelRepositoryExtension(repository)
    return Servicers(
        InferenceServicer(plane, extension), FastInferenceServicer(plane, extension), model
    )


def same_refusal(results: list[Any], error: type[Exception]) -> str:
    """Both paths raised `error` with the same message; the message."""
    stock, fast = results
    assert isinstance(fast, error), fast
    assert isinstance(stock, error), stock
    message = str(getattr(fast, "reason", ""))
    assert message == getattr(stock, "reason", None)
    return message


async def both(servicers: Servicers, request: pb.ModelInferRequest, **metadata: str) -> Any:
    """(stock response, fast response), or the exception each raised."""
    results = []
    for servicer in (servicers.stock, servicers.fast):
        try:
            results.append(await servicer.ModelInfer(request, Context(**metadata)))
        except Exception as error:  # compared below
            results.append(error)
    return results


def as_numpy(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Outputs by name from typed or raw contents."""
    result: dict[str, np.ndarray] = {}
    for index, output in enumerate(response.outputs):
        if response.raw_output_contents:
            raw = response.raw_output_contents[index]
            if output.datatype == "BYTES":
                values, offset = [], 0
                while offset < len(raw):
                    (length,) = struct.unpack_from("<I", raw, offset)
                    values.append(raw[offset + 4 : offset + 4 + length].decode())
                    offset += 4 + length
                result[output.name] = np.asarray(values, dtype=object)
            else:
                dtype = {"FP32": "<f4", "INT32": "<i4"}[output.datatype]
                result[output.name] = np.frombuffer(raw, dtype=dtype)
        elif output.datatype == "BYTES":
            result[output.name] = np.asarray(
                [v.decode() for v in output.contents.bytes_contents], dtype=object
            )
        elif output.datatype == "FP32":
            result[output.name] = np.asarray(output.contents.fp32_contents, dtype=np.float32)
        else:
            result[output.name] = np.asarray(output.contents.int_contents, dtype=np.int32)
    return {name: values.reshape(-1) for name, values in result.items()}


# --- same answers as KServe's path ----------------------------------------------------------------


SAME: dict[str, dict[str, Any]] = {
    "typed": {},
    "raw": {"raw": True},
    "score only": {"outputs": ("score",)},
    "raw, two outputs": {"raw": True, "outputs": ("reason_codes", "probability")},
    "fp32 variant": {"parameters": {"variant": "fp32"}},
    "A/B key": {"parameters": {"applicant_key": "applicant-7"}},
    "A/B key, other side": {"parameters": {"applicant_key": "applicant-8"}, "raw": True},
}


@pytest.mark.unit
@pytest.mark.parametrize("case", list(SAME))
async def test_fast_path_answers_as_kserve_does(
    servicers: Servicers, champion: TrainedBundle, case: str
) -> None:
    request = infer_request(champion.v2_inputs(ROWS), **SAME[case])
    stock, fast = await both(servicers, request)
    assert isinstance(fast, pb.ModelInferResponse), fast
    assert fast == stock
    assert fast.SerializeToString(deterministic=True) == stock.SerializeToString(deterministic=True)
    assert bool(fast.raw_output_contents) == bool(SAME[case].get("raw"))
    assert fast.parameters["variant"].string_param in ("int8", "fp32")


@pytest.mark.unit
@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
async def test_large_batches_are_decoded_and_encoded_off_the_event_loop(
    servicers: Servicers, champion: TrainedBundle, monkeypatch: pytest.MonkeyPatch, raw: bool
) -> None:
    threads: dict[str, int] = {}

    def recorded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            threads[name] = threading.get_ident()
            return function(*args)

        return run

    for name in ("decode_inputs", "encode_response"):
        monkeypatch.setattr(grpc_fast, name, recorded(name, getattr(grpc_fast, name)))
    request = infer_request(champion.v2_inputs(300), raw=raw)  # over inline_rows (256 here)
    stock, fast = await both(servicers, request)
    assert fast == stock
    assert threading.get_ident() not in threads.values()
    assert set(threads) == {"decode_inputs", "encode_response"}


@pytest.mark.unit
async def test_a_b_keys_reach_both_variants(servicers: Servicers, champion: TrainedBundle) -> None:
    variants = set()
    for key in range(20):
        request = infer_request(
            champion.v2_inputs(1), parameters={"applicant_key": f"applicant-{key}"}
        )
        response = await servicers.fast.ModelInfer(request, Context())
        variants.add(response.parameters["variant"].string_param)
    assert variants == {"int8", "fp32"}


@pytest.mark.unit
async def test_request_id_from_metadata_or_generated(
    servicers: Servicers, champion: TrainedBundle
) -> None:
    request = infer_request(champion.v2_inputs(1), request_id="")
    response = await servicers.fast.ModelInfer(request, Context(**{"x-request-id": "abc"}))
    assert response.id == "abc"
    generated = await servicers.fast.ModelInfer(request, Context())
    assert len(generated.id) == 32


@pytest.mark.unit
async def test_typed_and_raw_outputs_carry_the_same_values(
    servicers: Servicers, champion: TrainedBundle
) -> None:
    typed = await servicers.fast.ModelInfer(infer_request(champion.v2_inputs(5)), Context())
    raw = await servicers.fast.ModelInfer(infer_request(champion.v2_inputs(5), raw=True), Context())
    assert not typed.raw_output_contents
    assert [o.HasField("contents") for o in raw.outputs] == [False, False, False]
    assert [o.parameters["binary_data_size"].int64_param for o in raw.outputs] == [
        len(r) for r in raw.raw_output_contents
    ]
    got_typed, got_raw = as_numpy(typed), as_numpy(raw)
    for name in ("probability", "score", "reason_codes"):
        np.testing.assert_array_equal(got_typed[name], got_raw[name])
    assert [list(o.shape) for o in typed.outputs] == [[5], [5], [5, 4]]


# --- the same refusals ----------------------------------------------------------------------------


# case -> (request builder, the input or parameter the message must name)
BAD: dict[str, tuple[Callable[[TrainedBundle], pb.ModelInferRequest], Any]] = {
    "missing input": (lambda c: infer_request(c.v2_inputs(2)[1:]), 0),
    "unknown input": (lambda c: infer_request([*c.v2_inputs(2), {"name": "colour", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]), "colour"),
    "wrong datatype": (lambda c: infer_request(mutate(c, numeric(c), datatype="FP64")), "num"),
    "wrong shape": (lambda c: infer_request(mutate(c, numeric(c), shape=[1, 2])), "num"),
    "mismatched lengths": (lambda c: infer_request(mutate(c, numeric(c), shape=[3, 1], data=[1.0, 2.0, 3.0])), "num"),
    "data shorter than shape": (lambda c: infer_request(mutate(c, numeric(c), data=[1.0])), "num"),
    "NaN": (lambda c: infer_request(mutate(c, numeric(c), data=[float("nan"), 1.0])), "num"),
    "Infinity, raw": (lambda c: infer_request(mutate(c, numeric(c), data=[1.0, float("inf")]), raw=True), "num"),
    "out of range": (lambda c: infer_request(mutate(c, numeric(c), data=[-5.0, 1.0])), "num"),
    "unknown category": (lambda c: infer_request(mutate(c, categorical(c), data=["castle", "castle"])), "cat"),
    "unknown category, raw": (lambda c: infer_request(mutate(c, categorical(c), data=["castle", "castle"]), raw=True), "cat"),
    "invalid UTF-8": (lambda c: infer_request(mutate(c, categorical(c), data=[b"\xff", b"\xfe"])), "cat"),
    "empty batch": (lambda c: infer_request([dict(i, shape=[0, 1], data=[]) for i in c.v2_inputs(1)]), 0),
    "unknown variant": (lambda c: infer_request(c.v2_inputs(1), parameters={"variant": "fp16"}), "variant"),
    "unknown output": (lambda c: infer_request(c.v2_inputs(1), outputs=("colour",)), "colour"),
}  # fmt: skip


def _named(champion: TrainedBundle, names: Any) -> str:
    return str(
        {
            "num": numeric(champion),
            "cat": categorical(champion),
            0: champion.bundle.schema.features[0].name,
        }.get(names, names)
    )


@pytest.mark.unit
@pytest.mark.parametrize("case", list(BAD))
async def test_bad_input_is_refused_as_kserve_refuses_it(
    servicers: Servicers, champion: TrainedBundle, case: str
) -> None:
    build, names = BAD[case]
    message = same_refusal(await both(servicers, build(champion)), InvalidInput)
    assert _named(champion, names) in message


def _raw_request(champion: TrainedBundle, name: str, raw: bytes) -> pb.ModelInferRequest:
    request = infer_request(champion.v2_inputs(2), raw=True)
    index = [t.name for t in request.inputs].index(name)
    request.raw_input_contents[index] = raw
    return request


@pytest.mark.unit
async def test_malformed_raw_contents_name_the_input(
    servicers: Servicers, champion: TrainedBundle
) -> None:
    """KServe's own decoder answers a truncated BYTES tensor with INTERNAL (struct.error); here
    both paths refuse it as INVALID_ARGUMENT naming the input."""
    category, number = categorical(champion), numeric(champion)
    for name, raw in (
        (category, struct.pack("<I", 10) + b"abc"),
        (category, b"\x01\x00"),
        (number, b"\x00" * 7),
    ):
        message = same_refusal(
            await both(servicers, _raw_request(champion, name, raw)), InvalidInput
        )
        assert f"input {name!r}: raw contents" in message


@pytest.mark.unit
async def test_a_datatype_without_contents_is_refused_by_name(
    servicers: Servicers, champion: TrainedBundle
) -> None:
    """KServe's from_grpc says only "invalid content type"; the fast path names the input."""
    number = numeric(champion)
    request = infer_request(mutate(champion, number, datatype="FP16", data=[]))
    with pytest.raises(InvalidInput) as caught:
        await servicers.fast.ModelInfer(request, Context())
    assert number in caught.value.reason


@pytest.mark.unit
@pytest.mark.parametrize("wrong", ["int64_contents", "fp64_contents", "bytes_contents"])
async def test_values_in_another_contents_field_are_refused_naming_both(
    servicers: Servicers, champion: TrainedBundle, wrong: str
) -> None:
    """Before: "shape says 1 values, data holds 0", as if the client had sent nothing."""
    request = infer_request(champion.v2_inputs(1))
    for tensor in request.inputs:
        if tensor.name == (
            categorical(champion) if wrong != "bytes_contents" else numeric(champion)
        ):
            break
    expected = (
        "bytes_contents" if tensor.datatype == "BYTES" else f"{tensor.datatype.lower()}_contents"
    )
    tensor.contents.Clear()
    value = {"int64_contents": 7, "fp64_contents": 7.5, "bytes_contents": b"7"}[wrong]
    getattr(tensor.contents, wrong).append(value)
    with pytest.raises(InvalidInput) as caught:
        await servicers.fast.ModelInfer(request, Context())
    assert caught.value.reason == (
        f"input {tensor.name!r}: datatype {tensor.datatype!r} takes its values in"
        f" contents.{expected}, but they came in contents.{wrong}"
    )


@pytest.mark.unit
async def test_raw_and_typed_mixed_is_kserves_refusal(
    servicers: Servicers, champion: TrainedBundle
) -> None:
    request = infer_request(champion.v2_inputs(1), raw=True)
    del request.raw_input_contents[-1]
    assert "raw input contents" in same_refusal(await both(servicers, request), InvalidInput)


# --- everything else is KServe's -----------------------------------------------------------------


@pytest.mark.unit
async def test_unknown_model_falls_through_to_not_found(
    servicers: Servicers, champion: TrainedBundle
) -> None:
    request = infer_request(champion.v2_inputs(1), model="nope")
    assert "nope" in same_refusal(await both(servicers, request), ModelNotFound)


@pytest.mark.unit
async def test_a_model_kserve_no_longer_serves_falls_through(
    servicers: Servicers, champion: TrainedBundle
) -> None:
    """Installed here but not in this DataPlane's repository (as after an unload): KServe's."""
    repository = ModelRepository()
    fast = FastInferenceServicer(DataPlane(repository), ModelRepositoryExtension(repository))
    with pytest.raises(ModelNotFound):
        await fast.ModelInfer(infer_request(champion.v2_inputs(1)), Context())


@pytest.mark.unit
async def test_other_rpcs_are_kserves(servicers: Servicers) -> None:
    context = Context()
    for method, request in (
        ("ServerReady", pb.ServerReadyRequest()),
        ("ServerLive", pb.ServerLiveRequest()),
        ("ModelReady", pb.ModelReadyRequest(name="demo")),
    ):
        stock = await getattr(servicers.stock, method)(request, context)
        fast = await getattr(servicers.fast, method)(request, context)
        assert fast == stock, method


@pytest.mark.unit
async def test_model_metadata_names_the_version_and_the_platform(servicers: Servicers) -> None:
    """KServe's ModelMetadata leaves `versions` out and `platform` empty; ours fills both (the
    served bundle's version; Triton's name for an ONNX Runtime model) and keeps the rest."""
    repository = ModelRepository()
    repository.update(servicers.model)
    plane = HonestDataPlane(model_registry=repository)
    extension = ModelRepositoryExtension(repository)
    request, context = pb.ModelMetadataRequest(name="demo"), Context()
    stock = await InferenceServicer(DataPlane(repository), extension).ModelMetadata(
        request, context
    )
    ours = await FastInferenceServicer(plane, extension).ModelMetadata(request, context)
    assert (stock.versions, stock.platform) == ([], "")
    assert (ours.versions, ours.platform) == (["v1"], "onnxruntime_onnx")
    assert (ours.name, ours.inputs, ours.outputs) == (stock.name, stock.inputs, stock.outputs)
    assert [o.name for o in ours.outputs] == ["probability", "score", "reason_codes"]


# --- over the wire --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(
    champion: TrainedBundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PredictorServer]:
    with predictor_server(champion.uri, tmp_path_factory.mktemp("grpc-logs")) as running:
        yield running


def call(server: PredictorServer, method: str, request: Any) -> Any:
    async def run() -> Any:
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            return await getattr(pb_grpc.GRPCInferenceServiceStub(channel), method)(request)

    return asyncio.run(run())


@pytest.mark.integration
def test_a_real_server_answers_typed_and_raw(
    server: PredictorServer, champion: TrainedBundle
) -> None:
    typed = call(server, "ModelInfer", infer_request(champion.v2_inputs(4)))
    raw = call(server, "ModelInfer", infer_request(champion.v2_inputs(4), raw=True))
    assert typed.model_name == raw.model_name == "demo"
    assert typed.id == "req-1"
    assert typed.parameters["variant"].string_param == "int8"
    assert not typed.raw_output_contents
    assert len(raw.raw_output_contents) == 3
    got_typed, got_raw = as_numpy(typed), as_numpy(raw)
    for name in ("probability", "score", "reason_codes"):
        np.testing.assert_array_equal(got_typed[name], got_raw[name])


@pytest.mark.integration
def test_a_real_server_keeps_kserves_rpcs_and_status_codes(
    server: PredictorServer, champion: TrainedBundle, tmp_path: Path
) -> None:
    assert call(server, "ServerReady", pb.ServerReadyRequest()).ready
    assert call(server, "ModelReady", pb.ModelReadyRequest(name="demo")).ready
    metadata = call(server, "ModelMetadata", pb.ModelMetadataRequest(name="demo"))
    assert [i.name for i in metadata.inputs] == [f.name for f in champion.bundle.schema.features]
    assert (metadata.versions, metadata.platform) == (["v1"], "onnxruntime_onnx")
    for request, code, named in (
        (infer_request(champion.v2_inputs(1), model="nope"), grpc.StatusCode.NOT_FOUND, "nope"),
        (
            _raw_request(champion, categorical(champion), b"\x01\x00"),
            grpc.StatusCode.INVALID_ARGUMENT,
            categorical(champion),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            call(server, "ModelInfer", request)
        assert caught.value.code() == code
        assert named in (caught.value.details() or "")
    # A version: the served one answers; another is NOT_FOUND naming both, never scored.
    served = infer_request(champion.v2_inputs(1))
    served.model_version = "v1"
    assert call(server, "ModelInfer", served).model_version == "v1"
    assert call(server, "ModelReady", pb.ModelReadyRequest(name="demo", version="v1")).ready
    other = infer_request(champion.v2_inputs(1))
    other.model_version = "v2"
    for method, request in (
        ("ModelInfer", other),
        ("ModelReady", pb.ModelReadyRequest(name="demo", version="v2")),
        ("ModelMetadata", pb.ModelMetadataRequest(name="demo", version="v2")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            call(server, method, request)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND, method
        assert caught.value.details() == (
            "model 'demo' version 'v2' is not served here (it serves version 'v1')"
        ), method
    # KServe's per-RPC INFO line is DEBUG now; the server still logs its refusals.
    log = server.process.log_path.read_text()
    assert "grpc method:" not in log
    assert "request refused" in log
