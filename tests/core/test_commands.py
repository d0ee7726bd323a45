"""The command lines the operator's builders write are the ones the real CLIs accept: each built
container's args go through the very argparse parser of its console script (creditmodel-train,
creditmodel-drift, creditmodel-predictor), and each env name reaches the setting that reads it."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st
from pydantic import ValidationError

from creditmodel.core import commands, storage
from creditmodel.core.commands import (
    DRIFT_COMMAND,
    PREDICTOR_COMMAND,
    TRAIN_COMMAND,
    PredictorFlags,
    TrainFlags,
)
from creditmodel.operator import builders
from creditmodel.operator.model import Gates, Spec, VersionRef
from creditmodel.training import cli, drift_job
from tests.operator.factories import BUNDLE_V1, spec
from tests.support.kube import load_yaml_documents
from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.unit

OWNER = builders.Owner("german", "risk", "uid-1")
STABLE = VersionRef(version="v1", bundle_uri=BUNDLE_V1)
TRAINING = {
    "dataURI": "/data/applicants.csv",  # a path in the image: no S3 lookup of a feature spec
    "target": "default",
    "positiveLabel": "1",
    "outputURI": "s3://bundles/german",
    "seed": 7,
}
MONITORING = {"predictionLogURI": "s3://predictions/german", "sampleRate": 0.25}
STORAGE = {"endpoint": "http://minio.storage:9000", "region": "eu-west-1", "secretName": "s3"}


def full_spec(**overrides: Any) -> Spec:
    parts: dict[str, Any] = {
        "training": TRAINING,
        "monitoring": MONITORING,
        "storage": STORAGE,
        "predictor": {"workers": 3},
    }
    return spec(**{**parts, **overrides})


def console_script(name: str) -> str:
    """`module:function` of a console script in pyproject.toml."""
    scripts: dict[str, str] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    return scripts[name]


def only_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec["containers"]
    assert isinstance(container, dict)
    return container


def training_container(the_spec: Spec) -> dict[str, Any]:
    job = builders.build_training_job(OWNER, the_spec, 1, "v20260101120000-1", "s3://b/german/v")
    return only_container(job["spec"]["template"]["spec"])


def test_every_command_is_the_console_script_whose_parser_is_tested() -> None:
    assert console_script(TRAIN_COMMAND) == "creditmodel.training.cli:main"
    assert console_script(DRIFT_COMMAND) == "creditmodel.training.drift_job:main"
    assert console_script(PREDICTOR_COMMAND) == "creditmodel.predictor.__main__:main"
    assert training_container(full_spec())["command"] == [TRAIN_COMMAND]
    cronjob = builders.build_drift_cronjob(OWNER, full_spec(), STABLE)
    drift = only_container(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    assert drift["command"] == [DRIFT_COMMAND]
    # The predictor container runs its image's entrypoint, which must be creditmodel-predictor.
    isvc = builders.build_inferenceservice(OWNER, full_spec(), STABLE)
    assert "command" not in only_container(isvc["spec"]["predictor"])
    dockerfile = (REPO_ROOT / "predictor" / "Dockerfile").read_text()
    assert f'ENTRYPOINT ["{PREDICTOR_COMMAND}"]' in dockerfile


def test_training_job_args_reach_the_training_config() -> None:
    the_spec = full_spec()
    args = cli.parser().parse_args(training_container(the_spec)["args"])
    config = cli.config_from(args)
    assert the_spec.training is not None
    assert (config.data, config.target, config.positive_label) == (
        TRAINING["dataURI"],
        TRAINING["target"],
        TRAINING["positiveLabel"],
    )
    assert (config.model_name, config.output, config.version, config.seed) == (
        OWNER.name,
        "s3://b/german/v",
        "v20260101120000-1",
        7,
    )


def test_every_gate_of_the_crd_is_a_flag_of_creditmodel_train() -> None:
    assert set(builders.GATE_FLAGS) == set(Gates.model_fields)
    flags = {flag for action in cli.parser()._actions for flag in action.option_strings}
    assert set(TrainFlags.GATES) <= flags


def finite(low: float, high: float, *, exclude_min: bool = False) -> st.SearchStrategy[float]:
    return st.floats(low, high, exclude_min=exclude_min, allow_nan=False, allow_infinity=False)


gates = st.fixed_dictionaries(
    {},
    optional={
        "aucMarginVsBaseline": finite(0, 0.5),
        "onnxMaxAbsDp": finite(0, 1, exclude_min=True),
        "int8MaxAucDrop": finite(0, 0.5),
        "int8MaxAbsDp": finite(0, 1, exclude_min=True),
        "maxBrier": finite(0, 1, exclude_min=True),
        "minApprovalRatio": finite(0, 1),
        "fairnessMinGroup": st.integers(1, 1_000_000),
        "cpuMaxAbsDp": finite(0, 1),
        "cpuModels": st.lists(st.sampled_from(["Haswell", "Nehalem"]), max_size=2, unique=True),
    },
)


@given(gates)
def test_any_admitted_gates_reach_the_training_config_exactly(document: dict[str, Any]) -> None:
    """Every value the CRD admits is accepted by creditmodel-train and arrives unrounded."""
    try:
        the_gates = Gates.model_validate(document)
    except ValidationError:
        reject()
    the_spec = full_spec(training={**TRAINING, "gates": document})
    config = cli.config_from(cli.parser().parse_args(training_container(the_spec)["args"]))
    for field, value in the_gates.model_dump(exclude_none=True).items():
        if field == "cpu_models":
            assert list(config.cpu_models) == value
        else:
            got = getattr(config.gates, field)
            assert got == value, field
            assert type(got) is type(value), field


def crd_pattern(*path: str) -> str:
    """A string property's pattern in the CreditModel CRD, e.g. ("monitoring", "driftWindow")."""
    crd = REPO_ROOT / "manifests" / "crd" / "scoring.creditmodel.io_creditmodels.yaml"
    (document,) = load_yaml_documents(crd)
    node = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for name in path:
        node = node["properties"][name]
    return str(node["pattern"])


@given(st.from_regex(crd_pattern("monitoring", "driftWindow"), fullmatch=True))
def test_drift_cronjob_args_are_what_creditmodel_drift_parses(window: str) -> None:
    """Every window the CRD admits is one creditmodel-drift accepts, with the same meaning."""
    the_spec = full_spec(monitoring={**MONITORING, "driftWindow": window})
    cronjob = builders.build_drift_cronjob(OWNER, the_spec, STABLE)
    container = only_container(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    args = drift_job.build_parser().parse_args(container["args"])
    assert (args.bundle, args.log, args.model) == (
        STABLE.bundle_uri,
        MONITORING["predictionLogURI"],
        OWNER.name,
    )
    unit = {"m": "minutes", "h": "hours", "d": "days"}[window[-1]]
    assert args.window == timedelta(**{unit: int(window[:-1])})


@pytest.mark.parametrize("router", ["gatewayAPI", "knative"])
def test_predictor_container_is_what_creditmodel_predictor_parses(
    router: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from creditmodel.predictor import __main__ as predictor_cli
    from creditmodel.predictor.prediction_log import PredictionLogSettings

    the_spec = full_spec(rollout={"router": router})
    if router == "knative":
        isvc = builders.build_knative_inferenceservice(OWNER, the_spec, STABLE, 10)
    else:
        isvc = builders.build_inferenceservice(OWNER, the_spec, STABLE)
    container = only_container(isvc["spec"]["predictor"])
    args = predictor_cli.build_parser().parse_args(container["args"])
    settings = predictor_cli.settings_from(args)
    assert (settings.model_name, settings.model_dir) == (OWNER.name, STABLE.bundle_uri)
    assert args.workers == 3
    ports = {port["containerPort"] for port in container["ports"]}
    assert args.http_port == builders.PREDICTOR_PORT in ports
    if PredictorFlags.GRPC_PORT in container["args"]:
        assert args.grpc_port in ports

    for variable in container["env"]:
        monkeypatch.setenv(variable["name"], variable["value"])
    assert {v["name"] for v in container["env"]} >= {
        commands.PREDICTION_LOG_URI_ENV,
        commands.PREDICTION_LOG_SAMPLE_RATE_ENV,
    }
    log = PredictionLogSettings()
    assert (log.uri, log.sample_rate) == (MONITORING["predictionLogURI"], 0.25)
    client = storage.s3_client()
    assert (client.meta.endpoint_url, client.meta.region_name) == (
        STORAGE["endpoint"],
        STORAGE["region"],
    )
