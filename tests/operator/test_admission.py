"""Admission on a real kube-apiserver: every invalid CreditModel of bad_creditmodels.py is refused
with a message naming the field (OpenAPI patterns, maxLength, CEL), messages stay bounded however
large the value, and the samples still apply."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from pydantic import ValidationError

from creditmodel.operator.model import (
    MIN_REPLICAS_MESSAGE,
    SCALE_METRIC_MESSAGE,
    SCALE_REQUEST_MESSAGE,
    Spec,
)
from tests.operator.bad_creditmodels import CASES, NAMES, SCHEDULES, Bad, sample
from tests.operator.running import GROUP, PLURAL, VERSION
from tests.support.kube import Kube

pytestmark = pytest.mark.integration

MESSAGE_MAX = 1000
"""A refusal quotes the rule, never the (possibly megabyte-long) value."""


def create(kube: Kube, body: dict[str, Any], **options: Any) -> Any:
    api = client.CustomObjectsApi(kube.api)
    return api.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, kube.namespace, PLURAL, body, **options
    )


def refusal(kube: Kube, body: dict[str, Any], **options: Any) -> tuple[int, str]:
    with pytest.raises(client.ApiException) as caught:
        create(kube, body, **options)
    return caught.value.status, str(json.loads(caught.value.body)["message"])


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_invalid_creditmodel_is_refused_naming_the_field(crds: Kube, case: Bad) -> None:
    status, message = refusal(crds, case.body())
    assert status == 422, message
    assert f"{case.field}:" in message, message
    assert len(message) < MESSAGE_MAX, message[:MESSAGE_MAX]


@pytest.mark.parametrize(("schedule", "id"), SCHEDULES, ids=[id for _, id in SCHEDULES])
def test_out_of_range_cron_schedule_is_refused(crds: Kube, schedule: str, id: str) -> None:
    body = sample("trained")
    body["spec"]["monitoring"]["driftSchedule"] = schedule
    status, message = refusal(crds, body)
    assert status == 422
    assert "spec.monitoring.driftSchedule:" in message, message


@pytest.mark.parametrize(("name", "id"), NAMES, ids=[id for _, id in NAMES])
def test_names_kserve_cannot_deploy_are_refused(crds: Kube, name: str, id: str) -> None:
    body = sample()
    body["metadata"]["name"] = name
    status, message = refusal(crds, body)
    assert status == 422
    assert "metadata.name must start with a lowercase letter" in message, message
    assert "InferenceService" in message
    assert "<nil>" not in message  # the rule names its field (fieldPath), not the whole object
    assert "metadata.name: Invalid value" in message, message


def test_unknown_gate_is_refused_by_strict_clients_and_dropped_otherwise(crds: Kube) -> None:
    """Gates are typed fields: `gates: {output: 1}` (which once appended `--output 1` to the
    training Job, redirecting its bundle) is an unknown field. kubectl's default (Strict) refuses
    it naming the field; a lenient client gets a warning and the API server prunes it."""
    body = sample("trained")
    body["spec"]["training"]["gates"] = {"output": 1, "maxBrier": 0.2}
    status, message = refusal(crds, body, field_validation="Strict")
    assert status == 400
    assert 'unknown field "spec.training.gates.output"' in message, message
    created, _, headers = create(crds, body, field_validation="Warn")
    assert created["spec"]["training"]["gates"] == {"maxBrier": 0.2}
    warning = headers.get("Warning", "")
    assert "unknown field" in warning
    assert "spec.training.gates.output" in warning


def test_valid_edges_are_accepted(crds: Kube) -> None:
    """The rules are not stricter than the platform: what KServe, Gateway API and S3 take."""
    body = sample("trained")
    spec = body["spec"]
    spec["model"]["bundleURI"] = "/opt/creditmodel/models/german-credit"
    spec["predictor"] = {
        "image": "registry.example.com:5000/risk/credit_predictor:1.2.3-rc.1@sha256:" + "a" * 64,
        "serviceAccountName": "credit-predictor",
        "resources": {"requests": {"cpu": "0.5", "memory": 536870912}, "limits": {"cpu": 2}},
    }
    spec["rollout"] = {
        "router": "gatewayAPI",
        "gateway": {
            "name": "shared.gateway",
            "namespace": "gateway-system",
            "sectionName": "https",
        },
        "hostnames": ["credit.example.com", "localhost"],
        "analysis": {"prometheusURL": "https://[fd00::10]:9091/prometheus"},
    }
    spec["training"]["gates"] = {
        "aucMarginVsBaseline": 0,
        "maxBrier": 1,
        "fairnessMinGroup": 1,
        "cpuModels": [],
    }
    spec["training"]["dataURI"] = "file:///opt/data/german_credit.v2+extra.csv"
    spec["storage"] = {"endpoint": "http://10.0.0.5:9000", "region": "eu-west-1"}
    spec["monitoring"]["driftSchedule"] = "*/15 9-17 ? jan-MAR mon-fri"
    created, _, _ = create(crds, body)
    assert created["spec"]["predictor"]["resources"]["limits"] == {"cpu": 2}


SCALE_METRICS = [
    ("gatewayAPI", "cpu", True),
    ("gatewayAPI", "memory", True),
    ("gatewayAPI", "concurrency", False),
    ("gatewayAPI", "rps", False),
    ("knative", "concurrency", True),
    ("knative", "rps", True),
    ("knative", "cpu", False),  # KServe's webhook: "[cpu] is not a supported metric"
    ("knative", "memory", False),
]


def assert_predictor_rule(
    crds: Kube, router: str, predictor: dict[str, Any], allowed: bool, says: str
) -> None:
    """`predictor` under `router` is stored, or refused by the API server (422, a spec-level
    rule saying `says`) and by the operator's typed spec alike."""
    body = sample()
    body["spec"]["rollout"]["router"] = router
    body["spec"]["predictor"] = predictor
    if allowed:
        create(crds, body)
        Spec.model_validate(body["spec"])
        return
    status, message = refusal(crds, body)
    assert status == 422
    assert "spec: Invalid value" in message, message
    assert says in message, message
    with pytest.raises(ValidationError) as caught:
        Spec.model_validate(body["spec"])
    assert says in str(caught.value)


@pytest.mark.parametrize(("router", "metric", "allowed"), SCALE_METRICS)
def test_scale_metric_must_suit_the_routers_autoscaler(
    crds: Kube, router: str, metric: str, allowed: bool
) -> None:
    """An HPA (gatewayAPI, KServe Standard mode) scales on cpu or memory; the Knative Pod
    Autoscaler only on concurrency or rps. The operator's typed spec agrees."""
    assert_predictor_rule(crds, router, {"scaleMetric": metric}, allowed, SCALE_METRIC_MESSAGE)


@pytest.mark.parametrize(("router", "allowed"), [("gatewayAPI", False), ("knative", True)])
def test_scale_to_zero_needs_knative(crds: Kube, router: str, allowed: bool) -> None:
    """minReplicas 0 was accepted with router gatewayAPI, where KServe's HPA keeps one pod
    anyway: a setting silently not honoured."""
    assert_predictor_rule(crds, router, {"minReplicas": 0}, allowed, MIN_REPLICAS_MESSAGE)


@pytest.mark.parametrize(
    ("router", "predictor", "allowed"),
    [
        ("gatewayAPI", {"resources": {"limits": {"memory": "2Gi"}}}, False),
        ("gatewayAPI", {"resources": {}}, False),
        ("gatewayAPI", {"scaleMetric": "memory", "resources": {"requests": {"cpu": "1"}}}, False),
        ("gatewayAPI", {"resources": {"limits": {"cpu": "2"}}}, True),  # copied to the request
        (
            "gatewayAPI",
            {"scaleMetric": "memory", "resources": {"requests": {"memory": "1Gi"}}},
            True,
        ),
        ("gatewayAPI", {}, True),  # the CRD's default resources request cpu
        ("knative", {"resources": {}}, True),  # the KPA scales on concurrency
    ],
)
def test_an_hpa_needs_a_request_for_its_metric(
    crds: Kube, router: str, predictor: dict[str, Any], allowed: bool
) -> None:
    """Resources without a request for the scale metric were accepted: KServe's HPA then
    reports it cannot compute a replica count, and the predictor never scales."""
    assert_predictor_rule(crds, router, predictor, allowed, SCALE_REQUEST_MESSAGE)


@pytest.mark.parametrize(
    ("request_", "limit"),
    [("350m", "0.35"), ("12e-1", "1.2"), ("1e400", "1e500"), ("1E", "1Ei"), ("3e-1", "300m")],
)
def test_requests_at_their_limits_in_other_spellings_are_accepted_by_both(
    crds: Kube, request_: str, limit: str
) -> None:
    """The API server compares quantities exactly; the operator compared floats and refused a
    CreditModel the API server had stored (350m above 0.35), or crashed on 1e400."""
    body = sample()
    body["spec"]["predictor"] = {
        "resources": {"requests": {"cpu": request_}, "limits": {"cpu": limit}}
    }
    create(crds, body)
    Spec.model_validate(body["spec"])
