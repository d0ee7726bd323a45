"""Alerts, recording rules and the dashboard: real promtool parses every PromQL expression, and the
alerts are unit-tested on synthetic series (promtool test rules)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import CHART, Object, one, render
from tests.support.process import REPO_ROOT, tool

pytestmark = pytest.mark.integration

DASHBOARD = CHART / "files" / "dashboards" / "creditmodel.json"
METRICS_MODULE = REPO_ROOT / "predictor" / "creditmodel" / "predictor" / "metrics.py"
# Grafana's variables are not PromQL: substitute what Grafana would before asking promtool.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$namespace": "risk",
    "$model": "german-credit",
    "$version": ".*",
}


def promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("promtool")), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def rule_groups(json_values: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    objects = render(values=("monitoring.prometheusRule.enabled=true",), json_values=json_values)
    rule = one(objects, "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in board["panels"] if panel["type"] != "row"]


def dashboard_expressions(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(board) for target in panel["targets"]]


def contract_metrics() -> set[str]:
    """The metric names the predictor documents as its contract (module docstring of metrics.py)."""
    docstring = METRICS_MODULE.read_text().split('"""')[1]
    return set(re.findall(r"^\s+(creditmodel_\w+)\{", docstring, re.MULTILINE))


def referenced_metrics(expression: str) -> set[str]:
    names = set(re.findall(r"\b(creditmodel_[a-z_]+)\b", expression))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


@pytest.mark.parametrize(
    "values",
    [(), ("monitoring.prometheusRule.psiThreshold=0.3", 'monitoring.prometheusRule.for="1h"')],
    ids=["defaults", "non-default"],
)
def test_promtool_accepts_the_rules(tmp_path: Path, values: tuple[str, ...]) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(values)}))
    run = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS: 12 rules found" in run.stdout


def test_promtool_rejects_a_broken_expression(tmp_path: Path) -> None:
    """The check above can fail: promtool refuses PromQL that does not parse."""
    groups = rule_groups()
    groups[0]["rules"][0]["expr"] = "sum by (model (rate(creditmodel_requests_total[5m]))"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    run = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert run.returncode != 0
    assert "parse error" in run.stdout + run.stderr


def test_promtool_accepts_every_dashboard_expression(tmp_path: Path) -> None:
    expressions = dashboard_expressions(dashboard())
    rules = []
    for index, expression in enumerate(expressions):
        promql = expression
        for variable, value in GRAFANA_VARIABLES.items():
            promql = promql.replace(variable, value)
        assert "$" not in promql, f"unknown Grafana variable in: {expression}"
        rules.append({"record": f"dashboard:panel_expression_{index}", "expr": promql})
    (tmp_path / "dashboard.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    run = promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in run.stdout


def test_rules_and_dashboard_use_only_documented_predictor_metrics() -> None:
    documented = contract_metrics()
    assert "creditmodel_requests_total" in documented
    used: set[str] = set()
    for expression in dashboard_expressions(dashboard()):
        used |= referenced_metrics(expression)
    for group in rule_groups():
        for rule in group["rules"]:
            used |= referenced_metrics(rule["expr"])
    undocumented = {name for name in used if name not in documented}
    assert not undocumented, f"not in the predictor's metric contract: {undocumented}"


def test_dashboard_shows_what_operators_need() -> None:
    board = dashboard()
    assert board["uid"] == "creditmodel-overview"
    assert {v["name"] for v in board["templating"]["list"]} == {
        "datasource",
        "namespace",
        "model",
        "version",
    }
    titles = {panel["title"]: panel for panel in panels(board)}
    needed = {
        "Requests per second": "creditmodel_requests_total",
        "Request latency percentiles": "histogram_quantile(0.99",
        "Score distribution": "creditmodel_score_bucket",
        "PSI per feature": "creditmodel_feature_psi",
        "Score PSI": "creditmodel_score_psi",
        "Traffic share by version": "creditmodel_requests_total",
        "Versions serving": "count by (namespace, model, version, variant)",
    }
    for title, fragment in needed.items():
        assert title in titles, f"missing panel {title!r}"
        assert any(fragment in target["expr"] for target in titles[title]["targets"]), title
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24


def test_dashboard_configmap_embeds_the_json_unchanged() -> None:
    configmap: Object = one(
        render(values=("monitoring.grafanaDashboard.enabled=true",)), "ConfigMap"
    )
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["creditmodel.json"]) == dashboard()


# --- promtool unit tests of the alerts ---------------------------------------------------------------

LABELS = 'namespace="risk",model="gc",variant="int8"'


def requests(version: str, outcome: str, per_minute: int) -> dict[str, str]:
    return {
        "series": f'creditmodel_requests_total{{{LABELS},version="{version}",outcome="{outcome}"}}',
        "values": f"0+{per_minute}x40",
    }


def gauge(name: str, value: float, version: str = "v1", **labels: str) -> dict[str, str]:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return {"series": f'{name}{{{LABELS},version="{version}"{extra}}}', "values": f"{value}x40"}


def alert(name: str, labels: dict[str, str], summary: str, description: str) -> dict[str, Any]:
    return {
        "exp_labels": {"namespace": "risk", "model": "gc", **labels},
        "exp_annotations": {"summary": summary, "description": description},
    }


ALERT_TESTS: list[dict[str, Any]] = [
    {  # A canary (v2) fails 10% of its requests while v1 serves the rest.
        "interval": "1m",
        "input_series": [
            requests("v1", "success", 600),
            requests("v2", "success", 54),
            requests("v2", "error", 6),
        ],
        "alert_rule_test": [
            {
                "eval_time": "10m",
                "alertname": "CreditModelCanaryFailing",
                "exp_alerts": [
                    alert(
                        "CreditModelCanaryFailing",
                        {"severity": "critical", "version": "v2"},
                        "Canary of CreditModel risk/gc is failing.",
                        "Version v2 of risk/gc fails 10% of its requests while traffic is split"
                        " between versions. Check `kubectl describe creditmodel gc -n risk`.",
                    )
                ],
            },
            {
                "eval_time": "20m",
                "alertname": "CreditModelPredictorErrorRatioHigh",
                "exp_alerts": [
                    alert(
                        "CreditModelPredictorErrorRatioHigh",
                        {"severity": "warning", "version": "v2"},
                        "CreditModel predictor risk/gc refuses or fails requests.",
                        "10% of the requests to version v2 ended in an error;"
                        " `creditmodel_request_errors_total` breaks them down by reason.",
                    )
                ],
            },
        ],
    },
    {  # One version only: errors are not a canary failure; a healthy split alerts nothing.
        "interval": "1m",
        "input_series": [requests("v1", "success", 540), requests("v1", "error", 60)],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "CreditModelCanaryFailing", "exp_alerts": []}
        ],
    },
    {
        "interval": "1m",
        "input_series": [requests("v1", "success", 600), requests("v2", "success", 60)],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "CreditModelCanaryFailing", "exp_alerts": []},
            {
                "eval_time": "20m",
                "alertname": "CreditModelPredictorErrorRatioHigh",
                "exp_alerts": [],
            },
        ],
    },
    {  # Slow: every request between 50 ms and 250 ms, so p99 = 0.05 + 0.99 * 0.2 = 0.248 s.
        "interval": "1m",
        "input_series": [
            {
                "series": f'creditmodel_request_duration_seconds_bucket{{{LABELS},version="v1",le="{le}"}}',
                "values": f"0+{count}x40",
            }
            for le, count in (("0.05", 0), ("0.25", 600), ("+Inf", 600))
        ],
        "alert_rule_test": [
            {
                "eval_time": "20m",
                "alertname": "CreditModelPredictorLatencyHigh",
                "exp_alerts": [
                    alert(
                        "CreditModelPredictorLatencyHigh",
                        {"severity": "warning", "version": "v1"},
                        "CreditModel predictor risk/gc is slow.",
                        "p99 request latency of version v1 is 248ms (threshold 0.1s).",
                    )
                ],
            }
        ],
    },
    {  # Score and one feature drifted over a full window; another feature only shifts (watch).
        "interval": "1m",
        "input_series": [
            gauge("creditmodel_score_psi", 0.31),
            gauge("creditmodel_drift_window_rows", 2000),
            gauge("creditmodel_feature_psi", 0.4, feature="duration_months"),
            gauge("creditmodel_feature_psi", 0.15, feature="age_years"),
            gauge("creditmodel_feature_psi", 0.02, feature="purpose"),
        ],
        "alert_rule_test": [
            {
                "eval_time": "15m",
                "alertname": "CreditModelScoreDrift",
                "exp_alerts": [
                    alert(
                        "CreditModelScoreDrift",
                        {"severity": "warning", "version": "v1"},
                        "Score distribution of risk/gc drifted.",
                        "Score PSI of version v1 is 0.310 (> 0.25: act)."
                        " Consider retraining (spec.training.retrainOnScorePSI).",
                    )
                ],
            },
            {
                "eval_time": "15m",
                "alertname": "CreditModelFeatureDrift",
                "exp_alerts": [
                    alert(
                        "CreditModelFeatureDrift",
                        {"severity": "warning", "version": "v1", "feature": "duration_months"},
                        "Feature duration_months of risk/gc drifted.",
                        "PSI of duration_months is 0.400 (> 0.25: act).",
                    )
                ],
            },
            {
                "eval_time": "15m",
                "alertname": "CreditModelFeatureDriftWatch",
                "exp_alerts": [
                    alert(
                        "CreditModelFeatureDriftWatch",
                        {"severity": "info", "version": "v1", "feature": feature},
                        f"Feature {feature} of risk/gc is shifting.",
                        f"PSI of {feature} is {psi} (0.1 to 0.25: watch).",
                    )
                    # Watch fires above 0.1, so the drifted feature is in it too.
                    for feature, psi in (("age_years", "0.150"), ("duration_months", "0.400"))
                ],
            },
        ],
    },
    {  # The store refuses every part for a while: the prediction log loses rows.
        "interval": "1m",
        "input_series": [
            {
                "series": 'creditmodel_prediction_log_write_errors_total{namespace="risk",model="gc"}',
                "values": "0+1x40",
            },
            {
                "series": 'creditmodel_prediction_log_dropped_rows_total{namespace="risk",model="gc"}',
                "values": "0x40",
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": "20m",
                "alertname": "CreditModelPredictionLogFailing",
                "exp_alerts": [
                    alert(
                        "CreditModelPredictionLogFailing",
                        {"severity": "warning"},
                        "Prediction log of risk/gc loses rows.",
                        "Parts fail to upload or the bounded queue drops rows (the store is down,"
                        " slow, or refuses the credentials); scoring is unaffected, the drift"
                        " reports miss these rows. The predictor's log names the store's error.",
                    )
                ],
            }
        ],
    },
    {  # A healthy log: nothing fires.
        "interval": "1m",
        "input_series": [
            {
                "series": 'creditmodel_prediction_log_write_errors_total{namespace="risk",model="gc"}',
                "values": "3x40",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "CreditModelPredictionLogFailing", "exp_alerts": []}
        ],
    },
    {  # Too few rows in the window: PSI is noise, nothing fires.
        "interval": "1m",
        "input_series": [
            gauge("creditmodel_score_psi", 0.9),
            gauge("creditmodel_drift_window_rows", 120),
            gauge("creditmodel_feature_psi", 0.9, feature="duration_months"),
        ],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": "CreditModelScoreDrift", "exp_alerts": []},
            {"eval_time": "30m", "alertname": "CreditModelFeatureDrift", "exp_alerts": []},
        ],
    },
]


def test_alerts_fire_on_synthetic_series(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": ALERT_TESTS}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False, width=1000))
    run = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_alert_tests_can_fail(tmp_path: Path) -> None:
    """Raising the PSI threshold above the series silences the drift alert the tests expect."""
    groups = rule_groups(("monitoring.prometheusRule.psiThreshold=0.5",))
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": ALERT_TESTS[4:5]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False, width=1000))
    run = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert run.returncode != 0
    assert "CreditModelScoreDrift" in run.stdout + run.stderr
