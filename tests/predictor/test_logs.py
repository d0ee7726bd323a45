"""Stderr is one JSON object per line, Python's warnings included: the warnings module writes two
plain lines of its own (a library's deprecation on the first metadata request did, in each REST
worker), so the log config routes warnings through logging in every process that applies it."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.predictor.conftest import TrainedBundle
from tests.predictor.server import predictor_server

CONFIG = resources.files("creditmodel.predictor") / "log_config.json"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object (the assertion names the first that is not)."""
    documents = []
    for line in text.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            document = None
        assert isinstance(document, dict), f"not a JSON object: {line!r}"
        documents.append(document)
    return documents


@pytest.mark.unit
def test_the_log_config_writes_python_warnings_as_json_lines() -> None:
    script = (
        "import json, logging, logging.config, warnings\n"
        f"logging.config.dictConfig(json.load(open({str(CONFIG)!r})))\n"
        "warnings.warn('careful', UserWarning)\n"
        "logging.getLogger('creditmodel.predictor').info('after')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = json_lines(run.stderr)
    assert [(d["logger"], d["level"]) for d in lines] == [
        ("py.warnings", "warning"),
        ("creditmodel.predictor", "info"),
    ]
    assert "UserWarning: careful" in lines[0]["message"]


@pytest.mark.integration
def test_a_server_with_workers_writes_only_json_lines(
    champion: TrainedBundle, tmp_path: Path
) -> None:
    """Metadata and health through KServe's app in both REST workers (connections opened
    together are spread over them), then every line the server wrote is a JSON object."""
    with predictor_server(champion.uri, tmp_path, extra=["--workers", "2"]) as server:
        connections = [
            http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30) for _ in range(8)
        ]
        for connection in connections:
            connection.connect()
        for path in ("/v2/models/demo", "/v2/health/ready", "/v2/health/live", "/v2"):
            for connection in connections:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                assert response.status == 200, path
        for connection in connections:
            connection.close()
        time.sleep(0.5)  # a worker's last lines
        lines = json_lines(server.process.log_path.read_text())
    assert len({d["pid"] for d in lines}) >= 3  # the model server and both workers wrote
    warnings = [d for d in lines if d["logger"] == "py.warnings"]
    assert all(d["level"] == "warning" for d in warnings)


@pytest.mark.integration
def test_a_worker_started_in_place_of_a_dead_one_writes_json_lines(
    champion: TrainedBundle, tmp_path: Path
) -> None:
    """KServe starts the replacement of a dead REST worker without the log config its first
    workers get; the worker applies it itself, so its start-up lines are JSON too."""
    with predictor_server(champion.uri, tmp_path, extra=["--workers", "2"]) as server:
        model_server = psutil.Process(server.process.proc.pid)
        workers = [p for p in model_server.children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2
        workers[0].kill()
        deadline = time.monotonic() + 60
        replacement: set[int] = set()
        while time.monotonic() < deadline and not replacement:
            time.sleep(0.2)
            lines = json_lines(server.process.log_path.read_text())
            replacement = {d["pid"] for d in lines if "startup complete" in d["message"]} - {
                server.process.proc.pid,
                *(p.pid for p in workers),
            }
        assert replacement, "no replacement worker started within 60 s"
        time.sleep(0.5)
        lines = json_lines(server.process.log_path.read_text())
    assert any(d["pid"] in replacement for d in lines)
