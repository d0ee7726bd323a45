"""The predictor's gRPC transport: grpcio's core server, driven by one thread of ours.

Why not grpc.aio (the server KServe's ModelServer runs): measured on this project's benchmark,
grpc.aio answering every ModelInfer with a canned response and no scoring at all reached 0.68x the
predictor's REST throughput, so no handler behind it could meet REST. One thread polling grpcio's
completion queue answers the same canned call for a third of the CPU, and under load it wakes up
to find many calls already received: those are handed over together (`Deliver`), which lets the
single-row ModelInfers of one wake-up share a model run (grpc_dispatch.GrpcDispatch).

This module only moves bytes: it accepts calls, receives each request message, hands the calls of
one wake-up to `deliver` and sends what `answer` is given (a serialized response or a status), from
any thread. It goes through grpcio's Cython layer (`grpc._cython.cygrpc`), the layer grpcio's own
servers are written on; it is not a public API, so the grpcio version is pinned and this transport
is tested against real clients (tests/predictor/test_grpc*.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc._cython import cygrpc

log = logging.getLogger("creditmodel.predictor")

# Calls the core may accept before this thread asks for more: enough that a burst of calls
# arriving during one scoring run are all received by the next wake-up.
CALLS_AHEAD = 32
_POLL_SECONDS = 1.0


@dataclass(slots=True)
class Incoming:
    """One received call: its method, its invocation metadata and its request message."""

    call: Any  # cygrpc.Call
    method: str
    metadata: tuple[tuple[str, str | bytes], ...]
    message: bytes


@dataclass(frozen=True, slots=True)
class Status:
    """A call answered with a status and no message."""

    code: grpc.StatusCode
    message: str


Deliver = Callable[[list[Incoming], float], None]
_NEW_CALL, _RECEIVED, _SENT, _SHUTDOWN = "new call", "received", "sent", "shutdown"


def answer(call: Any, outcome: bytes | Status) -> None:
    """Send a serialized response with an OK status, or a status alone."""
    if isinstance(outcome, Status):
        code, details = outcome.code.value[0], outcome.message.encode()
        operations: tuple[Any, ...] = (
            cygrpc.SendInitialMetadataOperation((), 0),
            cygrpc.SendStatusFromServerOperation((), code, details, 0),
        )
    else:
        operations = (
            cygrpc.SendInitialMetadataOperation((), 0),
            cygrpc.SendMessageOperation(outcome, 0),
            cygrpc.SendStatusFromServerOperation((), cygrpc.StatusCode.ok, b"", 0),
        )
    try:
        call.start_server_batch(operations, (_SENT, None))
    except Exception:  # the call is already gone (its client cancelled it)
        log.debug("gRPC answer not sent", exc_info=True)


class CoreServer:
    """A gRPC server on `address` whose received calls go to `deliver`, with the calls received
    in one wake-up and the wake-up's `time.perf_counter()`. Every delivered call must be given
    to `answer` exactly once, by whichever thread finishes it (the core is thread-safe)."""

    def __init__(self, address: str, options: Sequence[tuple[str, Any]], deliver: Deliver) -> None:
        self.address = address
        self._deliver = deliver
        self._queue = cygrpc.CompletionQueue()
        self._server = cygrpc.Server(tuple(options), False)
        self._server.register_completion_queue(self._queue)
        self._thread = threading.Thread(target=self._serve, name="grpc-core", daemon=True)
        self._lock = threading.Lock()
        self._stopping = False
        self.stopped = threading.Event()

    def start(self) -> int:
        """Bind, start, and return the bound port; an address that cannot be bound raises."""
        port = int(self._server.add_http2_port(self.address.encode(), None))
        if port == 0:
            raise OSError(f"gRPC cannot listen on {self.address}")
        self._server.start()
        for _ in range(CALLS_AHEAD):
            self._request_call()
        self._thread.start()
        return port

    def stop(self, grace: float) -> None:
        """Accept no more calls; answer the ones accepted for up to `grace` seconds, then cancel
        what is left; return once the server has shut down."""
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._server.shutdown(self._queue, (_SHUTDOWN, None))
        if not self.stopped.wait(grace):
            log.warning("gRPC calls still open after the grace period; cancelling them")
            self._server.cancel_all_calls()
            self.stopped.wait()

    # --- the polling thread ----------------------------------------------------------------------

    def _request_call(self) -> None:
        with self._lock:
            if not self._stopping:
                self._server.request_call(self._queue, self._queue, (_NEW_CALL, None))

    def _serve(self) -> None:
        """Each wake-up takes every completion already queued (a deadline in the past polls
        without waiting) before delivering the calls it received."""
        timeout = cygrpc.CompletionType.queue_timeout
        try:
            while True:
                event = self._queue.poll(time.time() + _POLL_SECONDS)
                started = time.perf_counter()
                received: list[Incoming] = []
                while event.completion_type != timeout:
                    if not self._take(event, received):
                        self._finish(received, started)
                        return
                    event = self._queue.poll(0)
                self._finish(received, started)
        finally:
            self._server.destroy()
            self.stopped.set()

    def _finish(self, received: list[Incoming], started: float) -> None:
        if not received:
            return
        try:
            self._deliver(received, started)
        except Exception:  # a bug in the dispatcher must not stop the server
            log.exception("gRPC dispatch failed")

    def _take(self, event: Any, received: list[Incoming]) -> bool:
        """Handle one completion; False once the server has shut down."""
        kind, pending = event.tag
        if kind == _NEW_CALL:
            self._request_call()
            if event.success:
                details = event.call_details
                method = details.method.decode(errors="replace")
                incoming = Incoming(event.call, method, tuple(event.invocation_metadata), b"")
                event.call.start_server_batch(
                    (cygrpc.ReceiveMessageOperation(0),), (_RECEIVED, incoming)
                )
        elif kind == _RECEIVED:
            message = event.batch_operations[0].message()
            if message is not None:
                pending.message = message
                received.append(pending)
            else:  # no message: the client half-closed without one, cancelled, or sent too
                # much (then the core has answered RESOURCE_EXHAUSTED and this answer is moot)
                method = pending.method.rsplit("/", 1)[-1]
                status = Status(grpc.StatusCode.INVALID_ARGUMENT, f"{method}: no request message")
                answer(pending.call, status)
        elif kind == _SHUTDOWN:
            return False
        return True
