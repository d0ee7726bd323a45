"""The operator refuses what the API server refuses: the typed spec (model.py) runs the same checks
(validation.py) as the CRD's patterns and CEL rules, the CRD carries the very same regular
expressions and messages, every field is described, and typed gates meet the training CLI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from creditmodel.operator import builders, validation
from creditmodel.operator.model import Gates, Spec
from tests.operator.bad_creditmodels import CASES, NAMES, SCHEDULES, Bad, sample
from tests.operator.factories import spec
from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.unit

CRD = REPO_ROOT / "manifests" / "crd" / "scoring.creditmodel.io_creditmodels.yaml"


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def node(path: str) -> dict[str, Any]:
    """The schema of a dotted field path (`[]` steps into array items and map values)."""
    current = crd_schema()
    for part in path.split("."):
        if part == "[]":
            current = current.get("items") or current["additionalProperties"]
        else:
            current = current["properties"][part]
    return current


def errors(body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        Spec.model_validate(body)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in caught.value.errors()]


# --- the same list as test_admission.py, through the operator's typed spec -------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_operator_refuses_the_same_spec_naming_the_field(case: Bad) -> None:
    found = errors(case.body()["spec"])
    assert any(loc.startswith(case.loc) for loc, _ in found), found
    assert all(len(message) < 400 for _, message in found)


@pytest.mark.parametrize(("schedule", "id"), SCHEDULES, ids=[id for _, id in SCHEDULES])
def test_operator_names_every_refused_schedule(schedule: str, id: str) -> None:
    assert not validation.matches(validation.CRON, schedule)
    assert validation.cron_problem(schedule)


@pytest.mark.parametrize(("name", "id"), NAMES, ids=[id for _, id in NAMES])
def test_operator_names_every_refused_name(name: str, id: str) -> None:
    assert validation.name_problem(name, "risk") == validation.NAME_MESSAGE


def test_only_a_namespace_too_long_for_any_isvc_name_is_a_name_problem() -> None:
    """A 40-character name in namespace credit-risk-production never deployed (issue 11): now
    builders.isvc_name shortens it, and only a namespace with no room for any name is refused."""
    assert validation.name_problem("a" * 40, "credit-risk-production") is None
    assert validation.name_problem("a" * 40, "n" * validation.NAMESPACE_MAX) is None
    problem = validation.name_problem("german", "n" * (validation.NAMESPACE_MAX + 1))
    assert problem is not None
    assert f"longer than {validation.NAMESPACE_MAX}" in problem
    shortest = builders.isvc_name("g", "s3://b/v1", "n" * validation.NAMESPACE_MAX)
    assert len(f"{shortest}-predictor-{'n' * validation.NAMESPACE_MAX}") == 63


def test_samples_are_valid_for_the_operator() -> None:
    for name in ("serving", "trained"):
        Spec.model_validate(sample(name)["spec"])


def test_spec_level_rules_match_the_crds() -> None:
    messages = [m for _, m in errors({"model": {}, "rollout": {"router": "knative"}})]
    assert any("spec needs a model source" in m for m in messages)
    messages = [m for _, m in errors({"model": {"bundleURI": "s3://bkt/v1"}})]
    assert any("router gatewayAPI needs rollout.gateway" in m for m in messages)
    knative = {"model": {"bundleURI": "s3://bkt/v1"}, "rollout": {"router": "knative"}}
    assert errors({**knative, "predictor": {"minReplicas": 5, "maxReplicas": 2}})
    assert errors({**knative, "rollout": {"router": "knative", "steps": [50, 25]}})
    monitoring = {"predictionLogURI": "s3://logs", "retrainOnDriftPSI": 0.2}
    assert errors({**knative, "monitoring": monitoring})


# --- one set of regular expressions and messages: the CRD carries this module's -------------------

V = validation
RULES: dict[str, list[str]] = {
    "spec.model.bundleURI": [V.BUNDLE_URI, V.BAD_BUCKET, V.BUNDLE_MESSAGE, V.BUCKET_MESSAGE],
    "spec.predictor.image": [V.IMAGE, V.IMAGE_MESSAGE],
    "spec.predictor.serviceAccountName": [V.DNS_SUBDOMAIN],
    "spec.rollout.gateway.name": [V.DNS_SUBDOMAIN],
    "spec.rollout.gateway.namespace": [V.DNS_LABEL],
    "spec.rollout.gateway.sectionName": [V.DNS_SUBDOMAIN],
    "spec.rollout.hostnames.[]": [V.HOSTNAME, V.HOSTNAME_MESSAGE],
    "spec.rollout.analysis.prometheusURL": [
        V.HTTP_URL,
        V.METADATA_URL,
        V.HTTP_URL_MESSAGE,
        V.METADATA_MESSAGE,
    ],
    "spec.storage.endpoint": [V.HTTP_URL, V.METADATA_URL],
    "spec.storage.region": [V.DNS_LABEL],
    "spec.storage.secretName": [V.DNS_SUBDOMAIN],
    "spec.training.image": [V.IMAGE],
    "spec.training.dataURI": [V.BUNDLE_URI, V.BAD_BUCKET],
    "spec.training.target": [V.COLUMN, V.COLUMN_MESSAGE],
    "spec.training.positiveLabel": [V.COLUMN],
    "spec.training.outputURI": [V.S3_URI, V.BAD_BUCKET, V.S3_MESSAGE],
    "spec.monitoring.predictionLogURI": [V.S3_URI, V.BAD_BUCKET],
    "spec.monitoring.driftSchedule": [V.CRON, V.CRON_MESSAGE],
    "spec.monitoring.image": [V.IMAGE],
}


@pytest.mark.parametrize("path", RULES)
def test_crd_field_carries_the_operators_rules(path: str) -> None:
    field = node(path)
    text = [field.get("pattern", "")] + [
        part
        for rule in field.get("x-kubernetes-validations", [])
        for part in (rule["rule"], rule.get("message", ""))
    ]
    for expected in RULES[path]:
        assert any(expected in item for item in text), f"{path} lacks {expected[:60]!r}"


def test_crd_name_rule_is_the_operators() -> None:
    (rule,) = crd_schema()["x-kubernetes-validations"]
    assert validation.RESOURCE_NAME in rule["rule"]
    assert f"<= {validation.NAME_MAX}" in rule["rule"]
    assert rule["message"] == validation.NAME_MESSAGE


def _fields(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, child in schema.get("properties", {}).items():
        yield f"{path}.{name}", child
        yield from _fields(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _fields(schema[key], f"{path}[]")


def test_every_spec_field_is_described_and_bounded() -> None:
    """`kubectl explain creditmodel.spec...` helps for every field; every string has a maxLength
    (or an enum) and every array a maxItems, which also keeps the CEL cost estimates bounded."""
    undescribed, unbounded = [], []
    for path, field in _fields(node("spec"), "spec"):
        if not field.get("description"):
            undescribed.append(path)
        kind = field.get("type")
        if kind == "string" and "maxLength" not in field and "enum" not in field:
            unbounded.append(path)
        if kind == "array" and "maxItems" not in field:
            unbounded.append(path)
        if kind == "object" and "additionalProperties" in field and "maxProperties" not in field:
            unbounded.append(path)
    assert not undescribed, undescribed
    assert not unbounded, unbounded


# --- cron: what the CRD admits, the operator understands -------------------------------------------


def _field(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """One cron field, its values drawn from just past both ends of its range."""
    value = st.one_of(st.integers(low - 1, high + 1).map(str), *map(st.just, names))
    item = st.one_of(
        st.just("*"),
        value,
        st.tuples(value, value).map("-".join),
        st.tuples(st.one_of(st.just("*"), value), st.integers(0, 12)).map("{0[0]}/{0[1]}".format),
    )
    return st.lists(item, min_size=1, max_size=3).map(",".join)


_SCHEDULE = st.tuples(
    _field(0, 59),
    _field(0, 23),
    _field(1, 31, ("?",)),
    _field(1, 12, ("jan", "Mar", "DEC", "foo")),
    _field(0, 6, ("mon", "FRI", "sun", "?")),
).map(" ".join)


@settings(max_examples=500)
@given(_SCHEDULE)
def test_a_schedule_the_crd_admits_is_one_the_operator_accepts(schedule: str) -> None:
    """The CRD checks shape and ranges; the operator additionally refuses ranges running
    backwards (Degraded, naming the field). Nothing else may differ."""
    if validation.matches(validation.CRON, schedule):
        problem = validation.cron_problem(schedule)
        assert problem is None or "runs backwards" in problem, (schedule, problem)


@pytest.mark.parametrize(
    "schedule", ["0 * * * *", "*/15 2-4 1,15 jan-mar mon-fri", "@hourly", "5 4 * * 6", "0 0 ? * *"]
)
def test_valid_schedules_pass_both(schedule: str) -> None:
    assert validation.matches(validation.CRON, schedule)
    assert validation.cron_problem(schedule) is None


# --- typed gates meet the training CLI --------------------------------------------------------------


def test_gates_are_the_crds_and_map_to_training_flags() -> None:
    crd_gates = set(node("spec.training.gates")["properties"])
    assert {Gates.model_fields[f].alias for f in builders.GATE_FLAGS} == crd_gates
    assert set(builders.GATE_FLAGS) == set(Gates.model_fields)


def _extremes(field: dict[str, Any]) -> list[float]:
    low = float(field["minimum"]) + (1e-12 if field.get("exclusiveMinimum") else 0.0)
    return [low, float(field["maximum"])]


def test_every_gate_value_the_crd_admits_is_one_the_training_cli_takes() -> None:
    """Both ends of each range, through the Job's real argument list, parsed by creditmodel-train's
    own parser and validated by its own config model."""
    cli = pytest.importorskip("creditmodel.training.cli")
    config = pytest.importorskip("creditmodel.training.config")
    crd_gates = node("spec.training.gates")["properties"]
    training = sample("trained")["spec"]["training"]
    for end in (0, 1):
        gates: dict[str, Any] = {
            name: _extremes(field)[end]
            for name, field in crd_gates.items()
            if field["type"] in ("number", "integer")
        }
        gates = {k: int(v) if crd_gates[k]["type"] == "integer" else v for k, v in gates.items()}
        gates["cpuModels"] = [] if end == 0 else crd_gates["cpuModels"]["items"]["enum"]
        the_spec = spec(training={**training, "gates": gates})
        job = builders.build_training_job(
            builders.Owner("german", "risk", "uid"), the_spec, 1, "v1", "s3://bundles/v1"
        )
        args = cli.parser().parse_args(job["spec"]["template"]["spec"]["containers"][0]["args"])
        thresholds = {
            field: getattr(args, field) for field in builders.GATE_FLAGS if field != "cpu_models"
        }
        parsed = config.GateThresholds.model_validate(thresholds)
        assert parsed.max_brier == pytest.approx(gates["maxBrier"])
        assert args.output == "s3://bundles/v1"
        expected = ["none"] if end == 0 else ["Haswell", "Nehalem"]
        assert args.cpu_models == expected


_SCALES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


@st.composite
def _spellings(draw: st.DrawFn) -> tuple[str, str]:
    """Two spellings of one quantity, digits * 10**power: with a decimal suffix and trailing
    zeros, and as an exponent."""
    digits = draw(st.integers(1, 10**12))
    power = draw(st.integers(-9, 500))
    suffix = draw(st.sampled_from([s for s, scale in _SCALES.items() if scale <= power]))
    return f"{digits}{'0' * (power - _SCALES[suffix])}{suffix}", f"{digits}e{power}"


@settings(max_examples=200, deadline=None)
@given(_spellings(), st.sampled_from(["cpu", "memory"]))
def test_a_request_equal_to_its_limit_in_another_spelling_is_accepted(
    pair: tuple[str, str], resource: str
) -> None:
    """Compared as floats, 350m was above 0.35 and 1e400 overflowed: exact, as the API server."""
    first, second = pair
    for request, limit in ((first, second), (second, first)):
        resources = {"requests": {resource: request}, "limits": {resource: limit}}
        spec(predictor={"resources": resources, "scaleMetric": resource})
    above = {"requests": {resource: second.replace("e", "1e", 1)}, "limits": {resource: first}}
    with pytest.raises(ValidationError, match="every request must be at most its limit"):
        spec(predictor={"resources": above, "scaleMetric": resource})


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("350m", "0.35"), ("1E", "1e18"), ("1Ei", "1152921504606846976"), (".5", "0.5"),
     ("5.", "5"), ("+2k", "2000"), ("1e400", "1e400"), ("3e-1", "0.3")],
)  # fmt: skip
def test_quantities_are_read_exactly(quantity: str, value: str) -> None:
    from decimal import Decimal

    assert validation.quantity_value(quantity) == Decimal(value)
