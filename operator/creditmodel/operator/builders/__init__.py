"""Pure builders of the child manifests (dicts, as the API takes them): one InferenceService per
version, the HTTPRoute that splits traffic between them, the training Job, the drift report CronJob
and the predictors' NetworkPolicy, every pod of them restricted (security.py). No I/O here."""

from __future__ import annotations

from creditmodel.operator.builders.common import (
    COMPONENT_LABEL,
    MANAGED_BY,
    MODEL_LABEL,
    VERSION_LABEL,
    Claim,
    Owner,
    claim,
    label_value,
    labels,
)
from creditmodel.operator.builders.jobs import (
    GATE_FLAGS,
    build_drift_cronjob,
    build_training_job,
    drift_cronjob_name,
    gate_args,
    training_job_name,
    training_job_publishes,
    training_version,
)
from creditmodel.operator.builders.network import (
    IngressPolicy,
    build_predictor_networkpolicy,
    predictor_networkpolicy_name,
)
from creditmodel.operator.builders.serving import (
    GRPC_PORT,
    HTTPROUTE_API,
    HTTPROUTE_MAX_BACKENDS,
    ISVC_API,
    KNATIVE,
    PREDICTOR_PORT,
    STANDARD,
    build_httproute,
    build_inferenceservice,
    build_knative_inferenceservice,
    build_predictor,
    isvc_name,
    predictor_pod_labels,
    predictor_pod_spec,
    predictor_service,
)
from creditmodel.operator.validation import cron_problem

__all__ = [
    "COMPONENT_LABEL",
    "GATE_FLAGS",
    "GRPC_PORT",
    "HTTPROUTE_API",
    "HTTPROUTE_MAX_BACKENDS",
    "ISVC_API",
    "KNATIVE",
    "MANAGED_BY",
    "MODEL_LABEL",
    "PREDICTOR_PORT",
    "STANDARD",
    "VERSION_LABEL",
    "Claim",
    "IngressPolicy",
    "Owner",
    "build_drift_cronjob",
    "build_httproute",
    "build_inferenceservice",
    "build_knative_inferenceservice",
    "build_predictor",
    "build_predictor_networkpolicy",
    "build_training_job",
    "claim",
    "cron_problem",
    "drift_cronjob_name",
    "gate_args",
    "isvc_name",
    "label_value",
    "labels",
    "predictor_networkpolicy_name",
    "predictor_pod_labels",
    "predictor_pod_spec",
    "predictor_service",
    "training_job_name",
    "training_job_publishes",
    "training_version",
]
