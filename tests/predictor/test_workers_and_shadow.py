"""Two worker processes with a shadow challenger, scraped by a real Prometheus: metrics are the
sum over workers (kserve issue 2979 is about KServe's own being per process), PSI gauges cover
all workers' traffic, and the shadow is recorded without changing any response."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil
import pytest

from creditmodel.core.bundle import MODEL_INT8
from tests.predictor.conftest import TrainedBundle
from tests.predictor.server import PredictorServer, predictor_server
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def server(
    champion: TrainedBundle,
    challenger: TrainedBundle,
    metrics_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PredictorServer]:
    with predictor_server(
        champion.uri,
        tmp_path_factory.mktemp("logs"),
        # PSI after a few hundred single-row requests: below the default 500-row minimum.
        extra=["--workers", "2", "--shadow_model_dir", challenger.uri, "--drift_min_rows", "20"],
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    ) as running:
        yield running


def infer(server: PredictorServer, champion: TrainedBundle, start: int) -> dict[str, object]:
    """One single-row request on a fresh connection (so the kernel spreads them over workers)."""
    body = json.dumps({"inputs": champion.v2_inputs(1, start)}).encode()
    request = urllib.request.Request(
        server.infer_url, data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def pids_with_rows(metrics_dir: Path) -> set[str]:
    """Processes whose drift window holds rows: the REST workers that served requests (the
    parent process serves gRPC only)."""
    return {
        path.stem.rsplit("_", 1)[1]
        for path in metrics_dir.glob("drift_demo__v1__int8_*.npy")
        if np.load(path, mmap_mode="r")[:, 1:].sum() > 0
    }


@pytest.fixture(scope="module")
def traffic(
    server: PredictorServer, champion: TrainedBundle, metrics_dir: Path
) -> list[dict[str, object]]:
    """Requests until both REST workers have served some (at most 400)."""
    responses: list[dict[str, object]] = []
    while len(responses) < 400:
        responses.extend(infer(server, champion, len(responses)) for _ in range(40))
        deadline = time.monotonic() + 3  # workers bin their rows about once a second
        while len(pids_with_rows(metrics_dir)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        if len(pids_with_rows(metrics_dir)) == 2:
            return responses
    raise AssertionError("in 400 requests the kernel never handed a connection to worker 2")


def test_counts_are_summed_over_workers(
    server: PredictorServer, traffic: list[dict[str, object]]
) -> None:
    def served() -> float:
        return server.metric("creditmodel_requests_total", outcome="success", variant="int8")

    deadline = time.monotonic() + 10  # each worker flushes its counts at least once a second
    while served() != len(traffic) and time.monotonic() < deadline:
        time.sleep(0.2)
    for _ in range(6):  # each scrape may land on either worker; all must agree
        assert served() == len(traffic)
        assert server.metric("creditmodel_request_duration_seconds_count", variant="int8") == len(
            traffic
        )


def test_psi_window_covers_every_worker(
    server: PredictorServer, traffic: list[dict[str, object]]
) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # workers bin their rows within a second
        rows = server.metric("creditmodel_drift_window_rows", variant="int8", version="v1")
        if rows == len(traffic):
            break
        time.sleep(0.2)
    assert rows == len(traffic)
    text = server.metrics()
    assert 'creditmodel_score_psi{model="demo",variant="int8",version="v1"}' in text
    assert 'creditmodel_feature_psi{feature="age",model="demo",variant="int8",version="v1"}' in text


def test_shadow_is_scored_but_never_answers(
    server: PredictorServer, champion: TrainedBundle, traffic: list[dict[str, object]]
) -> None:
    session = ort.InferenceSession(
        champion.bundle.files[MODEL_INT8], providers=["CPUExecutionProvider"]
    )
    (probability,) = session.run(["probability"], champion.feed(len(traffic)))
    answered = [r["outputs"][0]["data"][0] for r in traffic]  # type: ignore[index]
    np.testing.assert_allclose(answered, probability, rtol=1e-6, atol=1e-7)
    assert {r["model_version"] for r in traffic} == {"v1"}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        shadow = server.metric("creditmodel_predictions_total", variant="shadow", version="v2")
        if shadow == len(traffic):
            break
        time.sleep(0.2)
    assert shadow == len(traffic)
    assert server.metric("creditmodel_shadow_probability_delta_count", version="v2") == len(traffic)
    assert server.metric("creditmodel_shadow_failures_total") == 0


def test_prometheus_sees_the_contract_metrics(
    server: PredictorServer,
    traffic: list[dict[str, object]],
    prometheus: Callable[[Sequence[str]], PrometheusServer],
) -> None:
    """The queries the operator's canary analysis runs, against a real Prometheus."""
    prom = prometheus([f"127.0.0.1:{server.http_port}"])
    prom.wait_for_targets_up()
    total = prom.wait_for('sum(creditmodel_requests_total{model="demo",outcome="success"})')
    assert float(total[0]["value"][1]) == len(traffic)
    p99 = prom.wait_for(
        "histogram_quantile(0.99, sum by (le) (creditmodel_request_duration_seconds_bucket"
        '{model="demo",version="v1"}))'
    )
    assert 0 < float(p99[0]["value"][1]) < 1.0
    scores = prom.wait_for('sum by (le) (creditmodel_score_bucket{model="demo",version="v1"})')
    assert len(scores) == 32  # 31 fixed bounds (300..900 step 20) + Inf


def _connections_per_worker(server: PredictorServer, status: str) -> list[int]:
    """Per REST worker (a child holding the listening socket), its TCP connections on the
    REST port in `status`."""
    counts = []
    for child in psutil.Process(server.process.proc.pid).children():
        held = [c for c in child.connections("tcp") if c.laddr.port == server.http_port]
        if any(c.status == psutil.CONN_LISTEN for c in held):
            counts.append(sum(c.status == status for c in held))
    return counts


def test_keep_alive_connections_are_spread_evenly_over_workers(
    server: PredictorServer, champion: TrainedBundle, traffic: list[dict[str, object]]
) -> None:
    """16 keep-alive connections opened at once (as wrk or a client pool opens them) end up 8
    per worker. Without the balance (accept_balance.py) the first worker to wake takes every
    connection pending by then: splits of 16/0 and 12/4 were common."""
    deadline = time.monotonic() + 10
    while sum(_connections_per_worker(server, psutil.CONN_ESTABLISHED)) and (
        time.monotonic() < deadline  # earlier tests' connections, until the workers see them close
    ):
        time.sleep(0.1)
    assert _sixteen_connections_at_once(server, champion) == [8, 8]


def test_the_first_ready_answer_finds_every_worker_serving(
    champion: TrainedBundle, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A client pool that opens its connections on the first ready answer gets them spread too:
    the first worker up (about 0.2 s before the other) no longer answers ready alone."""
    logs = tmp_path_factory.mktemp("first-ready")
    with predictor_server(champion.uri, logs, extra=["--workers", "2"]) as running:
        assert _sixteen_connections_at_once(running, champion) == [8, 8]


def _sixteen_connections_at_once(server: PredictorServer, champion: TrainedBundle) -> list[int]:
    """Open 16 keep-alive connections back to back, as wrk opens them (the kernel completes
    each handshake before any accept), serve one request on each, and return how many each
    worker holds."""
    sockets = [socket.create_connection(("127.0.0.1", server.http_port)) for _ in range(16)]
    body = json.dumps({"inputs": champion.v2_inputs(1, 0)}).encode()
    try:
        for sock in sockets:
            connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
            connection.sock = sock
            connection.request("POST", f"/v2/models/{server.model_name}/infer", body,
                               {"content-type": "application/json"})  # fmt: skip
            response = connection.getresponse()
            assert response.status == 200, response.read()
            response.read()
        return _connections_per_worker(server, psutil.CONN_ESTABLISHED)
    finally:
        for sock in sockets:
            sock.close()


def test_workers_stop_when_the_model_server_dies(
    champion: TrainedBundle, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A model server killed outright (SIGKILL, the OOM killer) cannot stop its workers; each
    notices within a tick that its parent is gone and stops, instead of holding the port and
    answering unsupervised."""
    logs = tmp_path_factory.mktemp("orphans")
    with predictor_server(champion.uri, logs, extra=["--workers", "2"]) as running:
        model_server = psutil.Process(running.process.proc.pid)
        children = model_server.children()  # the workers and multiprocessing's resource tracker
        workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2, [p.cmdline() for p in children]
        model_server.kill()
        _, alive = psutil.wait_procs(children, timeout=10)
        orphans = [p.pid for p in alive]
        for orphan in alive:
            orphan.kill()
        assert not orphans, f"processes {orphans} outlived their model server"
        assert "the model server that started this worker is gone" in running.process.log_tail()
