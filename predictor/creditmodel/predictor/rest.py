"""The fast V2 REST path, answered in front of KServe's own FastAPI app, plus a
multiprocess-aware `/metrics`.

Why (profiled, README "Predictor"): KServe's generic path parses the body into pydantic models,
builds InferRequest/InferInput objects, converts them back into numpy and serialises the response
through pydantic again; and every request, even one routed to a custom FastAPI route, pays
Starlette routing plus KServe's timing middleware (two getrusage calls and a route scan). For a
model that runs in tens of microseconds that is where the time goes. `FastPathApp` wraps KServe's
app object (`kserve.model_server:app`, which KServe's ModelServer loads into uvicorn by name):
POST /v2/models/{name}[/versions/{v}]/infer and GET /metrics are answered here, bytes -> orjson ->
numpy -> onnxruntime -> orjson -> bytes through the same ScoringService the kserve.Model uses,
JSON or the binary tensor extension (codec.py). Also answered here, with a JSON 404: the V1
protocol (this predictor speaks V2 only), the model repository extension (models are loaded at
start-up from --model_dir; nobody may unload them over the API), and any /v2/models/{name}/...
for a model not served here (with the name cut, where KServe would echo it whole), and any
`/versions/{v}` path naming a version not served here (infer included: never scored by another
version). Metadata and readiness by version (KServe: 501) are KServe's unversioned answers.
Everything else (health, metadata, model list) is KServe's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from creditmodel.predictor.bounds import checked_id, header_value, nested_input, show, usable_id
from creditmodel.predictor.codec import (
    DecodedRequest,
    decode_binary_request,
    decode_request,
    encode_error,
    encode_response,
)
from creditmodel.predictor.errors import RequestError
from creditmodel.predictor.service import InferenceRequest, ScoringService, new_request_id

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_JSON = (b"content-type", b"application/json")


def _header_bytes(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    value = _header_bytes(scope, name)
    return None if value is None else value.decode("latin-1")


def _request_id_header(scope: Scope, strict: bool = True) -> str | None:
    """The x-request-id header as the text a client sent, UTF-8 as today's clients write it (a
    latin-1 reading turned "café" into "cafÃ©" and counted bytes as characters); not UTF-8 is
    refused when `strict`, else read with replacement characters (to log a refusal under)."""
    value = _header_bytes(scope, b"x-request-id")
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        if strict:
            raise RequestError(
                "invalid_request", "header 'x-request-id' is not UTF-8 text"
            ) from None
        return value.decode("utf-8", "replace")


def _infer_target(
    scope: Scope, infer_paths: dict[str, tuple[str, None]]
) -> tuple[str, str | None] | None:
    """(model name, version or None) when this is a V2 infer call, else None."""
    if scope["method"] != "POST":
        return None
    served = infer_paths.get(scope["path"])  # the common call, without splitting its path
    if served is not None:
        return served
    parts = scope["path"].split("/")
    # ['', 'v2', 'models', NAME, 'infer'] or ['', 'v2', 'models', NAME, 'versions', V, 'infer']
    if parts[-1] != "infer" or parts[1:3] != ["v2", "models"]:
        return None
    if len(parts) == 5:
        return parts[3], None
    if len(parts) == 7 and parts[4] == "versions" and parts[5]:  # `versions//infer` is no path
        return parts[3], parts[5]
    return None


def _versioned(
    scope: Scope, services: dict[str, ScoringService]
) -> tuple[ScoringService, str, str] | None:
    """(service, version, the same path without `/versions/{v}`) for GET model metadata or
    readiness of a served model by version, which KServe answers 501."""
    parts = scope["path"].split("/")
    # ['', 'v2', 'models', NAME, 'versions', V] or [..., V, 'ready']
    if scope["method"] != "GET" or len(parts) not in (6, 7) or parts[1:3] != ["v2", "models"]:
        return None
    service = services.get(parts[3])
    if (
        service is None
        or parts[4] != "versions"
        or not parts[5]
        or parts[6:] not in ([], ["ready"])
    ):
        return None
    return service, parts[5], "/".join(parts[:4] + parts[6:])


# The codings a body may carry and still be the JSON once uvicorn has undone the chunking.
_PLAIN_CODINGS = {
    b"content-encoding": {"", "identity"},
    b"transfer-encoding": {"", "identity", "chunked"},
}


def _foreign_coding(scope: Scope) -> tuple[str, str] | None:
    """(header, value) of the first Content-Encoding or Transfer-Encoding, of every one given
    (each a list), that codes the body as something other than plain bytes (gzip, br, ...)."""
    for key, value in scope["headers"]:
        plain = _PLAIN_CODINGS.get(key)
        if plain is not None:
            text = value.decode("latin-1")
            if any(coding.strip().lower() not in plain for coding in text.split(",")):
                return key.decode(), text
    return None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    foreign = _foreign_coding(scope)
    if foreign is not None:  # its bytes are not the JSON
        header, value = foreign
        raise RequestError(
            "unsupported_encoding",
            f"header {header!r}: {show(value)} is not supported; send the body uncompressed",
        )
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            "body_too_large", f"request body of {declared} bytes exceeds the limit of {limit}"
        )
    # A large body comes in chunks: joined once at the end (appending copies it every time).
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = message.get("more_body", False)
        if size > limit:
            raise RequestError("body_too_large", f"request body exceeds the limit of {limit} bytes")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _decode_binary(body: bytes, json_length: str) -> DecodedRequest:
    """The binary tensor extension (tritonclient's default)."""
    from creditmodel.predictor.infer_types import from_raw

    return decode_binary_request(body, json_length, from_raw)


async def _respond(send: Send, status: int, body: bytes, request_id: str | None = None) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((b"x-request-id", header_value(request_id)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def infer(
    scope: Scope,
    receive: Receive,
    send: Send,
    services: dict[str, ScoringService],
    model_name: str,
    version: str | None = None,
) -> None:
    started = time.perf_counter()
    request_id = ""
    service = services.get(model_name) or next(iter(services.values()))
    try:
        service.check_model(model_name, version)
        given = _request_id_header(scope)
        request_id = checked_id(given, "header 'x-request-id'") or ""
        body = await _read_body(scope, receive, service.settings.max_body_bytes)
        json_length = _header(scope, b"inference-header-content-length")
        decoded = _decode_binary(body, json_length) if json_length else decode_request(body)
    except RequestError as error:
        given = usable_id(_request_id_header(scope, strict=False)) if not request_id else None
        request_id = request_id or given or new_request_id()
        service.refuse(error, request_id)
        await _respond(send, error.http_status, encode_error(error.message), request_id)
        return
    # The body's V2 `id` first, as gRPC and KServe's own path take it: the response echoes it,
    # and it keys the A/B split alike on both transports. The header's id, read before the body
    # was, names any refusal up to here.
    request_id = decoded.request_id or request_id or new_request_id()
    try:
        prediction = await service.infer(
            InferenceRequest(
                model_name, decoded.tensors, request_id, decoded.parameters, decoded.outputs
            )
        )
    except RequestError as error:
        await _respond(send, error.http_status, encode_error(error.message), request_id)
        return
    except RecursionError:  # a value nested so deep that even describing it overflows
        nested = nested_input(decoded.tensors)
        where = f"input {show(nested.name)}" if nested is not None else "an input"
        deep = RequestError(
            "wrong_shape", f"{where}: data nested too deeply; expected [N] or [N, 1]"
        )
        service.refuse(deep, request_id)
        await _respond(send, deep.http_status, encode_error(deep.message), request_id)
        return
    except Exception:  # counted and logged by the service: a JSON 500, not uvicorn's bare one
        message = f"internal error scoring request {request_id!r}; the predictor's log has it"
        await _respond(send, 500, encode_error(message), request_id)
        return
    await _respond(send, 200, encode_response(prediction), request_id)
    service.done(prediction, started)


async def metrics(scope: Scope, send: Send, service: ScoringService) -> None:
    content, content_type = service.telemetry.exposition(_header(scope, b"accept"))
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(content)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


class FastPathApp:
    """KServe's ASGI app with our two hot paths (and the 404s of `_not_here`) answered first
    for the services `serve` gave it; every attribute (add_middleware, include_router, ...) is
    the wrapped app's, so KServe's server sets it up as usual."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.settled = False
        self.services: dict[str, ScoringService] = {}
        # /v2/models/{name}/infer -> (name, no version): the common call, without a path split
        self._infer_paths: dict[str, tuple[str, None]] = {}
        if hasattr(app, "add_exception_handler"):  # KServe's FastAPI app
            from starlette.exceptions import HTTPException

            app.add_exception_handler(HTTPException, _routing_error)

    def serve(self, service: ScoringService) -> None:
        """Answer `service`'s model on the fast path (again: the latest service by that name)."""
        self.services[service.name] = service
        if "/" not in service.name:  # a name with a slash is no single path segment
            self._infer_paths[f"/v2/models/{service.name}/infer"] = (service.name, None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            if not self.settled:
                # Start-up, in every process that serves REST: the model is loaded, nothing is
                # served yet, and a spawned worker already answers its parent's liveness pings.
                from creditmodel.predictor.serving import settle_heap

                self.settled = True
                settle_heap()
            await self.app(scope, _flushing_at_shutdown(receive, self.services), send)
            return
        services = self.services
        if scope["type"] == "http" and services:
            target = _infer_target(scope, self._infer_paths)
            if target is not None:
                await infer(scope, receive, send, services, *target)
                return
            if scope["path"] == "/metrics" and scope["method"] == "GET":
                await metrics(scope, send, next(iter(services.values())))
                return
            versioned = _versioned(scope, services)
            if versioned is not None:
                service, version, unversioned = versioned
                try:
                    service.check_model(service.name, version)
                except RequestError as error:
                    await _respond(send, error.http_status, encode_error(error.message))
                    return
                scope = {**scope, "path": unversioned, "raw_path": unversioned.encode()}
            refusal = _not_here(scope["path"], services)
            if refusal is not None:
                await _respond(send, 404, encode_error(refusal))
                return
        await self.app(scope, receive, send)


def _flushing_at_shutdown(receive: Receive, services: dict[str, ScoringService]) -> Receive:
    """The lifespan's `receive`, writing the prediction log's queued rows when shutdown comes:
    uvicorn shuts down after its last connection closes, and a `--workers` process then ends by
    the SIGTERM uvicorn re-raises, where no atexit hook runs."""

    async def received() -> Any:
        message = await receive()
        if message.get("type") == "lifespan.shutdown":
            for service in list(services.values()):
                await service.flush_log()
        return message

    return received


async def _routing_error(request: Any, error: Any) -> Any:
    """Starlette's 404 and 405 for a path or method no route takes, as the V2 protocol's error
    object naming the method and path (FastAPI's default answers `{"detail": "Not Found"}`);
    any other HTTPException keeps FastAPI's answer."""
    from fastapi.exception_handlers import http_exception_handler
    from starlette.responses import Response

    if error.status_code not in (404, 405) or not isinstance(error.detail, str):
        return await http_exception_handler(request, error)

    message = f"{error.detail}: {request.method} {show(request.url.path)}"
    allowed = (error.headers or {}).get("Allow")
    if allowed:
        message += f" (allowed: {allowed})"
    return Response(
        encode_error(message), error.status_code, headers=error.headers,
        media_type="application/json",
    )  # fmt: skip


def _not_here(path: str, services: dict[str, ScoringService]) -> str | None:
    """Why `path` is answered 404 here rather than by KServe, or None."""
    served = ", ".join(repr(name) for name in services)
    if path == "/v1" or path.startswith("/v1/"):
        return (
            "this predictor speaks the V2 inference protocol only:"
            f" POST /v2/models/{{name}}/infer (models: {served})"
        )
    if path == "/v2/repository" or path.startswith("/v2/repository/"):
        return (
            "the model repository extension is disabled: the model is loaded at start-up"
            " from --model_dir and cannot be loaded or unloaded over the API"
        )
    parts = path.split("/", 4)  # ['', 'v2', 'models', NAME, ...]
    if len(parts) >= 4 and parts[1] == "v2" and parts[2] == "models" and parts[3] not in services:
        return f"model {show(parts[3])} is not served here (models: {served})"
    return None


def install(service: ScoringService) -> None:
    """Serve `service` on the fast path of this process's KServe app (idempotent): KServe's
    server loads its app by module-global name (`kserve.model_server:app`), so the wrapper
    takes that name once and each service is handed to it."""
    from kserve import model_server

    app = model_server.app
    if not isinstance(app, FastPathApp):
        app = model_server.app = FastPathApp(app)
    app.serve(service)
