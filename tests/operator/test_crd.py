"""The CRD on a real kube-apiserver: samples are accepted with defaults filled in, bad specs are
refused by the API server with a message naming the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client

from tests.operator.running import GROUP, PLURAL, VERSION
from tests.support.kube import Kube, load_yaml_documents
from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.integration

SAMPLES = sorted((REPO_ROOT / "manifests" / "samples").glob("creditmodel*.yaml"))


def sample() -> dict[str, Any]:
    return copy.deepcopy(
        load_yaml_documents(REPO_ROOT / "manifests" / "samples" / "creditmodel.yaml")[0]
    )


def create(kube: Kube, body: dict[str, Any]) -> dict[str, Any]:
    api = client.CustomObjectsApi(kube.api)
    result: dict[str, Any] = api.create_namespaced_custom_object(
        GROUP, VERSION, kube.namespace, PLURAL, body
    )
    return result


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_are_accepted(crds: Kube, path: Any) -> None:
    for document in load_yaml_documents(path):
        created = create(crds, document)
        assert created["spec"]["rollout"]["steps"]


def test_defaults_are_filled_in(crds: Kube) -> None:
    body = sample()
    del body["spec"]["predictor"]
    del body["spec"]["rollout"]["steps"]
    created = create(crds, body)
    assert created["spec"]["predictor"]["minReplicas"] == 1
    assert created["spec"]["predictor"]["maxReplicas"] == 3
    assert created["spec"]["rollout"]["steps"] == [10, 25, 50]
    assert created["spec"]["rollout"]["analysis"]["maxFailedChecks"] == 2
    assert created["spec"]["rollout"]["paused"] is False


def test_monitoring_defaults_are_filled_in(crds: Kube) -> None:
    body = sample()
    body["spec"]["monitoring"] = {"predictionLogURI": "s3://predictions/credit"}
    monitoring = create(crds, body)["spec"]["monitoring"]
    assert monitoring == {
        "predictionLogURI": "s3://predictions/credit",
        "sampleRate": 1,
        "driftSchedule": "0 * * * *",
        "driftWindow": "24h",
        "retrainCooldownSeconds": 86400,
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"cpu": "1", "memory": "2Gi"},
        },
    }


def _without_source(body: dict[str, Any]) -> None:
    body["spec"]["model"] = {}


def _decreasing_steps(body: dict[str, Any]) -> None:
    body["spec"]["rollout"]["steps"] = [50, 25]


def _replicas(body: dict[str, Any]) -> None:
    body["spec"]["predictor"].update(minReplicas=5, maxReplicas=2)


def _no_gateway(body: dict[str, Any]) -> None:
    del body["spec"]["rollout"]["gateway"]


def _bad_router(body: dict[str, Any]) -> None:
    body["spec"]["rollout"]["router"] = "istio"


def _bad_uri(body: dict[str, Any]) -> None:
    body["spec"]["model"]["bundleURI"] = "http://example.com/bundle"


def _long_name(body: dict[str, Any]) -> None:
    body["metadata"]["name"] = "a" * 41


def _success_rate(body: dict[str, Any]) -> None:
    body["spec"]["rollout"]["analysis"]["successRate"] = 1.5


def _step_range(body: dict[str, Any]) -> None:
    body["spec"]["rollout"]["steps"] = [10, 100]


def _training_output(body: dict[str, Any]) -> None:
    body["spec"]["training"] = {
        "dataURI": "s3://d/x.csv",
        "target": "y",
        "positiveLabel": "bad",
        "outputURI": "/tmp/out",
    }


def _monitoring(**fields: Any) -> Any:
    def mutate(body: dict[str, Any]) -> None:
        body["spec"]["monitoring"] = {"predictionLogURI": "s3://predictions", **fields}

    mutate.__name__ = "_monitoring_" + "_".join(fields) if fields else "_monitoring"
    return mutate


def _monitoring_uri(body: dict[str, Any]) -> None:
    body["spec"]["monitoring"] = {"predictionLogURI": "/var/log/predictions"}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_without_source, "spec needs a model source"),
        (_decreasing_steps, "steps must be strictly increasing"),
        (_replicas, "minReplicas must not exceed maxReplicas"),
        (_no_gateway, "router gatewayAPI needs rollout.gateway"),
        (_bad_router, 'spec.rollout.router: Unsupported value: "istio"'),
        (_bad_uri, "spec.model.bundleURI: Invalid value"),
        (_long_name, "metadata.name must start with a lowercase letter"),
        (_success_rate, "spec.rollout.analysis.successRate: Invalid value: 1.5"),
        (_step_range, "spec.rollout.steps[1]: Invalid value: 100"),
        (_training_output, "spec.training.outputURI: Invalid value"),
        (_monitoring_uri, "spec.monitoring.predictionLogURI: Invalid value"),
        (_monitoring(sampleRate=1.5), "spec.monitoring.sampleRate: Invalid value: 1.5"),
        (_monitoring(driftWindow="1w"), "spec.monitoring.driftWindow: Invalid value"),
        (_monitoring(driftWindow="1000d"), "spec.monitoring.driftWindow: Invalid value"),
        (_monitoring(driftWindow="10000h"), "spec.monitoring.driftWindow: Invalid value"),
        (_monitoring(driftSchedule="hourly"), "spec.monitoring.driftSchedule: Invalid value"),
        (_monitoring(retrainOnDriftPSI=0), "spec.monitoring.retrainOnDriftPSI: Invalid value"),
        (
            _monitoring(retrainOnDriftPSI=0.25),
            "spec.monitoring.retrainOnDriftPSI needs spec.training",
        ),
        (_monitoring(retrainCooldownSeconds=-1), "spec.monitoring.retrainCooldownSeconds"),
    ],
    ids=lambda value: getattr(value, "__name__", "")[1:] or None,
)
def test_invalid_specs_are_rejected_with_the_field(crds: Kube, mutate: Any, expected: str) -> None:
    body = sample()
    mutate(body)
    with pytest.raises(client.ApiException) as caught:
        create(crds, body)
    assert caught.value.status == 422
    message = json.loads(caught.value.body)["message"]
    assert expected in message, message
