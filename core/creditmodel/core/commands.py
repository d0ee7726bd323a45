"""The command lines the operator writes into pod specs: console scripts, flags and environment
variables, named once here for the builders that write them and the parsers that read them. A
renamed flag then breaks at import or in a unit test, not as a CrashLoopBackOff in a cluster.
"""

from __future__ import annotations

from typing import Final

TRAIN_COMMAND: Final = "creditmodel-train"
DRIFT_COMMAND: Final = "creditmodel-drift"
PREDICTOR_COMMAND: Final = "creditmodel-predictor"


def dest(flag: str) -> str:
    """The attribute argparse stores `flag` under (`--positive-label` -> `positive_label`)."""
    return flag.lstrip("-").replace("-", "_")


class TrainFlags:
    """`creditmodel-train`, as the training Job runs it."""

    DATA: Final = "--data"
    TARGET: Final = "--target"
    POSITIVE_LABEL: Final = "--positive-label"
    MODEL_NAME: Final = "--model-name"
    OUTPUT: Final = "--output"
    VERSION: Final = "--version"
    SEED: Final = "--seed"
    # Gate overrides: each one's `dest` is the gate's field name in the training config and in
    # a CreditModel's spec.training.gates.
    AUC_MARGIN_VS_BASELINE: Final = "--auc-margin-vs-baseline"
    ONNX_MAX_ABS_DP: Final = "--onnx-max-abs-dp"
    INT8_MAX_AUC_DROP: Final = "--int8-max-auc-drop"
    INT8_MAX_ABS_DP: Final = "--int8-max-abs-dp"
    MAX_BRIER: Final = "--max-brier"
    MIN_APPROVAL_RATIO: Final = "--min-approval-ratio"
    FAIRNESS_MIN_GROUP: Final = "--fairness-min-group"
    CPU_MAX_ABS_DP: Final = "--cpu-max-abs-dp"
    CPU_MODELS: Final = "--cpu-models"
    """Comma-separated qemu CPU models; CPU_MODELS_NONE skips the cross-CPU check."""
    CPU_MODELS_NONE: Final = "none"
    GATES: Final = (
        AUC_MARGIN_VS_BASELINE,
        ONNX_MAX_ABS_DP,
        INT8_MAX_AUC_DROP,
        INT8_MAX_ABS_DP,
        MAX_BRIER,
        MIN_APPROVAL_RATIO,
        FAIRNESS_MIN_GROUP,
        CPU_MAX_ABS_DP,
        CPU_MODELS,
    )


class DriftFlags:
    """`creditmodel-drift`, as the drift report CronJob runs it."""

    BUNDLE: Final = "--bundle"
    LOG: Final = "--log"
    MODEL: Final = "--model"
    WINDOW: Final = "--window"


DRIFT_WINDOW_PATTERN: Final = r"^([1-9][0-9]{0,5}m|[1-9][0-9]{0,3}h|[1-9][0-9]{0,2}d)$"
"""A drift window (`spec.monitoring.driftWindow`, `creditmodel-drift --window`): up to 999999m,
9999h or 999d. The job lists the prediction log an hour at a time, so a longer window would list
millions of hours (and 739,000 days reaches before year 1)."""


class PredictorFlags:
    """`creditmodel-predictor` (KServe's model-server flags plus ours), as the InferenceService's
    container runs it: KServe's spelling, with underscores."""

    MODEL_NAME: Final = "--model_name"
    MODEL_DIR: Final = "--model_dir"
    HTTP_PORT: Final = "--http_port"
    GRPC_PORT: Final = "--grpc_port"
    WORKERS: Final = "--workers"


PREDICTION_LOG_ENV_PREFIX: Final = "CREDITMODEL_PREDICTION_LOG_"
"""The predictor's prediction-log settings; the operator sets the two below from spec.monitoring."""
PREDICTION_LOG_URI_ENV: Final = f"{PREDICTION_LOG_ENV_PREFIX}URI"
PREDICTION_LOG_SAMPLE_RATE_ENV: Final = f"{PREDICTION_LOG_ENV_PREFIX}SAMPLE_RATE"
