"""The metric names and labels the operator's canary analysis queries are what a real predictor
exports: every selector of analysis.Queries, evaluated against a live `creditmodel-predictor`'s
/metrics (multiprocess mode, a shadow challenger beside the champion), matches samples, and the
samples a `by` clause groups on carry that label. The chart's alerts and dashboard ask only for
names the predictor exports."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from creditmodel.core import metrics as names
from creditmodel.operator import analysis
from tests.predictor.server import PredictorServer, predictor_server
from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.integration

MODEL = "german-credit"
BUNDLE = REPO_ROOT / "models" / MODEL
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\bby \(([^)]*)\)")
CHART = REPO_ROOT / "charts" / "creditmodel-operator"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorServer]:
    with predictor_server(
        str(BUNDLE),
        tmp_path_factory.mktemp("metrics-contract"),
        model_name=MODEL,
        # The challenger is the champion's own bundle: its series differ only by variant="shadow",
        # which the analysis must leave out.
        extra=["--shadow_model_dir", str(BUNDLE), "--drift_min_rows", "1"],
    ) as running:
        yield running


def post(server: PredictorServer, body: bytes) -> int:
    request = urllib.request.Request(
        server.infer_url, data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def samples(server: PredictorServer) -> list[Sample]:
    """Every sample of /metrics after scored, refused and shadow-scored requests."""
    body = (REPO_ROOT / "predictor" / "examples" / "german-credit-request.json").read_bytes()
    assert [post(server, body) for _ in range(5)] == [200] * 5
    refused = b'{"inputs": [{"name": "nope", "datatype": "FP32", "shape": [1], "data": [1]}]}'
    assert post(server, refused) == 400
    deadline = time.monotonic() + 30
    while True:
        found = [
            sample
            for family in text_string_to_metric_families(server.metrics())
            for sample in family.samples
        ]
        if any(
            s.name == names.bucket(names.SCORE) and s.labels.get(names.VARIANT) == names.SHADOW
            for s in found
        ):
            return found
        assert time.monotonic() < deadline, "the shadow challenger was never scored"
        time.sleep(0.2)


def version() -> str:
    return str(json.loads((BUNDLE / "manifest.json").read_text())["version"])


def matches(sample: Sample, matchers: list[tuple[str, str, str]]) -> bool:
    for label, op, value in matchers:
        assert op in ("=", "!="), f"{op}: extend this test's matcher"
        if (sample.labels.get(label, "") == value) != (op == "="):
            return False
    return True


def selectors(query: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    found = []
    for metric, inner in SELECTOR.findall(query):
        matchers = MATCHER.findall(inner)
        rebuilt = ",".join(f'{label}{op}"{value}"' for label, op, value in matchers)
        assert rebuilt == inner, f"unparsed matchers in {inner!r}"
        found.append((metric, matchers))
    assert found, query
    return found


def test_every_analysis_query_selects_real_samples(samples: list[Sample]) -> None:
    queries = analysis.Queries.build(MODEL, version(), version(), 60)
    for field in analysis.Queries.__dataclass_fields__:
        query = getattr(queries, field)
        grouping = [label.strip() for by in GROUPING.findall(query) for label in by.split(",")]
        for metric, matchers in selectors(query):
            of_metric = [s for s in samples if s.name == metric]
            assert of_metric, f"{field}: the predictor exports no {metric}"
            for label, _, _ in matchers:
                assert any(label in s.labels for s in of_metric), (
                    f"{field}: {metric} has no {label}"
                )
            selected = [s for s in of_metric if matches(s, matchers)]
            assert selected, f"{field}: {query} selects none of {of_metric}"
            for label in grouping:
                assert all(label in s.labels for s in selected), f"{field}: by ({label})"


def test_the_analysis_leaves_the_shadow_series_out(samples: list[Sample]) -> None:
    """The shadow shares the champion's version here: only the variant tells them apart."""
    shadow = [s for s in samples if s.labels.get(names.VARIANT) == names.SHADOW]
    assert {s.name for s in shadow} >= {names.bucket(names.SCORE), names.SCORE_PSI}
    query = analysis.Queries.build(MODEL, version(), version(), 60).canary_scores
    for metric, matchers in selectors(query):
        assert not [s for s in shadow if s.name == metric and matches(s, matchers)]


def test_success_and_error_outcomes_are_the_ones_counted(samples: list[Sample]) -> None:
    requests = [s for s in samples if s.name == names.total(names.REQUESTS)]
    outcomes = {s.labels[names.OUTCOME] for s in requests if s.value > 0}
    assert outcomes == {names.SUCCESS, names.ERROR}


def exposed(samples: list[Sample]) -> set[str]:
    """Every name a PromQL query can ask for."""
    return {s.name for s in samples} | {
        s.name.removesuffix(suffix) for s in samples for suffix in ("_bucket", "_total")
    }


def test_chart_alerts_and_dashboard_ask_for_exported_names(samples: list[Sample]) -> None:
    """The chart's queries (rules and panels) name only metrics a predictor exports."""
    texts = [
        (CHART / "templates" / "prometheusrule.yaml").read_text(),
        *(path.read_text() for path in sorted((CHART / "files" / "dashboards").glob("*.json"))),
    ]
    asked = {name for text in texts for name in re.findall(r"\bcreditmodel_[a-z_]+", text)}
    # Series that appear only after a failure the test does not provoke.
    rare = {
        names.total(name)
        for name in (
            names.SHADOW_DROPPED_ROWS,
            names.SHADOW_FAILURES,
            names.LOG_DROPPED_ROWS,
            names.LOG_WRITE_ERRORS,
        )
    }
    assert asked - exposed(samples) - rare == set()
