"""The `prometheus` fixture is a real Prometheus: prove it scrapes a live target and answers queries."""

from __future__ import annotations

import sys
import textwrap
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.process import ManagedProcess, free_port
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

EXPORTER = textwrap.dedent("""
    import sys, time
    from prometheus_client import Counter, start_http_server
    served = Counter("creditmodel_fixture_ticks", "Ticks of the fixture exporter")
    served.inc(41)
    start_http_server(int(sys.argv[1]), addr="127.0.0.1")
    served.inc()
    while True:
        time.sleep(1)
""")


def test_scrapes_target_and_answers_queries(
    prometheus: Callable[..., PrometheusServer], tmp_path: Path
) -> None:
    port = free_port()
    script = tmp_path / "exporter.py"
    script.write_text(EXPORTER)
    exporter = ManagedProcess("exporter", [sys.executable, script, str(port)], tmp_path)
    try:
        exporter.wait_ready(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).status
            == 200,
            timeout=20,
            what="serving /metrics",
        )
        server = prometheus([f"127.0.0.1:{port}"], "1s", {"namespace": "team-a"})
        server.wait_for_targets_up()
        samples = server.wait_for("creditmodel_fixture_ticks_total")
        assert float(samples[0]["value"][1]) == 42.0
        assert samples[0]["metric"]["namespace"] == "team-a"
        assert server.query('up{job="creditmodel"}')[0]["value"][1] == "1"
    finally:
        exporter.stop()
