"""Invalid CreditModels, each with the field its refusal must name: the list an outside tester tried
(issue 12) plus their neighbours. test_admission.py applies every one to a real kube-apiserver;
test_validation.py feeds the same specs to the operator's typed spec."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from tests.support.kube import load_yaml_documents
from tests.support.process import REPO_ROOT

SAMPLES = REPO_ROOT / "manifests" / "samples"
MEGABYTE = 1_000_000


def sample(name: str = "serving") -> dict[str, Any]:
    """manifests/samples/creditmodel.yaml (serving) or creditmodel-training.yaml (trained)."""
    path = SAMPLES / ("creditmodel.yaml" if name == "serving" else "creditmodel-training.yaml")
    return copy.deepcopy(load_yaml_documents(path)[0])


@dataclass(frozen=True)
class Bad:
    id: str
    path: str
    """Where in the object the bad value goes (dotted; parents are created)."""
    value: Any
    field: str
    """What the API server's message names, e.g. spec.model.bundleURI or spec.rollout.hostnames[0]."""
    base: str = "serving"

    def body(self) -> dict[str, Any]:
        body = sample(self.base)
        node = body
        *parents, last = self.path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = self.value
        return body

    @property
    def loc(self) -> str:
        """The same field as the operator's typed spec names it (pydantic's loc, by alias)."""
        return (
            self.field.removeprefix("spec.").replace("[", ".").replace("]", "").replace("..", ".")
        )


def _bad(field: str, value: Any, id: str, base: str = "serving", at: str | None = None) -> Bad:
    return Bad(id=id, path=at or field, value=value, field=field, base=base)


BUNDLE, IMAGE = "spec.model.bundleURI", "spec.predictor.image"
RESOURCES = "spec.predictor.resources"
HOSTNAMES, GATEWAY = "spec.rollout.hostnames", "spec.rollout.gateway"
PROMETHEUS = "spec.rollout.analysis.prometheusURL"
TRAINING = "spec.training"
METADATA_URLS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.170.2/v2/credentials",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fe80::a9fe:a9fe]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/computeMetadata/v1/",
    "http://100.100.100.200/latest/meta-data/",
]
OTHER_ADDRESS_SPELLINGS = [
    "http://2852039166/",  # 169.254.169.254 as one decimal number
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://[::ffff:169.254.169.254]/",
    "http://user:secret@prometheus:9090",
    "http://Prometheus.monitoring:9090",
    "http://prometheus:9090/?query=up",
    "ftp://prometheus/",
]

CASES: list[Bad] = [
    # bundle URIs: scheme and shape
    _bad(BUNDLE, "s3://", "bundle-no-bucket"),
    _bad(BUNDLE, "/", "bundle-root"),
    _bad(BUNDLE, "file:///etc", "bundle-file-etc"),
    _bad(BUNDLE, "/etc/passwd", "bundle-system-path"),
    _bad(BUNDLE, "s3://creditmodel-bundles/v1\n--model_dir=/etc", "bundle-newline"),
    _bad(BUNDLE, "s3://creditmodel-bundles/german/../other", "bundle-dotdot"),
    _bad(BUNDLE, "/opt/creditmodel/../../etc", "bundle-path-dotdot"),
    _bad(BUNDLE, "s3://creditmodel-bundles/german/", "bundle-trailing-slash"),
    _bad(BUNDLE, "s3://Credit_Bundles/v1", "bundle-bucket-charset"),
    _bad(BUNDLE, "s3://ab/v1", "bundle-bucket-short"),
    _bad(BUNDLE, "s3://credit..bundles/v1", "bundle-bucket-dots"),
    _bad(BUNDLE, "s3://169.254.169.254/v1", "bundle-bucket-ip"),
    _bad(BUNDLE, "http://bundles.example.com/v1", "bundle-http"),
    _bad(BUNDLE, "s3://b" + "x" * 2000, "bundle-long"),
    # images
    _bad(IMAGE, "a" * MEGABYTE, "image-1mb"),
    _bad(IMAGE, "ghcr.io/creditmodel/predictor:1 --model_dir /etc", "image-spaces"),
    _bad(IMAGE, "ghcr.io/Creditmodel/Predictor:1", "image-uppercase-path"),
    _bad(IMAGE, "predictor:1\n", "image-newline"),
    _bad("spec.monitoring.image", "bad image", "monitoring-image", base="trained"),
    _bad(f"{TRAINING}.image", "-v:1", "training-image", base="trained"),
    # names
    _bad("spec.predictor.serviceAccountName", "Credit_Predictor", "service-account"),
    _bad("spec.predictor.serviceAccountName", "a" * 254, "service-account-long"),
    _bad("spec.storage.secretName", "s3 credentials", "secret-name"),
    _bad("spec.storage.region", "eu west 1", "region"),
    # resource quantities
    _bad(f"{RESOURCES}.requests[cpu]", {"requests": {"cpu": "lots"}}, "cpu-word", at=RESOURCES),
    _bad(f"{RESOURCES}.limits[memory]", {"limits": {"memory": "-1Gi"}}, "memory-neg", at=RESOURCES),
    _bad(f"{RESOURCES}.limits[cpu]", {"limits": {"cpu": -1}}, "cpu-neg-int", at=RESOURCES),
    _bad(f"{RESOURCES}.limits", {"limits": {"nvidia.com/gpu": 1}}, "resource-name", at=RESOURCES),
    _bad(
        RESOURCES,
        {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}},
        "request-above-limit",
    ),
    _bad(
        "spec.monitoring.resources.requests[cpu]",
        {"requests": {"cpu": "1 core"}},
        "monitoring-cpu",
        base="trained",
        at="spec.monitoring.resources",
    ),
    _bad(
        f"{TRAINING}.resources.limits[memory]",
        {"limits": {"memory": "2GB RAM"}},
        "training-memory",
        base="trained",
        at=f"{TRAINING}.resources",
    ),
    # HTTPRoute values the Gateway API CRD would refuse
    _bad(f"{HOSTNAMES}[0]", ["*"], "hostname-star", at=HOSTNAMES),
    _bad(f"{HOSTNAMES}[0]", ["*.scoring.example.com"], "hostname-wildcard", at=HOSTNAMES),
    _bad(f"{HOSTNAMES}[0]", ["German-Credit.example.com"], "hostname-uppercase", at=HOSTNAMES),
    _bad(f"{HOSTNAMES}[0]", ["credit.example.com:443"], "hostname-port", at=HOSTNAMES),
    _bad(f"{HOSTNAMES}[0]", ["credit.example.com."], "hostname-trailing-dot", at=HOSTNAMES),
    _bad(f"{HOSTNAMES}[0]", ["10.0.0.1"], "hostname-ip", at=HOSTNAMES),
    _bad(f"{GATEWAY}.namespace", "Gateway_System", "gateway-namespace"),
    _bad(f"{GATEWAY}.namespace", "gateway.system", "gateway-namespace-dot"),
    _bad(f"{GATEWAY}.sectionName", "https listener", "section-name"),
    _bad(f"{GATEWAY}.name", "Creditmodel Gateway", "gateway-name"),
    # addresses the operator or its pods would call
    *[_bad(PROMETHEUS, url, f"prometheus-metadata-{i}") for i, url in enumerate(METADATA_URLS)],
    *[
        _bad(PROMETHEUS, url, f"prometheus-shape-{i}")
        for i, url in enumerate(OTHER_ADDRESS_SPELLINGS)
    ],
    _bad("spec.storage.endpoint", "http://169.254.169.254", "endpoint-metadata"),
    _bad("spec.storage.endpoint", "http://[fd00:ec2::254]:80", "endpoint-metadata-v6"),
    _bad("spec.storage.endpoint", "minio:9000", "endpoint-no-scheme"),
    # training: URIs, columns, gates
    _bad(f"{TRAINING}.outputURI", "s3://", "output-no-bucket", base="trained"),
    _bad(f"{TRAINING}.outputURI", "/tmp/bundles", "output-local", base="trained"),
    _bad(f"{TRAINING}.dataURI", METADATA_URLS[0], "data-metadata", base="trained"),
    _bad(f"{TRAINING}.dataURI", "s3://169.254.169.254/x.csv", "data-bucket-ip", base="trained"),
    _bad(f"{TRAINING}.dataURI", "file:///proc/self/environ", "data-proc", base="trained"),
    _bad(f"{TRAINING}.target", "t" * MEGABYTE, "target-1mb", base="trained"),
    _bad(f"{TRAINING}.target", "risk\nexit", "target-newline", base="trained"),
    _bad(f"{TRAINING}.positiveLabel", "--output=s3://evil/x", "label-flag", base="trained"),
    _bad(f"{TRAINING}.gates.maxBrier", 2, "gate-range", base="trained"),
    _bad(f"{TRAINING}.gates.fairnessMinGroup", 0, "gate-min", base="trained"),
    _bad(
        f"{TRAINING}.gates.cpuModels[0]",
        ["Skylake"],
        "gate-cpu",
        "trained",
        f"{TRAINING}.gates.cpuModels",
    ),
    _bad(f"{TRAINING}.seed", 2**40, "seed-range", base="trained"),
    _bad(f"{TRAINING}.activeDeadlineSeconds", 10**9, "deadline-range", base="trained"),
    # monitoring
    _bad("spec.monitoring.predictionLogURI", "s3://", "log-no-bucket", base="trained"),
    _bad("spec.monitoring.retrainOnDriftPSI", 100, "drift-psi-range", base="trained"),
]

SCHEDULES = [
    ("99 99 99 99 99", "cron-99"),
    ("60 * * * *", "cron-minute"),
    ("0 24 * * *", "cron-hour"),
    ("0 0 32 * *", "cron-day"),
    ("0 0 * 13 *", "cron-month"),
    ("0 0 * * 7", "cron-weekday"),
    ("*/0 * * * *", "cron-step"),
    ("0 * * *", "cron-four-fields"),
    ("@every 1h", "cron-every"),
    ("0 * * * * *", "cron-seconds"),
]
"""spec.monitoring.driftSchedule: refused by the API server; the operator names them too (Degraded)."""

NAMES = [
    ("credit.v2", "name-dot"),
    ("1credit", "name-digit"),
    ("credit-", "name-dash"),
    ("a" * 41, "name-41"),
]
"""metadata.name that KServe cannot deploy (its webhook, its 63-character host label)."""
