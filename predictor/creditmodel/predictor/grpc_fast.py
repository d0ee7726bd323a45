"""The fast V2 gRPC ModelInfer, answered inside KServe's own gRPC servicer.

Why (profiled, README "Predictor"): for a single-row request KServe's ModelInfer spends most of
its time around the model rather than in it: `InferRequest.from_grpc` copies every input into an
InferInput, `Model.__call__` times preprocess/predict/postprocess into three prometheus
histograms, our predict then turns the InferInputs into Tensors, and `InferResponse.to_grpc`
rebuilds the outputs element by element; BYTES inputs also arrive as bytes, which sends every
request down the validator's careful per-input path. `FastInferenceServicer` is KServe's
InferenceServicer (serving.HostGRPCServer builds it in place of KServe's) with ModelInfer
answered straight from the protobuf for the models of ours KServe has registered: typed contents
(lists) or raw bytes (numpy), BYTES as str -> ScoringService -> protobuf typed or raw contents.
Every other RPC is KServe's, except the model repository extension's (RepositoryModelLoad/Unload
answer UNIMPLEMENTED: nobody may unload the served model over the API). Errors are KServe's
exceptions, so grpc_dispatch.rpc_status answers them with KServe's status codes, every message
bounded. `prepared_job` is ModelInfer's admission, decoding and validation without the scoring,
for grpc_dispatch to score the single-row calls of one wake-up together.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import to_http_parameters
from kserve.utils.utils import to_headers

from creditmodel.predictor.bounds import checked_id, show, usable_id
from creditmodel.predictor.errors import RequestError, clip
from creditmodel.predictor.infer_types import (
    RAW_DTYPES,
    bytes_contents,
    decoded,
    from_raw,
    kserve_error,
    kserve_infer,
    strings,
)
from creditmodel.predictor.service import (
    InferenceRequest,
    Job,
    Prediction,
    ScoringService,
    new_request_id,
)
from creditmodel.predictor.validation import Tensor

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
        field = _CONTENTS.get(datatype)
        if datatype == "BYTES":
            data: Any = strings(tensor.contents.bytes_contents[:])
        else:
            data = getattr(tensor.contents, field)[:] if field is not None else []
        if not data and field is not None:
            _refuse_misplaced_contents(tensor, field)
        tensors.append(Tensor(tensor.name, datatype, tensor.shape[:], data))
    return tensors


def _refuse_misplaced_contents(tensor: Any, field: str) -> None:
    """An input whose datatype's contents field is empty while another holds its values (INT64
    values in int_contents, FP32 ones in fp64_contents): refused naming both fields, where the
    validator could only say the data held no values. Only the datatype's field is ever read."""
    used = [descriptor.name for descriptor, _ in tensor.contents.ListFields()]
    if used:
        raise RequestError(
            "wrong_datatype",
            f"input {show(tensor.name)}: datatype {show(tensor.datatype)} takes its values in"
            f" contents.{field}, but they came in contents.{used[0]}",
        )


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


def declared_rows(request: Any) -> int:
    """The row count the first input declares (a hint for where to decode; validation checks)."""
    for tensor in request.inputs:
        return int(tensor.shape[0]) if tensor.shape else 0
    return 0


def _admit(service: ScoringService, request: Any, context: Any) -> str:
    """The request id, once the model name, the raw contents' layout and the id itself pass;
    a refusal is counted and logged (under the request's own id once it is known, as REST logs
    it), then raised as KServe's ModelNotFound or InvalidInput."""
    request_id = ""
    try:
        service.check_model(request.model_name, request.model_version)
        request_id = (
            checked_id(request.id, "'id'")
            or checked_id(to_headers(context).get("x-request-id"), "metadata 'x-request-id'")
            or ""
        )
        try:
            InferenceServicer.validate_grpc_request(request)
        except InvalidInput as error:
            raise RequestError("invalid_request", str(error.reason)) from None
        return request_id or new_request_id()
    except RequestError as error:
        given = usable_id(request.id) or usable_id(to_headers(context).get("x-request-id"))
        service.refuse(error, request_id or given or new_request_id())
        if error.reason == "unknown_model" and request.model_name == service.name:
            raise RefusedRpcError(grpc.StatusCode.NOT_FOUND, error.message) from None  # version
        if error.reason == "unknown_model":
            raise ModelNotFound(clip(request.model_name)) from None
        raise InvalidInput(error.message) from None


async def model_infer(service: ScoringService, request: Any, context: Any) -> Any:
    """One ModelInfer for `service`; refusals raise KServe's InvalidInput (INVALID_ARGUMENT)."""
    started = time.perf_counter()
    request_id = _admit(service, request, context)
    rows = declared_rows(request)
    try:
        prediction = await kserve_infer(
            service,
            request.model_name,
            request_id,
            lambda: decode_inputs(request),
            to_http_parameters(request.parameters) if request.parameters else None,
            [o.name for o in request.outputs] or None,
            rows,
        )
    except (InvalidInput, ModelNotFound):
        raise
    except Exception:  # counted and logged by the service; no second traceback from KServe's
        raise internal_error(request_id) from None
    raw = bool(request.raw_input_contents)
    if rows > service.settings.inline_rows:  # milliseconds of encoding: off the event loop
        response = await asyncio.to_thread(encode_response, prediction, raw)
    else:
        response = encode_response(prediction, raw)
    service.done(prediction, started)
    return response


def prepared_job(service: ScoringService, request: Any, context: Any) -> Job:
    """A ModelInfer of at most `inline_rows` rows admitted, decoded and validated as
    `model_infer` does it, without the event loop (grpc_dispatch's batched path); refusals are
    counted, logged and raised as `model_infer` raises them."""
    request_id = _admit(service, request, context)
    try:
        tensors = decoded(service, request_id, lambda: decode_inputs(request))
        parameters = to_http_parameters(request.parameters) if request.parameters else None
        outputs = [o.name for o in request.outputs] or None
        return service.prepare(
            InferenceRequest(request.model_name, tensors, request_id, parameters, outputs)
        )
    except RequestError as error:  # counted by prepare
        raise kserve_error(error, request.model_name) from None
    except (InvalidInput, ModelNotFound):
        raise
    except Exception:  # counted by prepare where it failed there
        raise internal_error(request_id) from None


def internal_error(request_id: str) -> RefusedRpcError:
    """A request this server failed to score: INTERNAL, pointing at the log (which has it)."""
    message = f"internal error scoring request {request_id!r}; the predictor's log has it"
    return RefusedRpcError(grpc.StatusCode.INTERNAL, message)


class RefusedRpcError(Exception):
    """A call refused with `code` (grpc_dispatch.rpc_status answers it): an RPC this server does
    not offer, a version not served, a request it failed to score."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_NO_REPOSITORY = (
    "the model repository extension is disabled: the model is loaded at start-up from"
    " --model_dir and cannot be loaded or unloaded over the API"
)


def served(registry: Any, name: str) -> ScoringService | None:
    """The scoring service of the model KServe has registered as `name`, if it is one of ours
    (model.CreditScoringModel, once loaded): the transports reach it through KServe's own model
    registry, which KServe hands each server, not through a module global."""
    service = getattr(registry.get_model(name), "service", None)
    return service if isinstance(service, ScoringService) else None


def any_served(registry: Any) -> ScoringService | None:
    """One of our scoring services in `registry`, to count and refuse a request for no model."""
    for name in registry.get_models():
        service = served(registry, name)
        if service is not None:
            return service
    return None


class FastInferenceServicer(InferenceServicer):  # type: ignore[misc]
    """KServe's servicer; ModelInfer for a model of ours that KServe has registered takes the
    fast path, and so does ModelInfer for a model nobody serves (refused NOT_FOUND, counted, with
    the name cut). ModelMetadata keeps the data plane's `versions`; a version other than the
    served one is NOT_FOUND in ModelInfer, ModelMetadata and ModelReady. The model repository
    extension is refused."""

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's name)
        registry = self._data_plane.model_registry
        service = served(registry, request.model_name)
        if service is None and registry.get_model(request.model_name) is None:
            service = any_served(registry)  # refuses the name, bounded
        if service is None:
            return await super().ModelInfer(request, context)
        return await model_infer(service, request, context)

    def _check_version(self, name: str, version: str) -> None:
        """A version other than the one served, of a model served here, is NOT_FOUND."""
        service = served(self._data_plane.model_registry, name)
        if service is not None:
            try:
                service.check_model(name, version)
            except RequestError as error:
                raise RefusedRpcError(grpc.StatusCode.NOT_FOUND, error.message) from None

    def _check_name(self, name: str) -> None:
        """A model nobody serves is NOT_FOUND quoting its name cut as ModelInfer and REST quote
        it (64 characters and its length); KServe's own refusal quotes it whole, which only
        the status message's bound cut."""
        if self._data_plane.model_registry.get_model(name) is None:
            raise ModelNotFound(clip(name))

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        """KServe's, for the served version only (KServe ignores the version asked for)."""
        self._check_name(request.name)
        self._check_version(request.name, request.version)
        return await super().ModelReady(request, context)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        """KServe's, with the `versions` its servicer drops (serving.HonestDataPlane fills them),
        for the served version only."""
        self._check_name(request.name)
        self._check_version(request.name, request.version)
        metadata = await self._data_plane.model_metadata(model_name=request.name)
        return pb.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata.get("versions") or [],
            platform=metadata["platform"],
            inputs=metadata["inputs"],
            outputs=metadata["outputs"],
        )

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:  # noqa: N802
        raise RefusedRpcError(grpc.StatusCode.UNIMPLEMENTED, _NO_REPOSITORY)

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:  # noqa: N802
        raise RefusedRpcError(grpc.StatusCode.UNIMPLEMENTED, _NO_REPOSITORY)
