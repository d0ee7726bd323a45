"""The fast V2 REST route, registered on KServe's own FastAPI app ahead of KServe's generic
`/v2/models/{name}/infer` route, plus a multiprocess-aware `/metrics`.

Why (profiled, see README "Predictor"): KServe's generic path parses the body into pydantic
models, builds InferRequest/InferInput objects, converts them back into numpy, and serialises the
response through pydantic again; for a model that runs in tens of microseconds that is where the
milliseconds go. This route goes bytes -> orjson -> numpy -> onnxruntime -> orjson -> bytes via the
same ScoringService the kserve.Model uses, so behaviour (validation, variants, metrics) is
identical. Requests with the binary tensor extension fall back to KServe's InferRequest parser."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from creditmodel.predictor.codec import (
    DecodedRequest,
    decode_request,
    encode_error,
    encode_response,
)
from creditmodel.predictor.errors import RequestError
from creditmodel.predictor.service import InferenceRequest, ScoringService, new_request_id

_SERVICES: dict[str, ScoringService] = {}
_BINARY_HEADER = "inference-header-content-length"


def _error(error: RequestError, request_id: str) -> Response:
    return Response(
        encode_error(error.message),
        status_code=error.http_status,
        media_type="application/json",
        headers={"x-request-id": request_id},
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            "body_too_large", f"request body of {declared} bytes exceeds the limit of {limit}"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError("body_too_large", f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_binary(body: bytes, json_length: str, model_name: str) -> DecodedRequest:
    from kserve.protocol.infer_type import InferRequest

    from creditmodel.predictor.infer_types import tensor_from_infer_input

    try:
        infer_request = InferRequest.from_bytes(body, int(json_length), model_name)
    except Exception as exc:  # KServe raises several types for malformed binary bodies
        raise RequestError("invalid_request", f"malformed binary tensor request: {exc}") from None
    outputs = infer_request.request_outputs
    return DecodedRequest(
        tensors=[tensor_from_infer_input(i) for i in infer_request.inputs],
        parameters=dict(infer_request.parameters) if infer_request.parameters else None,
        request_id=infer_request.id or None,
        outputs=[o.name for o in outputs] if outputs else None,
    )


async def infer(request: Request) -> Response:
    started = time.perf_counter()
    model_name: str = request.path_params["model_name"]
    request_id = request.headers.get("x-request-id") or ""
    service = _SERVICES.get(model_name) or next(iter(_SERVICES.values()))
    try:
        service.check_model(model_name)
        body = await _read_body(request, service.settings.max_body_bytes)
        json_length = request.headers.get(_BINARY_HEADER)
        decoded = (
            _decode_binary(body, json_length, model_name) if json_length else decode_request(body)
        )
    except RequestError as error:
        request_id = request_id or new_request_id()
        service.refuse(error, request_id)
        return _error(error, request_id)
    request_id = request_id or decoded.request_id or new_request_id()
    try:
        prediction = await service.infer(
            InferenceRequest(
                model_name, decoded.tensors, request_id, decoded.parameters, decoded.outputs
            )
        )
    except RequestError as error:
        return _error(error, request_id)
    content = encode_response(prediction)
    service.done(prediction, started)
    return Response(content, media_type="application/json", headers={"x-request-id": request_id})


async def metrics(request: Request) -> Response:
    service = next(iter(_SERVICES.values()))
    content, content_type = service.telemetry.exposition(request.headers.get("accept"))
    return Response(content, headers={"content-type": content_type})


def install(service: ScoringService, app: Any = None) -> None:
    """Put our routes first on KServe's app (Starlette matches routes in order)."""
    if app is None:
        from kserve.model_server import app as kserve_app

        app = kserve_app
    first_install = not _SERVICES
    _SERVICES[service.name] = service
    if not first_install:
        return
    routes = [
        Route("/v2/models/{model_name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{model_name}/versions/{model_version}/infer", infer, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app.router.routes[0:0] = routes
