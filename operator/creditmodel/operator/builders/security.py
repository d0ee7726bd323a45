"""Pod Security "restricted" for every pod the operator causes to exist (predictor pods through the
InferenceService, training Jobs, drift CronJobs): non-root, RuntimeDefault seccomp, no privilege
escalation, every capability dropped, a read-only root filesystem.

The processes only write scratch files, all under /tmp (an emptyDir): the predictor's
prometheus_client multiprocess directory (tempfile.mkdtemp), the training run's quantization and
cross-CPU work directories and joblib's spill-over; HOME points there too, so that a library that
caches under ~ writes to the emptyDir instead of failing. The bundles, data and prediction log go to
S3; a Job's summary goes to /dev/termination-log, which the kubelet mounts writable."""

from __future__ import annotations

from typing import Any

SCRATCH_VOLUME = "scratch"
SCRATCH_PATH = "/tmp"  # noqa: S108 - an emptyDir mounted there, private to the pod
PREDICTOR_SCRATCH = "256Mi"
"""prometheus_client's per-worker metric files; a few MiB in practice."""
TRAINING_SCRATCH = "2Gi"
"""INT8 calibration models, the qemu cross-CPU runs and joblib's memory-mapped arrays (a 1,000,000
row training set spills a few hundred MiB)."""
DRIFT_SCRATCH = "1Gi"


def pod_security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scratch_volumes(size: str) -> list[dict[str, Any]]:
    return [{"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": size}}]


def scratch_mounts() -> list[dict[str, Any]]:
    return [{"name": SCRATCH_VOLUME, "mountPath": SCRATCH_PATH}]


def scratch_env() -> list[dict[str, Any]]:
    return [{"name": "HOME", "value": SCRATCH_PATH}, {"name": "TMPDIR", "value": SCRATCH_PATH}]


def restricted_container(container: dict[str, Any]) -> dict[str, Any]:
    """The container with the restricted securityContext, /tmp mounted and HOME/TMPDIR there."""
    return {
        **container,
        "env": [*scratch_env(), *container.get("env", [])],
        "securityContext": container_security_context(),
        "volumeMounts": scratch_mounts(),
    }


def restricted_pod_fields(scratch: str) -> dict[str, Any]:
    """The pod-level fields of a restricted pod with a scratch emptyDir of `scratch` bytes."""
    return {"securityContext": pod_security_context(), "volumes": scratch_volumes(scratch)}
