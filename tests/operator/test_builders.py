"""The pure child builders: InferenceService, HTTPRoute, training Job, drift CronJob and the
predictors' NetworkPolicy manifests."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from creditmodel.operator import builders, validation
from creditmodel.operator.model import VersionRef
from creditmodel.operator.settings import OperatorSettings
from tests.operator.factories import BUNDLE_V1, BUNDLE_V2, spec

pytestmark = pytest.mark.unit

OWNER = builders.Owner("german", "risk", "uid-1")
V1 = VersionRef(version="v1", bundle_uri=BUNDLE_V1)
V2 = VersionRef(version="v2", bundle_uri=BUNDLE_V2)


def test_inferenceservice_runs_our_predictor_with_the_bundle_and_hpa_fields() -> None:
    isvc = builders.build_inferenceservice(OWNER, spec(), V1)
    predictor = isvc["spec"]["predictor"]
    container = predictor["containers"][0]
    assert isvc["metadata"]["name"] == builders.isvc_name("german", BUNDLE_V1)
    # Standard, not the deprecated alias RawDeployment (KServe 0.16 refuses updates with it)
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    # cluster-local: KServe makes no per-version HTTPRoutes that would bypass the canary split
    assert isvc["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"
    assert container["args"][:4] == ["--model_name", "german", "--model_dir", BUNDLE_V1]
    assert container["args"][-2:] == ["--grpc_port", "8081"]
    assert [(p.get("name"), p["containerPort"]) for p in container["ports"]] == [
        ("http", 8080),
        ("grpc", 8081),  # "grpc" in the name: KServe's Service gives it appProtocol h2c
    ]
    assert {"name": "S3_ENDPOINT_URL", "value": "http://minio:9000"} in container["env"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3"}}]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("cpu", 70)
    # KServe copies these onto the pods: nothing that changes with the rollout (a promote would
    # replace every pod of both versions).
    assert isvc["metadata"]["labels"] == {
        "app.kubernetes.io/name": "creditmodel",
        "app.kubernetes.io/instance": "german",
        "app.kubernetes.io/managed-by": builders.MANAGED_BY,
        builders.MODEL_LABEL: "german",
        builders.VERSION_LABEL: "v1",
        "networking.kserve.io/visibility": "cluster-local",
    }


def test_children_are_owned_by_the_creditmodel_as_controller() -> None:
    isvc = builders.build_inferenceservice(OWNER, spec(), V1)
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


def test_a_name_taken_by_someone_else_is_never_claimed_and_an_orphan_of_ours_is_adopted() -> None:
    """builders.claim decides what the adapter may write over: before it, a CreditModel took over
    any route or Job of its children's names and never set its ownerReference on it."""
    manifest = builders.build_predictor_networkpolicy(OWNER, spec(), builders.IngressPolicy())
    ours = manifest["metadata"]["ownerReferences"]
    mine = {"metadata": {"ownerReferences": ours}}
    assert builders.claim(manifest, mine) == builders.Claim()
    hand_made = {"metadata": {"labels": {"team": "payments"}}}
    assert "did not make it" in builders.claim(manifest, hand_made).refusal
    other = {**ours[0], "uid": "uid-2", "name": "other"}
    controlled = {"metadata": {"ownerReferences": [other], "labels": builders.labels(OWNER)}}
    assert "uid-2" in builders.claim(manifest, controlled).refusal
    helm = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "uid-3"}
    orphan = {"metadata": {"labels": builders.labels(OWNER), "ownerReferences": [helm]}}
    assert builders.claim(manifest, orphan) == builders.Claim(adopt=[helm, *ours])
    for label in (builders.MODEL_LABEL, "app.kubernetes.io/managed-by"):
        someone_elses = {k: v for k, v in builders.labels(OWNER).items() if k != label}
        assert builders.claim(manifest, {"metadata": {"labels": someone_elses}}).refusal
    assert builders.claim({"metadata": {}}, hand_made) == builders.Claim()  # no owner to claim for


@pytest.mark.parametrize("namespace", ["t", "dev", "risk", "credit-risk-production", "n" * 42])
@pytest.mark.parametrize("owner", ["g", "german-credit", "a" * 40, "ab-" * 13 + "c"])
def test_isvc_names_fit_kserves_host_label_in_any_namespace_up_to_42(
    owner: str, namespace: str
) -> None:
    """KServe builds <isvc>-predictor-<namespace> (<= 63) even with ingress off: a 40-character
    name in credit-risk-production never deployed (issue 11); in `t` or `dev` it fit the host
    label but not KServe's `app` label isvc.<isvc>-predictor. Shortened names stay unique per
    owner and bundle, and DNS-1035 labels."""
    name = builders.isvc_name(owner, BUNDLE_V1, namespace)
    assert len(f"{name}-predictor-{namespace}") <= 63
    assert len(f"isvc.{name}-predictor") <= 63
    assert re.fullmatch(validation.RESOURCE_NAME, name)
    assert name != builders.isvc_name(owner, BUNDLE_V2, namespace)
    assert name != builders.isvc_name(owner + "x", BUNDLE_V1, namespace) or len(owner) >= 40
    if len(f"{owner}-12345678-predictor-{namespace}") <= 63 and len(owner) < 40:
        assert name == builders.isvc_name(owner, BUNDLE_V1)  # short ones keep their old name


def test_knative_isvc_serves_rest_alone_and_scales_on_concurrency() -> None:
    """Knative allows one container port; the KPA accepts only concurrency and rps."""
    knative = spec(rollout={"router": "knative"})
    isvc = builders.build_knative_inferenceservice(OWNER, knative, V1, None)
    predictor = isvc["spec"]["predictor"]
    assert predictor["scaleMetric"] == "concurrency"
    assert len(predictor["containers"][0]["ports"]) == 1
    assert "--grpc_port" not in predictor["containers"][0]["args"]


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
    assert after["spec"]["predictor"]["canaryTrafficPercent"] is None  # absent: a patch removes it


TRAINED = {
    "dataURI": "s3://data/german.csv",
    "target": "risk",
    "positiveLabel": "bad",
    "outputURI": "s3://bundles/german",
}


def test_training_job_runs_creditmodel_train_with_the_spec() -> None:
    the_spec = spec(training={**TRAINED, "gates": {"maxBrier": 0.2}})
    job = builders.build_training_job(OWNER, the_spec, 3, "v3", "s3://bundles/german/v3")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert job["metadata"]["name"] == "german-train-3"
    assert container["command"] == ["creditmodel-train"]
    args = container["args"]
    assert args[args.index("--output") + 1] == "s3://bundles/german/v3"
    assert args[args.index("--version") + 1] == "v3"
    assert args[args.index("--max-brier") + 1] == "0.2"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def kubelet_expansion(text: str, env: dict[str, str]) -> str:
    """The kubelet's rule for $(NAME) in args and env values, as Kubernetes documents it (no
    kubelet runs here): `$$` is one `$`, a defined `$(NAME)` its value, anything else itself."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
        elif text[i + 1] == "$":
            out.append("$")
            i += 2
        elif text[i + 1] == "(" and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2 : end]
            out.append(env.get(name, text[i : end + 1]))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@given(
    target=st.text(alphabet="$()AWS_KEY a", min_size=1, max_size=24),
    uri=st.text(alphabet="$()AWS_KEY/a", max_size=24),
)
def test_no_spec_string_reaches_a_container_as_a_variable_of_its_environment(
    target: str, uri: str
) -> None:
    """Before: a training target `$(AWS_SECRET_ACCESS_KEY)` reached creditmodel-train as the
    storage Secret's key, and its "target column not found" message the CreditModel's status."""
    env = {"AWS_SECRET_ACCESS_KEY": "s3cr3t", "KEY": "k"}
    training = {
        "dataURI": "s3://data/german.csv",
        "target": target,
        "positiveLabel": target[::-1],
        "outputURI": "s3://bundles/german",
    }
    the_spec = spec(training=training)
    job = builders.build_training_job(OWNER, the_spec, 1, "v1", "s3://bundles/german/v1")
    ref = VersionRef.model_construct(bundle_uri=uri, version="v")  # the builder escapes any text
    isvc = builders.build_inferenceservice(OWNER, the_spec, ref)
    containers = [
        job["spec"]["template"]["spec"]["containers"][0],
        isvc["spec"]["predictor"]["containers"][0],
    ]
    args = [kubelet_expansion(arg, env) for c in containers for arg in c["args"]]
    values = [kubelet_expansion(v["value"], env) for c in containers for v in c["env"]]
    assert {target, target[::-1], uri} <= set(args)
    assert not any("s3cr3t" in text for text in args + values)


@given(
    version=st.text(min_size=1, max_size=20) | st.sampled_from(["--output", "--version"]),
    output=st.text(max_size=40) | st.sampled_from(["--output", "--version"]),
)
def test_a_training_job_says_what_it_publishes(version: str, output: str) -> None:
    """What the operator reads back from a Job found under a run's name is what that Job was
    built to publish, whatever the strings (one spelt like the other flag included)."""
    job = builders.build_training_job(OWNER, spec(training=TRAINED), 2, version, output)
    assert builders.training_job_publishes(job) == (version, output)


@pytest.mark.parametrize(
    "job",
    [
        {},
        {"spec": {"template": {"spec": {"containers": []}}}},
        {"spec": {"template": {"spec": {"containers": [{"command": ["sh"], "args": []}]}}}},
        {"spec": {"template": {"spec": {"containers": [
            {"command": ["creditmodel-train"], "args": ["--version", "v1"]}]}}}},
        {"spec": {"template": {"spec": {"containers": [
            {"command": ["creditmodel-train"], "args": ["--output", "s3://b", "--version"]}]}}}},
        {"spec": {"template": {"spec": {"containers": [
            {"command": ["creditmodel-train"], "args": ["--output", 7, "--version", "v1"]}]}}}},
    ],
)  # fmt: skip
def test_a_job_that_is_no_training_run_of_ours_publishes_nothing(job: dict[str, Any]) -> None:
    assert builders.training_job_publishes(job) is None


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

    knative = {"router": "knative"}
    bare = Spec.model_validate({"model": {"bundleURI": BUNDLE_V1}, "rollout": knative})
    with pytest.raises(ValueError, match=r"spec\.predictor\.image is unset"):
        builders.build_inferenceservice(OWNER, bare, V1)
    filled = bare.with_default_images("registry/predictor:1", "registry/training:1")
    isvc = builders.build_inferenceservice(OWNER, filled, V1)
    assert isvc["spec"]["predictor"]["containers"][0]["image"] == "registry/predictor:1"
    own = Spec.model_validate(
        {"model": {"bundleURI": BUNDLE_V1}, "rollout": knative, "predictor": {"image": "mine:2"}}
    ).with_default_images("a", "b")
    assert own.predictor.image == "mine:2"


# --- gates: typed fields to typed flags, never free keys --------------------------------------------

TRAINING = {
    "dataURI": "s3://data/german.csv",
    "target": "risk",
    "positiveLabel": "bad",
    "outputURI": "s3://bundles/german",
}


def training_args(**gates: Any) -> list[str]:
    the_spec = spec(training={**TRAINING, "gates": gates})
    job = builders.build_training_job(OWNER, the_spec, 1, "v1", "s3://bundles/german/v1")
    args: list[str] = job["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_every_gate_field_maps_to_its_flag_with_the_exact_value() -> None:
    args = training_args(
        aucMarginVsBaseline=0.01,
        onnxMaxAbsDp=1e-5,
        int8MaxAucDrop=0.003,
        int8MaxAbsDp=0.015,
        maxBrier=0.123456789,
        minApprovalRatio=0.8,
        fairnessMinGroup=50,
        cpuMaxAbsDp=0,
        cpuModels=["Nehalem"],
    )
    gates = args[args.index("--seed") + 2 :]
    assert gates == [
        "--auc-margin-vs-baseline",
        "0.01",
        "--onnx-max-abs-dp",
        "1e-05",
        "--int8-max-auc-drop",
        "0.003",
        "--int8-max-abs-dp",
        "0.015",
        "--max-brier",
        "0.123456789",
        "--min-approval-ratio",
        "0.8",
        "--fairness-min-group",
        "50",
        "--cpu-max-abs-dp",
        "0.0",
        "--cpu-models",
        "Nehalem",
    ]
    assert training_args(cpuModels=[])[-2:] == ["--cpu-models", "none"]
    assert "--max-brier" not in training_args()


def test_a_free_gate_key_never_reaches_the_command_line() -> None:
    """`gates: {output: 1}` once appended `--output 1`, and the later flag won."""
    with pytest.raises(ValidationError, match=r"training\.gates\.output"):
        spec(training={**TRAINING, "gates": {"output": 1}})
    smuggled = spec(training=TRAINING)
    smuggled.training.gates.__dict__["output"] = "s3://elsewhere"  # type: ignore[union-attr]
    job = builders.build_training_job(OWNER, smuggled, 1, "v1", "s3://bundles/german/v1")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args.count("--output") == 1
    assert "s3://elsewhere" not in args


# --- Pod Security "restricted" (proven on the API server in test_pod_security.py) ---------------


def restricted_parts(pod: dict[str, Any]) -> None:
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (volume,) = pod["volumes"]
    assert volume["name"] == "scratch"
    assert volume["emptyDir"]["sizeLimit"].endswith(("Mi", "Gi"))
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert container["volumeMounts"] == [{"name": "scratch", "mountPath": "/tmp"}]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        assert env["HOME"] == env["TMPDIR"] == "/tmp"


def test_every_pod_the_operator_causes_is_restricted() -> None:
    the_spec = spec(training=TRAINING, monitoring={"predictionLogURI": "s3://predictions"})
    isvc = builders.build_inferenceservice(OWNER, the_spec, V1)
    restricted_parts(builders.predictor_pod_spec(isvc["spec"]["predictor"]))
    knative = builders.build_knative_inferenceservice(OWNER, the_spec, V1, 10)
    restricted_parts(builders.predictor_pod_spec(knative["spec"]["predictor"]))
    job = builders.build_training_job(OWNER, the_spec, 1, "v1", "s3://bundles/german/v1")
    restricted_parts(job["spec"]["template"]["spec"])
    cronjob = builders.build_drift_cronjob(OWNER, the_spec, V1)
    restricted_parts(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])


def test_predictor_pod_spec_drops_kserve_extension_fields() -> None:
    predictor = builders.build_inferenceservice(OWNER, spec(), V1)["spec"]["predictor"]
    pod = builders.predictor_pod_spec(predictor)
    assert set(pod) == {"containers", "securityContext", "volumes"}
    assert predictor["labels"] == builders.predictor_pod_labels(OWNER)


# --- the predictors' NetworkPolicy --------------------------------------------------------------

PROMETHEUS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


def test_networkpolicy_admits_the_gateway_namespace_and_the_configured_sources_only() -> None:
    policy = builders.build_predictor_networkpolicy(
        OWNER, spec(), builders.IngressPolicy(sources=(PROMETHEUS,))
    )
    assert policy["metadata"]["name"] == "german-predictor"
    assert policy["metadata"]["ownerReferences"] == [OWNER.reference()]
    body = policy["spec"]
    assert body["podSelector"] == {"matchLabels": builders.predictor_pod_labels(OWNER)}
    assert body["policyTypes"] == ["Ingress"]
    (rule,) = body["ingress"]
    assert rule["ports"] == [
        {"port": builders.PREDICTOR_PORT, "protocol": "TCP"},
        {"port": 8081, "protocol": "TCP"},  # gRPC, for a GRPCRoute through the same Gateway
    ]
    gateway = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}
    }
    assert rule["from"] == [gateway, PROMETHEUS]


def test_networkpolicy_defaults_the_gateway_namespace_to_the_models() -> None:
    the_spec = spec(rollout={"gateway": {"name": "gw"}})
    policy = builders.build_predictor_networkpolicy(OWNER, the_spec, builders.IngressPolicy())
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "risk"}}}
    ]


def test_networkpolicy_admits_the_gateways_proxies_where_they_run() -> None:
    """Envoy Gateway runs its proxy pods in its controller's namespace, not the Gateway's: a
    policy admitting only the Gateway's namespace shut the project's own Gateway out."""
    proxies = builders.IngressPolicy(
        gateway_proxy_namespaces=("envoy-gateway-system", "gateway-system")
    )
    (rule,) = builders.build_predictor_networkpolicy(OWNER, spec(), proxies)["spec"]["ingress"]
    assert [peer["namespaceSelector"]["matchLabels"] for peer in rule["from"]] == [
        {"kubernetes.io/metadata.name": "gateway-system"},
        {"kubernetes.io/metadata.name": "envoy-gateway-system"},
    ]
    knative = spec(rollout={"router": "knative", "gateway": None})
    # No Gateway in front of router knative: its proxies are not admitted.
    assert builders.build_predictor_networkpolicy(OWNER, knative, proxies)["spec"]["ingress"] == []


def test_networkpolicy_for_knative_admits_knatives_namespaces() -> None:
    the_spec = spec(rollout={"router": "knative", "gateway": None})
    ingress = builders.IngressPolicy(knative_namespaces=("knative-serving",))
    (rule,) = builders.build_predictor_networkpolicy(OWNER, the_spec, ingress)["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "knative-serving"}}}
    ]


def test_networkpolicy_without_any_source_admits_no_one() -> None:
    """An ingress rule without `from` would admit every source."""
    the_spec = spec(rollout={"router": "knative", "gateway": None})
    policy = builders.build_predictor_networkpolicy(OWNER, the_spec, builders.IngressPolicy())
    assert policy["spec"]["ingress"] == []


def test_ingress_policy_comes_from_the_operator_settings() -> None:
    settings = OperatorSettings(
        predictor_ingress_from=[PROMETHEUS],
        knative_ingress_namespaces=["kn"],
        gateway_proxy_namespaces=["gw-proxies"],
    )
    policy = builders.IngressPolicy.from_settings(settings)
    assert (list(policy.sources), list(policy.knative_namespaces)) == ([PROMETHEUS], ["kn"])
    assert list(policy.gateway_proxy_namespaces) == ["gw-proxies"]
    assert OperatorSettings().gateway_proxy_namespaces == ["envoy-gateway-system"]


def test_batch_jobs_fail_at_once_on_certain_failures_and_explain_crashes() -> None:
    """Exit 2 (bad input) and 3 (a gate failed) cannot change on a retry: the Job fails without
    rerunning; a crash (exit 1) leaves its log's tail as the termination message."""
    trained = spec(training=TRAINING)
    job = builders.build_training_job(OWNER, trained, 1, "v1", "s3://bundles/german")
    monitored = spec(training=TRAINING, monitoring={"predictionLogURI": "s3://predictions"})
    cron = builders.build_drift_cronjob(OWNER, monitored, V1)
    for job_spec, name in ((job["spec"], "train"), (cron["spec"]["jobTemplate"]["spec"], "drift")):
        fail, ignore = job_spec["podFailurePolicy"]["rules"]
        assert fail["action"] == "FailJob"
        assert fail["onExitCodes"] == {"containerName": name, "operator": "In", "values": [2, 3]}
        assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
        (container,) = job_spec["template"]["spec"]["containers"]
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


@pytest.mark.parametrize(
    ("rate", "text"), [(1.0, "1"), (0.5, "0.5"), (0.1234567, "0.1234567"), (1e-7, "1e-07"),
                       (0.30000000000000004, "0.30000000000000004")],
)  # fmt: skip
def test_the_sample_rate_reaches_the_predictor_exactly(rate: float, text: str) -> None:
    monitoring = {"predictionLogURI": "s3://logs/german", "sampleRate": rate}
    isvc = builders.build_inferenceservice(OWNER, spec(monitoring=monitoring), V1)
    env = isvc["spec"]["predictor"]["containers"][0]["env"]
    (value,) = [e["value"] for e in env if e["name"] == "CREDITMODEL_PREDICTION_LOG_SAMPLE_RATE"]
    assert (value, float(value)) == (text, rate)
