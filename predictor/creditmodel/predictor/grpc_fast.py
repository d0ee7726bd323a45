"""The fast V2 gRPC ModelInfer, answered inside KServe's own gRPC servicer.

Why (profiled, README "Predictor"): for a single-row request KServe's ModelInfer spends most of
its time around the model rather than in it: `InferRequest.from_grpc` copies every input into an
InferInput, `Model.__call__` times preprocess/predict/postprocess into three prometheus
histograms, our predict then turns the InferInputs into Tensors, and `InferResponse.to_grpc`
rebuilds the outputs element by element; BYTES inputs also arrive as bytes, which sends every
request down the validator's careful per-input path. `FastInferenceServicer` is KServe's
InferenceServicer (GRPCServer builds it by its module-global name, which `install` points here)
with ModelInfer answered straight from the protobuf for the models installed here: typed contents
(lists) or raw bytes (numpy), BYTES as str -> ScoringService -> protobuf typed or raw contents. Every other RPC,
and ModelInfer for any other model name (NOT_FOUND), is KServe's; errors are KServe's exceptions,
so KServe's interceptor maps them to the same gRPC status codes as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kserve.logging import logger as kserve_log
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.interceptors import LoggingInterceptor
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import to_http_parameters
from kserve.utils.utils import to_headers

from creditmodel.predictor.infer_types import (
    RAW_DTYPES,
    bytes_contents,
    from_raw,
    kserve_infer,
    strings,
)
from creditmodel.predictor.service import Prediction, ScoringService, new_request_id
from creditmodel.predictor.validation import Tensor

_SERVICES: dict[str, ScoringService] = {}

# V2 datatype -> InferTensorContents field (KServe's GRPC_CONTENT_DATATYPE_MAPPINGS).
_CONTENTS: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def decode_inputs(request: Any) -> list[Tensor]:
    """The request's inputs as Tensors: typed contents as a list (`[:]`, the cheapest copy out
    of protobuf for the short fields of single rows), BYTES as strings; raw_input_contents
    (tritonclient) pair with inputs by position, as KServe pairs them. A datatype without
    typed contents (FP16, unknown) gives no data: the validator refuses it by name, datatype
    before data."""
    raws = request.raw_input_contents
    if raws:
        return [
            Tensor(t.name, t.datatype, t.shape[:], from_raw(t.name, t.datatype, raw))
            for t, raw in zip(request.inputs, raws, strict=True)
        ]
    tensors = []
    for tensor in request.inputs:
        datatype = tensor.datatype
        if datatype == "BYTES":
            data: Any = strings(tensor.contents.bytes_contents[:])
        else:
            field = _CONTENTS.get(datatype)
            data = getattr(tensor.contents, field)[:] if field is not None else []
        tensors.append(Tensor(tensor.name, datatype, tensor.shape[:], data))
    return tensors


def encode_response(prediction: Prediction, raw: bool) -> Any:
    """The ModelInferResponse KServe's `InferResponse.to_grpc` builds for the same prediction:
    raw_output_contents (with each output's `binary_data_size`) when the client sent raw inputs,
    typed contents otherwise."""
    outputs = []
    raw_contents = []
    for name, datatype, shape, values in prediction.tensors():
        tensor = pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=shape)
        if raw:
            data = (
                bytes_contents(values)
                if datatype == "BYTES"
                else values.astype(RAW_DTYPES[datatype], copy=False).tobytes()
            )
            tensor.parameters["binary_data_size"].int64_param = len(data)
            raw_contents.append(data)
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(
                [str(v).encode() for v in values.reshape(-1).tolist()]
            )
        else:
            getattr(tensor.contents, _CONTENTS[datatype]).extend(values.reshape(-1).tolist())
        outputs.append(tensor)
    response = pb.ModelInferResponse(
        model_name=prediction.model_name,
        model_version=prediction.version,
        id=prediction.request_id,
        outputs=outputs,
        raw_output_contents=raw_contents,
    )
    response.parameters["variant"].string_param = prediction.variant
    return response


def _declared_rows(request: Any) -> int:
    """The row count the first input declares (a hint for where to decode; validation checks)."""
    for tensor in request.inputs:
        return int(tensor.shape[0]) if tensor.shape else 0
    return 0


async def model_infer(service: ScoringService, request: Any, context: Any) -> Any:
    """One ModelInfer for `service`; refusals raise KServe's InvalidInput (INVALID_ARGUMENT)."""
    started = time.perf_counter()
    request_id = request.id or to_headers(context).get("x-request-id") or new_request_id()
    rows = _declared_rows(request)
    prediction = await kserve_infer(
        service,
        request.model_name,
        request_id,
        lambda: decode_inputs(request),
        to_http_parameters(request.parameters) if request.parameters else None,
        [o.name for o in request.outputs] or None,
        rows,
    )
    raw = bool(request.raw_input_contents)
    if rows > service.settings.inline_rows:  # milliseconds of encoding: off the event loop
        response = await asyncio.to_thread(encode_response, prediction, raw)
    else:
        response = encode_response(prediction, raw)
    service.done(prediction, started)
    return response


class FastInferenceServicer(InferenceServicer):  # type: ignore[misc]
    """KServe's servicer; ModelInfer for an installed model that KServe still has registered
    (not unloaded through the repository extension) takes the fast path."""

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's name)
        service = _SERVICES.get(request.model_name)
        if service is None or self._data_plane.model_registry.get_model(request.model_name) is None:
            return await super().ModelInfer(request, context)
        self.validate_grpc_request(request)
        return await model_infer(service, request, context)


class DebugLoggingInterceptor(LoggingInterceptor):  # type: ignore[misc]
    """KServe's per-RPC "grpc method: ..." line at DEBUG instead of INFO: one JSON log line per
    request costs about 20 us of CPU, and request lines are DEBUG here (REST access logs are
    off, our own per-request lines are DEBUG)."""

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        if kserve_log.isEnabledFor(logging.DEBUG):
            kserve_log.debug("grpc method: %s", handler_call_details.method)
        return await continuation(handler_call_details)


def install(service: ScoringService) -> None:
    """Serve `service` on the fast gRPC path of this process's KServe server (idempotent):
    GRPCServer.start looks its servicer and logging interceptor classes up by module-global
    name when it starts, so these two names are the hook."""
    from kserve.protocol.grpc import server

    _SERVICES[service.name] = service
    server.InferenceServicer = FastInferenceServicer
    server.LoggingInterceptor = DebugLoggingInterceptor
