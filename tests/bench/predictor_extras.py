"""The predictor benchmark's cases beyond the headline (bench_predictor.py): the shadow
challenger's cost (paired rounds), the fp32 variant, batches of 100 and 1,000 rows against the
references, reference C (Seldon MLServer + mlserver-sklearn), a Redis response cache in front
of the predictor (to decide with numbers whether caching pays for a model that runs in
microseconds) and mixed single-row and 1,000-row load (predictor_mixed.py). Set
PREDICTOR_BENCH_EXTRAS=0 to skip them."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest

from creditmodel.core.bundle import load_bundle
from tests.bench import predictor_mixed, predictor_mlserver
from tests.bench.predictor_load import LoadResult, wrk
from tests.predictor.server import PredictorServer, predictor_server
from tests.support.process import ManagedProcess, free_port, tool

SECONDS = float(os.environ.get("PREDICTOR_BENCH_SECONDS", "5"))
SHADOW_ROUNDS = 3


def run(
    out_dir: Path,
    ours: PredictorServer,
    url_a: str,
    url_b: str,
    body: bytes,
    thousand: dict[str, Any],
) -> list[dict[str, Any]]:
    from tests.bench.bench_predictor import (
        BUNDLE,
        LOAD_CPUS,
        MODEL,
        SERVER_CPUS,
        _body,
        _documents,
        pin,
    )

    logs = out_dir / "logs"
    rows: list[dict[str, Any]] = []

    def load(case: str, url: str, payload: bytes, **kwargs: Any) -> LoadResult:
        result = wrk(url, payload, out_dir / "wrk", seconds=SECONDS, cpus=LOAD_CPUS, **kwargs)
        print(f"   {case}: {result.requests_per_second:,.0f} req/s, p99 {result.p99_ms:.2f} ms",
              file=sys.stderr, flush=True)  # fmt: skip
        rows.extend(result.rows(case))
        return result

    bundle = str(BUNDLE)
    with predictor_server(bundle, logs, model_name=MODEL, name="predictor-shadow",
                          extra=["--shadow_model_dir", bundle]) as shadow:  # fmt: skip
        pin(shadow.process, SERVER_CPUS)  # as `ours` is: its shadow thread gets no CPU of its own
        ratios = []
        for _ in range(SHADOW_ROUNDS):  # the same model as challenger: the same work
            off = wrk(ours.infer_url, body, out_dir / "wrk", seconds=SECONDS, cpus=LOAD_CPUS)
            on = load("predictor REST batch 1, shadow on", shadow.infer_url, body)
            ratios.append(on.requests_per_second / off.requests_per_second)
        cost = (1 - statistics.median(ratios)) * 100
        rows.append({"case": "shadow on vs off", "metric": f"throughput cost (median of {SHADOW_ROUNDS} pairs)",
                     "value": cost, "unit": "%", "target": "<= 10%", "ok": cost <= 10})  # fmt: skip
    load("predictor REST batch 1 fp32", ours.infer_url, _body(_documents(1), variant="fp32"))
    for n in (100, 1000):
        payload = _body(_documents(n)) if n != 1000 else _body(thousand)
        load(f"predictor REST batch {n}", ours.infer_url, payload)
        load(f"ref A (stock KServe) REST batch {n}", url_a, payload)
        load(f"ref B (bare ASGI) REST batch {n}", url_b, payload)
    rows += _mlserver(out_dir, load)
    rows += _redis_cache(out_dir, body, load)
    rows += predictor_mixed.run(out_dir, body, _body(thousand))
    return rows


def _mlserver(out_dir: Path, load: Any) -> list[dict[str, Any]]:
    from tests.bench.bench_predictor import BUNDLE, MODEL, _documents, process

    logs = out_dir / "logs"
    try:
        mlserver = predictor_mlserver.ensure_venv(logs / "mlserver-install.log")
        http, grpc_port, metrics_port = free_port(), free_port(), free_port()
        repository = predictor_mlserver.write_model_repository(
            load_bundle(str(BUNDLE)), out_dir / "mlserver", http, grpc_port, metrics_port
        )
        ready = f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready"
        with process("reference-c", [mlserver, "start", repository], logs, ready):
            url = f"http://127.0.0.1:{http}/v2/models/{MODEL}/infer"
            for n in (1, 1000):
                body = json.dumps(predictor_mlserver.request_body(_documents(n))).encode()
                load(f"ref C (MLServer sklearn) REST batch {n}", url, body)
    except (Exception, pytest.skip.Exception) as exc:  # MLServer trouble must not lose the rest
        return [{"case": "ref C (MLServer)", "metric": "unavailable", "value": str(exc)[:120],
                 "unit": "", "ok": False}]  # fmt: skip
    return []


def _redis_cache(out_dir: Path, body: bytes, load: Any) -> list[dict[str, Any]]:
    from tests.bench.bench_predictor import BUNDLE, MODEL, process

    logs = out_dir / "logs"
    port = free_port()
    argv = [tool("redis-server"), "--port", str(port), "--save", "", "--appendonly", "no"]
    with contextlib.ExitStack() as stack:
        stack.enter_context(_redis(argv, port, logs))
        http, grpc_port = free_port(), free_port()
        server = [sys.executable, "-m", "tests.bench.predictor_cache", "--redis_url",
                  f"redis://127.0.0.1:{port}", "--model_name", MODEL, "--model_dir", str(BUNDLE),
                  "--http_port", str(http), "--grpc_port", str(grpc_port)]  # fmt: skip
        stack.enter_context(
            process("predictor-cache", server, logs, f"http://127.0.0.1:{http}/v2/health/ready")
        )
        url = f"http://127.0.0.1:{http}/v2/models/{MODEL}/infer"
        load("predictor + Redis cache, all hits", url, body)
        load("predictor + Redis cache, all misses", url, body, unique_ids=True)
    return []


@contextlib.contextmanager
def _redis(argv: list[Any], port: int, logs: Path) -> Any:
    import socket

    managed = ManagedProcess("redis", argv, logs)

    def probe() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    try:
        managed.wait_ready(probe, 30, "accepting connections")
        yield managed
    finally:
        managed.stop()
