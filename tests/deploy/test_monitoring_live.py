"""The chart's recording rules and every dashboard query, run by a real Prometheus against a real
`creditmodel-predictor` serving the reference bundle: the label sets and metric names line up
with what the predictor actually exports, not only with its docstring."""

from __future__ import annotations

import csv
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_monitoring import GRAFANA_VARIABLES, dashboard, panels, rule_groups
from tests.predictor.server import predictor_server
from tests.support.process import REPO_ROOT
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

MODEL = "german-credit"
DATA = REPO_ROOT / "training" / "creditmodel" / "training" / "data" / "german_credit.csv"
# Panels that only show data with a shadow challenger; the reference deployment has none.
SHADOW_PANELS = ("Shadow challenger",)


def post(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def v2_request(metadata: dict[str, Any], rows: list[dict[str, str]]) -> dict[str, Any]:
    inputs = []
    for spec in metadata["inputs"]:
        column: list[Any] = [row[spec["name"]] for row in rows]
        if spec["datatype"] != "BYTES":
            column = [float(value) for value in column]
        inputs.append(
            {
                "name": spec["name"],
                "datatype": spec["datatype"],
                "shape": [len(rows)],
                "data": column,
            }
        )
    return {"inputs": inputs}


def until(
    server: PrometheusServer,
    expr: str,
    check: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 30,
) -> list[dict[str, Any]]:
    """Poll the query until its result satisfies `check` (scrapes and rate windows take a moment)."""
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = server.query(expr)
        if check(result):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{expr} never satisfied the check; last result {result}")


def values(result: Sequence[dict[str, Any]]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


def test_rules_and_dashboard_against_a_live_predictor(
    tmp_path: Path, prometheus: Callable[..., PrometheusServer]
) -> None:
    with DATA.open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:200]
    # 200 rows of traffic: PSI is published from 100 (the default minimum is 500).
    with predictor_server(
        str(REPO_ROOT / "models" / MODEL),
        tmp_path,
        model_name=MODEL,
        extra=["--drift_min_rows", "100"],
    ) as server:
        with urllib.request.urlopen(f"{server.url}/v2/models/{MODEL}", timeout=10) as response:
            metadata = json.loads(response.read())
        live = prometheus([f"127.0.0.1:{server.http_port}"])
        live.wait_for_targets_up()
        bad = v2_request(metadata, rows[:1])
        numeric = next(i for i in bad["inputs"] if i["datatype"] != "BYTES")
        numeric["data"] = [-1e9]  # out of the feature's valid range: refused, counted as an error
        # Traffic spread over several scrapes, so that rate() sees the counters move.
        for round_ in range(5):
            for start in range(round_ * 40, round_ * 40 + 40, 10):
                assert post(server.infer_url, v2_request(metadata, rows[start : start + 10])) == 200
            assert post(server.infer_url, bad) == 400
            time.sleep(1.2)
        until(live, "creditmodel_requests_total", lambda r: len(r) == 2)

        recording = {rule["record"]: rule["expr"] for rule in rule_groups()[0]["rules"]}
        requests = until(live, recording["creditmodel:requests:rate5m"], lambda r: len(r) == 1)
        assert set(requests[0]["metric"]) == {"model", "version", "variant"}
        assert requests[0]["metric"]["model"] == MODEL
        errors = until(live, recording["creditmodel:request_errors:ratio_rate5m"], bool)
        assert 0 < values(errors)[0] < 1  # 5 refused out of 25 requests
        p99 = until(live, recording["creditmodel:request_duration_seconds:p99_5m"], bool)
        assert 0 < values(p99)[0] < 5
        share = until(live, recording["creditmodel:traffic_share:ratio_rate5m"], bool)
        assert values(share) == [1.0]  # one version serves everything

        # The served variant (int8) has PSI for every input; fp32 has none until it gets rows.
        psi = until(
            live,
            'creditmodel_feature_psi{variant="int8"}',
            lambda r: len(r) == len(metadata["inputs"]),
        )
        assert all(math.isfinite(v) for v in values(psi)), [
            (s["metric"]["feature"], s["value"][1])
            for s in psi
            if not math.isfinite(float(s["value"][1]))
        ]

        board = dashboard()
        for panel in panels(board):
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in {
                    **GRAFANA_VARIABLES,
                    "$namespace": ".*",
                    "$model": MODEL,
                    "$__rate_interval": "1m",
                }.items():
                    expr = expr.replace(variable, value)
                result = live.query(expr)  # a malformed query raises here
                if not panel["title"].startswith(SHADOW_PANELS):
                    assert result, f"panel {panel['title']!r} shows nothing: {expr}"
