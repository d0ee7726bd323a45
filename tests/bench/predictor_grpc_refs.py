"""The gRPC references of the predictor benchmark: how fast can any V2 ModelInfer be on grpcio,
on this machine, next to the predictor's REST path?

- ref D: grpc.aio (the server KServe's ModelServer runs) answering every ModelInfer with one
  canned single-row response (probability, score, four reason codes), no scoring at all: the
  ceiling of any design that serves gRPC through KServe's server.
- ref E: the same canned answer on grpcio's synchronous server (a thread pool of 4).
- ref F: this project's scoring (the decode, validation, model, reason codes, metrics and PSI of
  grpc_fast.py) on grpcio's synchronous server, the one other grpcio design.
- ref G: the canned answer on grpclib (a pure-Python HTTP/2 gRPC server on uvloop), the design
  that leaves grpcio out.
- refs H and I: the leanest loop grpcio's core allows, one Python thread polling its completion
  queue and answering in place (no thread pool, no asyncio, no interceptors), through grpcio's
  private `grpc._cython.cygrpc` layer, which neither grpcio's servers nor KServe expose: H the
  canned answer (the transport's own ceiling), I this project's scoring.
- ref J: that loop with 32 calls requested ahead, taking every completion already queued before
  answering any, and each request validated on its own but the valid ones scored by one model
  run (dynamic batching, as Triton's batcher or KServe's batcher sidecar do, with no wait for a
  batch to fill). The predictor's own gRPC server is built on this design (grpc_core.py,
  grpc_dispatch.py); J is it without what a served call also needs (admission: model name,
  version and request id checks, KServe's request validation; refusals answered alone; the
  prediction log; every other RPC; an event loop beside it), so the distance between the two
  is what those cost.

    python -m tests.bench.predictor_grpc_refs {d|e|f|g|h|i|j} PORT MODEL_DIR
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

_SERVICE = "inference.GRPCInferenceService"


def canned_response() -> Any:
    """A single-row answer shaped like the predictor's."""
    tensor = pb.ModelInferResponse.InferOutputTensor
    contents = pb.InferTensorContents
    reasons = [b"R01: Status of existing checking account", b"R02: Duration in months", b"", b""]
    return pb.ModelInferResponse(
        model_name="german-credit",
        model_version="v1",
        id="canned",
        outputs=[
            tensor(name="probability", datatype="FP32", shape=[1],
                   contents=contents(fp32_contents=[0.25])),
            tensor(name="score", datatype="INT32", shape=[1], contents=contents(int_contents=[612])),
            tensor(name="reason_codes", datatype="BYTES", shape=[1, 4],
                   contents=contents(bytes_contents=reasons)),
        ],
    )  # fmt: skip


def _handlers(infer: Callable[..., Any]) -> Any:
    handler = grpc.unary_unary_rpc_method_handler(
        infer,
        request_deserializer=pb.ModelInferRequest.FromString,
        response_serializer=pb.ModelInferResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(_SERVICE, {"ModelInfer": handler})


def _loaded_service(model_dir: str) -> Any:
    """The predictor's scoring service on `model_dir`, loaded as served, with its 50 ms
    housekeeping tick (PSI binning, counts) on a thread of its own."""
    from creditmodel.predictor.__main__ import prepare_metrics_dir

    prepare_metrics_dir()  # metrics in multiprocess mode, as served; before prometheus_client
    from creditmodel.predictor.model import CreditScoringModel
    from creditmodel.predictor.serving import settle_heap
    from creditmodel.predictor.settings import PredictorSettings

    model = CreditScoringModel(PredictorSettings(model_name="german-credit", model_dir=model_dir))
    model.load()
    settle_heap()
    service = model.service
    assert service is not None

    def housekeeping() -> None:
        while True:
            time.sleep(0.05)
            service.flush()

    threading.Thread(target=housekeeping, daemon=True).start()
    return service


def _job(service: Any, request: Any) -> Any:
    """A ModelInferRequest decoded and validated by `service`, as the served path does."""
    from creditmodel.predictor.grpc_fast import decode_inputs
    from creditmodel.predictor.service import InferenceRequest, new_request_id

    return service.prepare(
        InferenceRequest(request.model_name, decode_inputs(request),
                         request.id or new_request_id(), None, None)
    )  # fmt: skip


def scoring_handler(model_dir: str) -> Callable[[Any, Any], Any]:
    """ModelInfer through the predictor's own service, synchronously."""
    from creditmodel.predictor.grpc_fast import encode_response

    service = _loaded_service(model_dir)

    def infer(request: Any, context: Any) -> Any:
        started = time.perf_counter()
        prediction = service.execute(_job(service, request))
        response = encode_response(prediction, raw=False)
        service.done(prediction, started)
        return response

    return infer


def batch_scoring_handler(model_dir: str) -> Callable[[list[Any]], list[Any]]:
    """ModelInfer for several calls at once (ref J): each request decoded and validated alone,
    as the served path does, then the requests that share a variant and outputs scored by one
    model run (`ScoringService.execute_batch`, as the predictor's gRPC server scores them) and
    answered per call. No request of the benchmark is refused, so J answers none alone."""
    from creditmodel.predictor.grpc_fast import encode_response
    from creditmodel.predictor.service import Job

    service = _loaded_service(model_dir)

    def infer(requests: list[Any]) -> list[Any]:
        started = time.perf_counter()
        groups: dict[tuple[str, tuple[str, ...]], list[tuple[int, Job]]] = {}
        for index, request in enumerate(requests):
            job = _job(service, request)
            groups.setdefault((job.variant, job.outputs), []).append((index, job))
        answers: list[Any] = [None] * len(requests)
        for members in groups.values():
            predictions = service.execute_batch([job for _, job in members])
            for (index, _), prediction in zip(members, predictions, strict=True):
                answers[index] = encode_response(prediction, raw=False)
                service.done(prediction, started)
        return answers

    return infer


def _grpclib(port: int, answer: Any) -> None:
    import uvloop
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server, Stream

    class Canned:
        async def infer(self, stream: Stream[Any, Any]) -> None:
            await stream.recv_message()
            await stream.send_message(answer)

        def __mapping__(self) -> dict[str, Handler]:
            return {
                f"/{_SERVICE}/ModelInfer": Handler(
                    self.infer, Cardinality.UNARY_UNARY, pb.ModelInferRequest, pb.ModelInferResponse
                )
            }

    async def serve() -> None:
        server = Server([Canned()])
        await server.start("127.0.0.1", port)
        await server.wait_closed()

    uvloop.run(serve())


def _core_server(address: str) -> tuple[Any, Any]:
    """A started grpcio core server on `address` with one completion queue (refs H to J)."""
    from grpc._cython import cygrpc

    queue = cygrpc.CompletionQueue()
    server = cygrpc.Server((), False)
    server.register_completion_queue(queue)
    server.add_http2_port(address.encode(), None)
    server.start()
    return queue, server


def _answer(call: Any, response: Any, tag: Any) -> None:
    """Send `response` with its metadata and an OK status in one batch."""
    from grpc._cython import cygrpc

    call.start_server_batch(
        (
            cygrpc.SendInitialMetadataOperation((), 0),
            cygrpc.SendMessageOperation(response.SerializeToString(), 0),
            cygrpc.SendStatusFromServerOperation((), cygrpc.StatusCode.ok, b"", 0),
        ),
        tag,
    )


def _core_loop(address: str, infer: Callable[[Any, Any], Any]) -> None:
    """Serve ModelInfer from one thread on grpcio's core: per call, one batch receives the
    request and one sends metadata, answer and status together, each completion taken from the
    queue by this thread (refs H and I)."""
    from grpc._cython import cygrpc

    queue, server = _core_server(address)
    new_call, received, sent = object(), object(), object()
    server.request_call(queue, queue, new_call)
    parse = pb.ModelInferRequest.FromString
    while True:
        event = queue.poll(time.time() + 1)
        if event.completion_type == cygrpc.CompletionType.queue_timeout:
            continue
        tag = event.tag
        if tag is new_call:
            server.request_call(queue, queue, new_call)
            if event.success:
                event.call.start_server_batch(
                    (cygrpc.ReceiveMessageOperation(0),), (received, event.call)
                )
        elif tag[0] is received:
            call, message = tag[1], event.batch_operations[0].message()
            if message is None:  # the client went away before sending its request
                continue
            _answer(call, infer(parse(message), None), (sent, call))


def _draining_loop(address: str, infer: Callable[[list[Any]], list[Any]]) -> None:
    """Ref J: the core loop with 32 calls requested ahead; each wake-up takes every completion
    already queued (a deadline in the past polls without waiting), then scores the requests it
    received together and starts every answer."""
    from grpc._cython import cygrpc

    queue, server = _core_server(address)
    new_call, received, sent = object(), object(), object()
    for _ in range(32):
        server.request_call(queue, queue, (new_call, None))
    parse = pb.ModelInferRequest.FromString
    timeout = cygrpc.CompletionType.queue_timeout
    while True:
        event = queue.poll(time.time() + 1)
        calls, requests = [], []
        while event.completion_type != timeout:
            kind, call = event.tag
            if kind is new_call:
                server.request_call(queue, queue, (new_call, None))
                if event.success:
                    event.call.start_server_batch(
                        (cygrpc.ReceiveMessageOperation(0),), (received, event.call)
                    )
            elif kind is received:
                message = event.batch_operations[0].message()
                if message is not None:  # None: the client went away before its request
                    calls.append(call)
                    requests.append(parse(message))
            event = queue.poll(0)
        if not requests:
            continue
        for call, answer in zip(calls, infer(requests), strict=True):
            _answer(call, answer, (sent, call))


def main() -> None:
    kind, port, model_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    address = f"127.0.0.1:{port}"
    answer = canned_response()
    if kind == "d":

        async def canned(request: Any, context: Any) -> Any:
            return answer

        async def serve() -> None:
            server = grpc.aio.server()
            server.add_generic_rpc_handlers((_handlers(canned),))
            server.add_insecure_port(address)
            await server.start()
            await server.wait_for_termination()

        asyncio.run(serve())
        return
    if kind == "g":
        _grpclib(port, answer)
        return
    if kind == "j":
        _draining_loop(address, batch_scoring_handler(model_dir))
        return
    if kind in ("h", "i"):
        _core_loop(address, scoring_handler(model_dir) if kind == "i" else (lambda r, c: answer))
        return
    infer = scoring_handler(model_dir) if kind == "f" else (lambda request, context: answer)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((_handlers(infer),))
    server.add_insecure_port(address)
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
