"""The fast V2 REST path, answered in front of KServe's own FastAPI app, plus a
multiprocess-aware `/metrics`.

Why (profiled, README "Predictor"): KServe's generic path parses the body into pydantic models,
builds InferRequest/InferInput objects, converts them back into numpy and serialises the response
through pydantic again; and every request, even one routed to a custom FastAPI route, pays
Starlette routing plus KServe's timing middleware (two getrusage calls and a route scan). For a
model that runs in tens of microseconds that is where the time goes. `FastPathApp` wraps KServe's
app object (`kserve.model_server:app`, which KServe's ModelServer loads into uvicorn by name):
POST /v2/models/{name}[/versions/{v}]/infer and GET /metrics are answered here, bytes -> orjson ->
numpy -> onnxruntime -> orjson -> bytes through the same ScoringService the kserve.Model uses;
everything else (health, metadata, repository, the binary tensor extension's parser) is KServe's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from creditmodel.predictor.codec import (
    DecodedRequest,
    decode_request,
    encode_error,
    encode_response,
)
from creditmodel.predictor.errors import RequestError
from creditmodel.predictor.service import InferenceRequest, ScoringService, new_request_id

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_SERVICES: dict[str, ScoringService] = {}
_JSON = (b"content-type", b"application/json")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _infer_target(scope: Scope) -> str | None:
    """The model name when this is a V2 infer call, else None."""
    if scope["method"] != "POST":
        return None
    parts = scope["path"].split("/")
    # ['', 'v2', 'models', NAME, 'infer'] or ['', 'v2', 'models', NAME, 'versions', V, 'infer']
    if parts[-1] != "infer" or parts[1:3] != ["v2", "models"]:
        return None
    if len(parts) == 5 or (len(parts) == 7 and parts[4] == "versions"):
        return str(parts[3])
    return None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            "body_too_large", f"request body of {declared} bytes exceeds the limit of {limit}"
        )
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > limit:
            raise RequestError("body_too_large", f"request body exceeds the limit of {limit} bytes")
    return body


def _decode_binary(body: bytes, json_length: str, model_name: str) -> DecodedRequest:
    """The binary tensor extension (tritonclient's default): KServe's parser."""
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


async def _respond(send: Send, status: int, body: bytes, request_id: str) -> None:
    headers = [
        _JSON,
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode("latin-1", "replace")),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def infer(scope: Scope, receive: Receive, send: Send, model_name: str) -> None:
    started = time.perf_counter()
    request_id = _header(scope, b"x-request-id") or ""
    service = _SERVICES.get(model_name) or next(iter(_SERVICES.values()))
    try:
        service.check_model(model_name)
        body = await _read_body(scope, receive, service.settings.max_body_bytes)
        json_length = _header(scope, b"inference-header-content-length")
        decoded = (
            _decode_binary(body, json_length, model_name) if json_length else decode_request(body)
        )
    except RequestError as error:
        request_id = request_id or new_request_id()
        service.refuse(error, request_id)
        await _respond(send, error.http_status, encode_error(error.message), request_id)
        return
    request_id = request_id or decoded.request_id or new_request_id()
    try:
        prediction = await service.infer(
            InferenceRequest(
                model_name, decoded.tensors, request_id, decoded.parameters, decoded.outputs
            )
        )
    except RequestError as error:
        await _respond(send, error.http_status, encode_error(error.message), request_id)
        return
    await _respond(send, 200, encode_response(prediction), request_id)
    service.done(prediction, started)


async def metrics(scope: Scope, send: Send) -> None:
    service = next(iter(_SERVICES.values()))
    content, content_type = service.telemetry.exposition(_header(scope, b"accept"))
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(content)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


class FastPathApp:
    """KServe's ASGI app with our two hot paths answered first; every attribute (add_middleware,
    include_router, ...) is the wrapped app's, so KServe's server sets it up as usual."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _SERVICES:
            model_name = _infer_target(scope)
            if model_name is not None:
                await infer(scope, receive, send, model_name)
                return
            if scope["path"] == "/metrics" and scope["method"] == "GET":
                await metrics(scope, send)
                return
        await self.app(scope, receive, send)


def install(service: ScoringService) -> None:
    """Serve `service` on the fast path of this process's KServe app (idempotent)."""
    from kserve import model_server

    _SERVICES[service.name] = service
    if not isinstance(model_server.app, FastPathApp):
        model_server.app = FastPathApp(model_server.app)
