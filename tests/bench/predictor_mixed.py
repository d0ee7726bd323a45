"""Mixed load, the evidence behind `--inline_rows`: single-row requests from wrk (16
connections) while one client sends 1,000-row requests back to back (10 ms apart), against two
predictors side by side in interleaved rounds, one scoring big batches inline (the default) and
one handing them to a worker thread (`--inline_rows 256`). The thread frees the event loop only
while onnxruntime and numpy release the GIL, so what it buys the single rows, and what it costs
the big batch, is measured rather than assumed."""

from __future__ import annotations

import contextlib
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.bench.predictor_load import LoadResult, wrk
from tests.predictor.server import PredictorServer, predictor_server

ROUNDS = 3
CASE = "mixed: 1-row (wrk, 16 conn.) + 1,000-row requests"
SERVERS = {
    "big batches inline (default)": [],
    "big batches in a worker thread (--inline_rows 256)": ["--inline_rows", "256"],
}


class _BigClient:
    """Sends `body` to `url` back to back, 10 ms apart, until stopped; keeps each latency."""

    def __init__(self, url: str, body: bytes) -> None:
        self.url, self.body = url, body
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            request = urllib.request.Request(
                self.url, data=self.body, headers={"content-type": "application/json"}
            )
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
            self.seconds.append(time.perf_counter() - started)
            time.sleep(0.01)

    def __enter__(self) -> _BigClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _round(
    server: PredictorServer, one: bytes, big: bytes, out_dir: Path
) -> tuple[LoadResult, float]:
    from tests.bench.bench_predictor import LOAD_CPUS, SECONDS

    with _BigClient(server.infer_url, big) as client:
        single = wrk(server.infer_url, one, out_dir / "wrk", seconds=SECONDS, cpus=LOAD_CPUS)
    return single, statistics.median(client.seconds)


def run(out_dir: Path, one: bytes, big: bytes) -> list[dict[str, Any]]:
    from tests.bench.bench_predictor import BUNDLE, MODEL, SERVER_CPUS, pin

    logs = out_dir / "logs"
    results: dict[str, list[tuple[LoadResult, float]]] = {name: [] for name in SERVERS}
    with contextlib.ExitStack() as stack:
        servers: dict[str, PredictorServer] = {}
        for index, (name, extra) in enumerate(SERVERS.items()):
            started = predictor_server(
                str(BUNDLE), logs, model_name=MODEL, extra=extra, name=f"predictor-mixed-{index}"
            )
            server = stack.enter_context(started)
            pin(server.process, SERVER_CPUS)
            servers[name] = server
        for _ in range(ROUNDS):
            for name, server in servers.items():
                single, big_seconds = _round(server, one, big, out_dir)
                results[name].append((single, big_seconds))
                print(f"   {CASE}, {name}: 1-row {single.requests_per_second:,.0f} req/s,"
                      f" p99 {single.p99_ms:.2f} ms; 1,000-row {big_seconds * 1000:.1f} ms",
                      file=sys.stderr, flush=True)  # fmt: skip
    rows: list[dict[str, Any]] = []
    for name, rounds in results.items():
        case = f"{CASE}, {name}"
        rows += [
            {"case": case, "metric": "1-row throughput (median of rounds)", "unit": "req/s",
             "value": statistics.median(r.requests_per_second for r, _ in rounds)},
            {"case": case, "metric": "1-row p99 latency (median of rounds)", "unit": "ms",
             "value": statistics.median(r.p99_ms for r, _ in rounds)},
            {"case": case, "metric": "1,000-row latency, client side (median)", "unit": "ms",
             "value": statistics.median(s for _, s in rounds) * 1000},
        ]  # fmt: skip
    inline, thread = (results[name] for name in SERVERS)
    pairs = list(zip(thread, inline, strict=True))
    rows += [
        {"case": CASE, "metric": "worker thread vs inline: 1-row p99 (median of per-round ratios)",
         "unit": "x", "value": statistics.median(t.p99_ms / i.p99_ms for (t, _), (i, _) in pairs)},
        {"case": CASE, "metric": "worker thread vs inline: 1,000-row latency (median of ratios)",
         "unit": "x", "value": statistics.median(t / i for (_, t), (_, i) in pairs)},
    ]  # fmt: skip
    return rows
