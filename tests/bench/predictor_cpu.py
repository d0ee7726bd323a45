"""CPU time per request, in process, without HTTP: the ASGI app of each server called directly
with a recorded request, timed with process_time. A shared machine's other load moves wall-clock
throughput by tens of percent between runs; CPU per request of one process moves far less, so
this is the steadier view of what each path costs. Every feature is on, as served: validation,
probability, score, four reason codes, multiprocess metrics, live PSI (binned every 50 requests,
as the housekeeping task would). One configuration per process (KServe's app is a module global):

    python -m tests.bench.predictor_cpu {predictor|shadow|stock|bare} MODEL_DIR BODY_FILE REQUESTS

It prints CPU and wall-clock time per request; PREDICTOR_CPU_START_AT (epoch seconds) holds the
timed loop until then, so that copies started together run their loops side by side.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from importlib import resources
from typing import Any


def _kserve_app(model: Any) -> Any:
    from kserve import ModelServer, model_server
    from kserve.protocol.rest.server import RESTServer

    server = ModelServer(http_port=0, grpc_port=0, enable_grpc=False)
    server.register_model(model)
    rest = RESTServer(
        "kserve.model_server:app", server.dataplane, server.model_repository_extension, 0
    )
    rest.create_application()
    return model_server.app


def build(kind: str, model_dir: str) -> tuple[Any, Any]:
    """(ASGI app, a callable finishing background work or None)."""
    if kind == "bare":
        from tests.bench.predictor_refs import bare_app

        return bare_app(model_dir), None
    if kind != "stock":
        # As the console script does: metrics in multiprocess mode (memory-mapped files), the
        # mode the predictor always runs in, set before anything imports prometheus_client.
        from creditmodel.predictor.__main__ import prepare_metrics_dir

        prepare_metrics_dir()
    from kserve import logging as kserve_logging

    kserve_logging.configure_logging(
        str(resources.files("creditmodel.predictor") / "log_config.json")
    )
    if kind == "stock":
        from tests.bench.predictor_refs import stock_model

        return _kserve_app(stock_model("german-credit", model_dir)), None
    from creditmodel.predictor.model import CreditScoringModel
    from creditmodel.predictor.settings import PredictorSettings

    settings = PredictorSettings(
        model_name="german-credit",
        model_dir=model_dir,
        shadow_model_dir=model_dir if kind == "shadow" else None,
    )
    from creditmodel.predictor.serving import settle_heap

    model = CreditScoringModel(settings)
    model.load()
    app = _kserve_app(model)
    settle_heap()  # as CreditModelServer.start does before serving
    return app, model.service.flush  # type: ignore[union-attr]


def request_scope(body: bytes) -> dict[str, Any]:
    """The ASGI scope of a V2 JSON infer request carrying `body`."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v2/models/german-credit/infer",
        "raw_path": b"/v2/models/german-credit/infer", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080),
    }  # fmt: skip


async def measure(app: Any, finish: Any, body: bytes, requests: int) -> float:
    scope = request_scope(body)
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(20):  # warm up
        await app(dict(scope), receive, send)
    start_at = float(os.environ.get("PREDICTOR_CPU_START_AT", "0"))
    await asyncio.sleep(max(0.0, start_at - time.time()))  # copies started together start alike
    started = time.process_time()
    wall = time.perf_counter()
    for index in range(requests):
        await app(dict(scope), receive, send)
        if finish is not None and index % 50 == 49:
            finish()  # shadow micro-batch and drift binning, as the housekeeping task would
    if finish is not None:
        finish()
    elapsed = time.process_time() - started
    wall = time.perf_counter() - wall
    if set(statuses) != {200}:
        raise RuntimeError(f"non-200 answers: {sorted(set(statuses))}")
    return elapsed / requests, wall / requests


def main() -> None:
    kind, model_dir, body_path, requests = sys.argv[1:5]
    app, finish = build(kind, model_dir)
    with open(body_path, "rb") as handle:
        body = handle.read()
    seconds, wall = asyncio.run(measure(app, finish, body, int(requests)))
    print(json.dumps({"cpu_us": seconds * 1e6, "wall_us": wall * 1e6}))


if __name__ == "__main__":
    main()
