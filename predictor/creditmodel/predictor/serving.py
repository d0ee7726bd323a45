"""KServe's ModelServer as this predictor runs it. Eight differences, nothing else:

- Both servers listen on `--host` (KServe hard-codes 0.0.0.0 for REST and [::] for gRPC). The
  default, 0.0.0.0, keeps KServe's addresses: REST on 0.0.0.0, gRPC on [::].
- HTTP request heads are bounded (http_limits.py): too many or too large headers get a 431, and
  a request that does not arrive whole within `--request_read_timeout_seconds` a 408.
- Readiness tells the truth: the server is ready only while every registered model is (KServe's
  says ready whatever its models are), so a model that is gone or not ready turns the pod
  unready instead of leaving it ready and answering 404; with `--workers N`, only once all N
  workers have started, so the first connections do not all land on the first worker up.
- The model repository extension is not advertised in the server metadata; its REST routes and
  RPCs are refused (rest.py, grpc_fast.py).
- Model metadata (REST and gRPC) names the served bundle's version in `versions` and the
  platform (`onnxruntime_onnx`), where KServe's leaves them out and empty.
- `--event_loop` (auto, uvloop) is honoured in the main process too: KServe starts it with
  asyncio.run, so only spawned workers got uvloop; the single-process REST and gRPC servers
  ran on the pure-Python asyncio loop (server CPU per single-row gRPC call 720 -> 540 us,
  REST 280 -> 235-270 us, measured side by side on a loaded two-core machine).
- gRPC is served by this project's own server on grpcio's core (grpc_core, grpc_dispatch), not
  grpc.aio: grpc.aio alone, answering a canned response, reached 0.68x REST's throughput, so no
  handler behind it could match REST. It answers KServe's RPCs through KServe's servicer as
  grpc_fast extends it, and the single-row ModelInfers one wake-up finds share a model run.
- With `--workers N`, the workers take connections in turn from their shared socket
  (accept_balance.py) rather than whichever wakes first taking a whole burst, and each stops
  within a tick once the model server that started it is gone (killed outright, it could not
  stop them).

KServe's ModelServer.start builds its REST and gRPC servers by module-global name; `start`
points those names at the subclasses here.

Before serving, each process that serves REST settles its heap (`settle_heap`, called by
rest.FastPathApp at uvicorn's lifespan start-up)."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import socket
from typing import Any

from kserve import ModelServer, model_server
from kserve import logging as kserve_logging
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.rest.multiprocess import server as multiprocess_server
from kserve.protocol.rest.server import RESTServer, _RefreshingServer

from creditmodel.predictor import accept_balance, grpc_core, grpc_dispatch, grpc_fast, http_limits

log = logging.getLogger("creditmodel.predictor")

ALL_INTERFACES = "0.0.0.0"  # noqa: S104


def grpc_address(host: str, port: int) -> str:
    """gRPC's listening address for `host`: every interface of both families for 0.0.0.0 (as
    KServe listens), brackets around an IPv6 address."""
    if host == ALL_INTERFACES:
        return f"[::]:{port}"
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


# Allocations between collections of the youngest generation (CPython's default: 700).
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Once loaded, before serving: collect, then freeze what survives (KServe, FastAPI, gRPC,
    onnxruntime, the model: about 150,000 tracked objects that live as long as the process).
    A full collection walks them all, 0.1-0.4 s here with the event loop stopped: a stall
    that hits every request in flight, and one the drift window's queued rows (held up to a
    second, so promoted to the old generations) make come back under load. Frozen, they are
    never walked again; the young generation is collected every 20,000 allocations instead
    of 700 (a request's objects die before it ends, so young collections find little)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def use_uvloop(event_loop: str) -> None:
    """Run the next asyncio.run on uvloop when `event_loop` asks for it (uvloop) or allows it
    (auto, as uvicorn reads it: uvloop when installed)."""
    if event_loop not in ("auto", "uvloop"):
        return
    try:
        import uvloop
    except ImportError:
        if event_loop == "uvloop":
            raise
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # KServe configures asyncio.get_event_loop()'s loop first, which uvloop's policy does not
    # create on demand
    asyncio.set_event_loop(asyncio.new_event_loop())


class HonestDataPlane(DataPlane):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._workers: accept_balance.WorkerLoads | None = None
        self._workers_started = False

    def wait_for_workers(self, loads: accept_balance.WorkerLoads) -> None:
        """Answer not ready until every one of the `--workers` processes has taken its slot in
        `loads`. The first worker up (0.2 s before the other here) otherwise answered the
        probe alone, and the connections a client pool opened on that answer all stayed with
        it: a 16/0 split that serves at one worker's throughput until they close. Once all
        have started, a worker that dies does not turn the pod unready (KServe replaces it,
        and the replacement takes the new connections first)."""
        self._workers = loads

    def _every_worker_started(self) -> bool:
        if not self._workers_started and self._workers is not None:
            self._workers_started = self._workers.all_started()
            return self._workers_started
        return True

    def metadata(self) -> dict[str, Any]:
        metadata = dict(super().metadata())
        metadata["extensions"] = []
        return metadata

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        metadata = dict(await super().model_metadata(model_name))
        describe = getattr(self.get_model_from_registry(model_name), "v2_metadata", None)
        if callable(describe):
            metadata.update(describe())
        return metadata

    async def ready(self) -> bool:
        registry = self.model_registry
        names = list(registry.get_models())
        if not names or not self._every_worker_started():
            return False
        for name in names:
            if not await registry.is_model_ready(name):
                return False
        return bool(await super().ready())


class BalancedUvicornServer(_RefreshingServer):  # type: ignore[misc]
    """KServe's uvicorn server for one of `--workers` processes: it accepts from the shared
    listening socket through accept_balance, so the workers hold about as many connections
    each, instead of whichever wakes first taking a whole burst."""

    def __init__(self, config: Any, loads: accept_balance.WorkerLoads) -> None:
        super().__init__(config)
        self._loads = loads
        self._acceptor: accept_balance.BalancedAcceptor | None = None
        self._model_server = os.getpid()  # built in the model server, run in each worker
        self._orphaned = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None or len(sockets) != 1:
            await super().startup(sockets=sockets)
            return
        await super().startup(sockets=[])  # lifespan start-up, no listener of uvicorn's own
        slot = self._loads.claim(os.getpid())
        state, config = self.server_state, self.config
        protocol = functools.partial(
            config.http_protocol_class, config=config, server_state=state,
            app_state=self.lifespan.state,
        )  # fmt: skip
        if slot is None:  # every slot held by a live worker: serve, unbalanced
            log.warning("no slot to balance connections in", extra={"workers": self._loads.workers})
            self.servers.append(await asyncio.get_running_loop().create_server(
                protocol, sock=sockets[0], ssl=config.ssl, backlog=config.backlog))  # fmt: skip
            return
        self._acceptor = accept_balance.BalancedAcceptor(
            sockets[0], protocol, self._loads, slot, backlog=config.backlog, ssl_context=config.ssl
        )
        state.connections = self._acceptor.connections  # before any protocol takes it
        self._acceptor.start()
        self.servers.append(self._acceptor)

    async def on_tick(self, counter: int) -> bool:
        if self._acceptor is not None:
            self._acceptor.publish()  # the heartbeat the other workers look at
        if not self._orphaned and os.getppid() != self._model_server:
            # The model server died without stopping its workers (SIGKILL, OOM kill): an orphan
            # would keep the port and answer as a predictor nothing supervises any more.
            self._orphaned = True
            log.warning("the model server that started this worker is gone; stopping")
            self.should_exit = True
        return bool(await super().on_tick(counter))


class BoundedRESTServer(RESTServer):  # type: ignore[misc]
    def __init__(
        self,
        *args: Any,
        host: str,
        read_timeout: float = http_limits.READ_TIMEOUT_SECONDS,
        log_config_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.config.host = host
        self.config.http = http_limits.protocol()
        self.config.h11_max_incomplete_event_size = http_limits.MAX_HEAD_BYTES
        setattr(self.config, http_limits.READ_TIMEOUT_ATTRIBUTE, read_timeout)
        if self.config.workers > 1:
            loads = accept_balance.WorkerLoads(self.config.workers)
            self._server = BalancedUvicornServer(self.config, loads)
            if isinstance(self.dataplane, HonestDataPlane):  # also the parent's, for gRPC
                self.dataplane.wait_for_workers(loads)
        self._log_config_file = log_config_file

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """A worker's whole life, in its own process. KServe starts the worker that replaces a
        dead one without the log config its first workers get, and it wrote KServe's plain-text
        lines among the JSON; each worker applies the config itself, before building the app."""
        if self._log_config_file is not None:
            kserve_logging.configure_logging(self._log_config_file)
        super().run(sockets=sockets)


class HostGRPCServer(GRPCServer):  # type: ignore[misc]
    """The gRPC server KServe's ModelServer starts and stops, served by grpc_core on `host`
    (not grpc.aio: see grpc_core.py) with KServe's RPCs as grpc_fast's servicer extends them,
    dispatched by grpc_dispatch. KServe's `max_workers` (grpc.aio's thread pool) has no use."""

    def __init__(self, *args: Any, host: str, max_body_bytes: int | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._host = host
        self._max_body_bytes = max_body_bytes
        self._core: grpc_core.CoreServer | None = None
        self._stopped = asyncio.Event()

    def message_limits(self) -> list[tuple[str, Any]]:
        """KServe's gRPC message limits, the received one no larger than --max_body_bytes: the
        limit a REST body has holds for a ModelInfer too (RESOURCE_EXHAUSTED above it)."""
        send = self._kwargs.get("grpc_max_send_message_length")
        receive = self._kwargs.get("grpc_max_receive_message_length")
        if self._max_body_bytes is not None:
            receive = min(receive, self._max_body_bytes) if receive else self._max_body_bytes
        limits = [
            ("grpc.max_send_message_length", send),
            ("grpc.max_receive_message_length", receive),
        ]
        return [(name, value) for name, value in limits if value is not None]

    async def start(self, max_workers: int) -> None:
        servicer = grpc_fast.FastInferenceServicer(
            self._data_plane, self._model_repository_extension
        )
        dispatch = grpc_dispatch.GrpcDispatch(servicer, asyncio.get_running_loop())
        address = grpc_address(self._host, self._port)
        self._core = grpc_core.CoreServer(address, self.message_limits(), dispatch.deliver)
        self._core.start()
        registry = self._data_plane.model_registry
        for name in list(registry.get_models()):  # batched ModelInfers never start it
            service = grpc_fast.served(registry, name)
            if service is not None:
                service.ensure_background()
        log.info("gRPC server listening", extra={"address": address})
        await self._stopped.wait()

    async def stop(self, sig: int | None = None) -> None:
        """Refuse new calls, answer the open ones for up to the grace period, then cancel."""
        if self._core is not None:
            log.info("stopping the gRPC server", extra={"grace_seconds": self._grace_period})
            await asyncio.to_thread(self._core.stop, self._grace_period)
        self._stopped.set()


class CreditModelServer(ModelServer):  # type: ignore[misc]
    def __init__(
        self,
        *,
        host: str = ALL_INTERFACES,
        max_body_bytes: int | None = None,
        read_timeout: float = http_limits.READ_TIMEOUT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout
        self.dataplane = HonestDataPlane(model_registry=self.registered_models)
        self.stopping: asyncio.Task[None] | None = None  # the shutdown `stop` started

    def start(self, models: list[Any]) -> None:
        use_uvloop(self.event_loop)
        rest = functools.partial(
            BoundedRESTServer,
            host=self.host,
            read_timeout=self.read_timeout,
            log_config_file=model_server.args.log_config_file,
        )
        model_server.RESTServer = rest
        multiprocess_server.RESTServer = rest
        model_server.GRPCServer = functools.partial(
            HostGRPCServer, host=self.host, max_body_bytes=self.max_body_bytes
        )
        super().start(models)

    def stop(self, sig: int) -> None:
        """KServe's stop, with the models unloaded only once the servers have stopped: KServe
        unloads them at once, while the gRPC server still answers the calls in flight for its
        grace period, and those calls were answered NOT_FOUND for the model being served."""

        async def shutdown() -> None:
            from kserve.utils.inference_client_factory import InferenceClientFactory

            await InferenceClientFactory().close()
            log.info("stopping the model server", extra={"signal": sig})
            if self._rest_multiprocess_server:
                await self._rest_multiprocess_server.stop(sig)
            if self._grpc_server:
                await self._grpc_server.stop(sig)
            for name in list(self.registered_models.get_models()):
                self.registered_models.unload(name)

        self.stopping = asyncio.get_running_loop().create_task(shutdown())
