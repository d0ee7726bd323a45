"""Batch children: the training Job (creditmodel-train) and the drift report CronJob
(creditmodel-drift). Every argument comes from a typed, range-checked spec field; gate overrides map
field by field to the training CLI's flags, never a free key."""

from __future__ import annotations

import re
from typing import Any

from creditmodel.core.commands import (
    DRIFT_COMMAND,
    TRAIN_COMMAND,
    DriftFlags,
    TrainFlags,
    dest,
)
from creditmodel.core.jobs import ExitCode
from creditmodel.operator.builders.common import (
    COMPONENT_LABEL,
    VERSION_LABEL,
    Owner,
    as_the_command_sees,
    label_value,
    labels,
    literal,
    metadata,
    resources,
    storage_env,
)
from creditmodel.operator.builders.security import (
    DRIFT_SCRATCH,
    TRAINING_SCRATCH,
    restricted_container,
    restricted_pod_fields,
)
from creditmodel.operator.model import Gates, Spec, VersionRef

GATE_FLAGS: dict[str, str] = {dest(flag): flag for flag in TrainFlags.GATES}
"""spec.training.gates field -> creditmodel-train flag (tests check both ends)."""


def gate_args(gates: Gates) -> list[str]:
    args: list[str] = []
    for field, flag in GATE_FLAGS.items():
        value = getattr(gates, field)
        if value is None:
            continue
        if isinstance(value, list):
            rendered = ",".join(value) if value else TrainFlags.CPU_MODELS_NONE
        elif isinstance(value, int):
            rendered = str(value)
        else:
            rendered = repr(float(value))  # shortest exact decimal: no precision lost
        args += [flag, rendered]
    return args


def training_job_name(owner_name: str, run: int) -> str:
    """Deterministic per run, so a retried create after a crash finds the Job instead of forking."""
    return f"{owner_name}-train-{run}"


def training_version(run: int, started_at: str) -> str:
    stamp = re.sub(r"[^0-9]", "", started_at)[:14]
    return f"v{stamp}-{run}"


def training_job_publishes(job: dict[str, Any]) -> tuple[str, str] | None:
    """(version, bundle URI) a training Job publishes, read from its own container's arguments
    (`build_training_job` writes them): a Job found under a run's name may be an earlier one's,
    left by an operator that died before writing the status or orphaned by its deleted owner, and
    it publishes what it was started with, not what the current pass would have asked. None when
    the Job carries no such arguments (not one of ours)."""
    try:
        containers = job["spec"]["template"]["spec"]["containers"]
        args = next(c for c in containers if c.get("command") == [TRAIN_COMMAND])["args"]
        flags = dict(zip(args[::2], args[1::2], strict=True))  # flag, value, flag, value, ...
        version, output = flags[TrainFlags.VERSION], flags[TrainFlags.OUTPUT]
    except (KeyError, TypeError, StopIteration, ValueError):
        return None
    if not isinstance(version, str) or not isinstance(output, str):
        return None
    return as_the_command_sees(version), as_the_command_sees(output)


def build_training_job(
    owner: Owner, spec: Spec, run: int, version: str, output_uri: str
) -> dict[str, Any]:
    """A Job running `creditmodel-train`, publishing one bundle under `output_uri`."""
    training = spec.training
    if training is None:
        raise ValueError("spec.training is not set")
    if training.image is None:
        raise ValueError("spec.training.image is unset (the operator fills in its default)")
    args = [
        TrainFlags.DATA,
        training.data_uri,
        TrainFlags.TARGET,
        training.target,
        TrainFlags.POSITIVE_LABEL,
        training.positive_label,
        TrainFlags.MODEL_NAME,
        owner.name,
        TrainFlags.OUTPUT,
        output_uri,
        TrainFlags.VERSION,
        version,
        TrainFlags.SEED,
        str(training.seed),
        *gate_args(training.gates),
    ]
    container = _batch_container(
        spec,
        "train",
        training.image,
        TRAIN_COMMAND,
        args,
        resources(training.resources),
    )
    job_labels = {VERSION_LABEL: label_value(version), COMPONENT_LABEL: "training"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(owner, training_job_name(owner.name, run), job_labels),
        "spec": {
            "backoffLimit": training.backoff_limit,
            "podFailurePolicy": pod_failure_policy("train"),
            "activeDeadlineSeconds": training.active_deadline_seconds,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": {
                "metadata": {"labels": labels(owner, **job_labels)},
                "spec": {
                    "restartPolicy": "Never",
                    **restricted_pod_fields(TRAINING_SCRATCH),
                    "containers": [container],
                },
            },
        },
    }


CERTAIN_FAILURES = (ExitCode.BAD_INPUT, ExitCode.GATE_FAILED)
"""Exit codes a retry cannot change (bad arguments or data, a failed gate): the Job fails at once
instead of rerunning after the Job controller's back-off. Storage errors (4) may be transient."""


def pod_failure_policy(container: str) -> dict[str, Any]:
    """Fail the Job on a certain failure; a node drain or preemption does not count against the
    backoff limit."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": container,
                    "operator": "In",
                    "values": [int(code) for code in CERTAIN_FAILURES],
                },
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }


def _batch_container(
    spec: Spec, name: str, image: str, command: str, args: list[str], limits: dict[str, Any]
) -> dict[str, Any]:
    """A restricted Job container running one of our console scripts with the spec's storage."""
    env, env_from = storage_env(spec)
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": [command],
        "args": args,
        "resources": limits,
        "env": env,
        # Written even when empty, as for the predictor: the drift CronJob is patched, and a
        # storage secret the spec no longer names must leave its container.
        "envFrom": env_from,
        # A crash before the command writes its own message (exit 1) still explains itself.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return restricted_container(literal(container))


def drift_cronjob_name(owner_name: str) -> str:
    return f"{owner_name}-drift"


def build_drift_cronjob(owner: Owner, spec: Spec, stable: VersionRef) -> dict[str, Any]:
    """A CronJob running `creditmodel-drift` on the stable bundle: each run compares the last
    `driftWindow` of the prediction log with that bundle's reference and leaves `latest.json`
    for the operator. Forbid: a slow run is never overlapped by the next."""
    monitoring = spec.monitoring
    if monitoring is None:
        raise ValueError("spec.monitoring is not set")
    if monitoring.image is None:
        raise ValueError("spec.monitoring.image is unset (the operator fills in its default)")
    args = [
        DriftFlags.BUNDLE,
        stable.bundle_uri,
        DriftFlags.LOG,
        monitoring.prediction_log_uri,
        DriftFlags.MODEL,
        owner.name,
        DriftFlags.WINDOW,
        monitoring.drift_window,
    ]
    limits = resources(monitoring.resources)
    container = _batch_container(spec, "drift", monitoring.image, DRIFT_COMMAND, args, limits)
    job_labels = {VERSION_LABEL: label_value(stable.version), COMPONENT_LABEL: "drift"}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(owner, drift_cronjob_name(owner.name), job_labels),
        "spec": {
            "schedule": monitoring.drift_schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels(owner, **job_labels)},
                "spec": {
                    "backoffLimit": 2,
                    "podFailurePolicy": pod_failure_policy("drift"),
                    "activeDeadlineSeconds": 3600,
                    "ttlSecondsAfterFinished": 24 * 3600,
                    "template": {
                        "metadata": {"labels": labels(owner, **job_labels)},
                        "spec": {
                            "restartPolicy": "Never",
                            **restricted_pod_fields(DRIFT_SCRATCH),
                            "containers": [container],
                        },
                    },
                },
            },
        },
    }
