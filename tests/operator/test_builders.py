"""The pure child builders: InferenceService, HTTPRoute and training Job manifests."""

from __future__ import annotations

import pytest

from creditmodel.operator import builders
from creditmodel.operator.model import VersionRef
from tests.operator.factories import BUNDLE_V1, BUNDLE_V2, spec

pytestmark = pytest.mark.unit

OWNER = builders.Owner("german", "risk", "uid-1")
V1 = VersionRef(version="v1", bundle_uri=BUNDLE_V1)
V2 = VersionRef(version="v2", bundle_uri=BUNDLE_V2)


def test_inferenceservice_runs_our_predictor_with_the_bundle_and_hpa_fields() -> None:
    isvc = builders.build_inferenceservice(OWNER, spec(), V1, "stable")
    predictor = isvc["spec"]["predictor"]
    container = predictor["containers"][0]
    assert isvc["metadata"]["name"] == builders.isvc_name("german", BUNDLE_V1)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert container["args"][:4] == ["--model_name", "german", "--model_dir", BUNDLE_V1]
    assert {"name": "S3_ENDPOINT_URL", "value": "http://minio:9000"} in container["env"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3"}}]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("cpu", 70)
    assert isvc["metadata"]["labels"][builders.TRACK_LABEL] == "stable"


def test_children_are_owned_by_the_creditmodel_as_controller() -> None:
    isvc = builders.build_inferenceservice(OWNER, spec(), V1, "stable")
    assert isvc["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "scoring.creditmodel.io/v1alpha1",
            "kind": "CreditModel",
            "name": "german",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_isvc_names_are_per_bundle_dns_labels() -> None:
    one, two = builders.isvc_name("german", BUNDLE_V1), builders.isvc_name("german", BUNDLE_V2)
    assert one != two
    assert one == builders.isvc_name("german", BUNDLE_V1)
    assert len(builders.isvc_name("a" * 40, BUNDLE_V1) + "-predictor") <= 63


def test_httproute_splits_weights_between_the_predictor_services() -> None:
    route = builders.build_httproute(OWNER, spec(rollout={"hostnames": ["h.example"]}), V1, V2, 25)
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        (builders.isvc_name("german", BUNDLE_V1) + "-predictor", 75),
        (builders.isvc_name("german", BUNDLE_V2) + "-predictor", 25),
    ]
    assert route["spec"]["parentRefs"][0]["name"] == "gw"
    assert route["spec"]["hostnames"] == ["h.example"]


def test_httproute_without_canary_sends_everything_to_stable() -> None:
    route = builders.build_httproute(OWNER, spec(), V1, None, 0)
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [100]


def test_knative_inferenceservice_carries_canary_traffic_percent_only_during_a_canary() -> None:
    during = builders.build_knative_inferenceservice(OWNER, spec(), V2, 10)
    after = builders.build_knative_inferenceservice(OWNER, spec(), V2, None)
    assert during["metadata"]["name"] == "german"
    assert during["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert "canaryTrafficPercent" not in after["spec"]["predictor"]


def test_training_job_runs_creditmodel_train_with_the_spec() -> None:
    the_spec = spec(
        training={
            "dataURI": "s3://data/german.csv",
            "target": "risk",
            "positiveLabel": "bad",
            "outputURI": "s3://bundles/german",
            "gates": {"max-brier": 0.2},
        }
    )
    job = builders.build_training_job(OWNER, the_spec, 3, "v3", "s3://bundles/german/v3")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert job["metadata"]["name"] == "german-train-3"
    assert container["command"] == ["creditmodel-train"]
    args = container["args"]
    assert args[args.index("--output") + 1] == "s3://bundles/german/v3"
    assert args[args.index("--version") + 1] == "v3"
    assert args[args.index("--max-brier") + 1] == "0.2"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_training_job_needs_a_training_spec() -> None:
    with pytest.raises(ValueError, match=r"spec\.training"):
        builders.build_training_job(OWNER, spec(), 1, "v1", "s3://x/v1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("v1", "v1"), ("2026.01 rc/1", "2026.01-rc-1"), ("-x-", "x"), ("", "unknown")],
)
def test_label_values_are_label_safe(text: str, expected: str) -> None:
    assert builders.label_value(text) == expected


def test_spec_images_default_to_the_operator_settings() -> None:
    from creditmodel.operator.model import Spec

    bare = Spec.model_validate({"model": {"bundleURI": BUNDLE_V1}})
    with pytest.raises(ValueError, match=r"spec\.predictor\.image is unset"):
        builders.build_inferenceservice(OWNER, bare, V1, "stable")
    filled = bare.with_default_images("registry/predictor:1", "registry/training:1")
    isvc = builders.build_inferenceservice(OWNER, filled, V1, "stable")
    assert isvc["spec"]["predictor"]["containers"][0]["image"] == "registry/predictor:1"
    own = Spec.model_validate({"predictor": {"image": "mine:2"}}).with_default_images("a", "b")
    assert own.predictor.image == "mine:2"
