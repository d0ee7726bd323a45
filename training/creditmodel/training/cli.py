"""`creditmodel-train`: the training Job's entrypoint.

Progress goes to stderr, one JSON document to stdout (the run summary, or the error), and the exit
code says what happened (creditmodel.core.jobs.ExitCode, which the operator reads):

    0  bundle published (every gate passed, or gates not enforced)
    2  bad input: arguments, data file or data contents; nothing published
    3  a quality gate failed; nothing published
    4  storage error: S3 or the output location (bucket, credentials, endpoint, already published)

Inside a pod a compact copy of the summary (exit code, version, failed gates, error) also goes to
the termination message (`/dev/termination-log`, or `CREDITMODEL_TERMINATION_LOG`), in the schema
of creditmodel.core.jobs.TerminationMessage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from creditmodel.core import jobs
from creditmodel.core.commands import TRAIN_COMMAND, TrainFlags, dest
from creditmodel.core.errors import first_error
from creditmodel.core.jobs import ExitCode
from creditmodel.core.storage import redact

log = logging.getLogger("creditmodel.training")

GATE_DESTS = [dest(flag) for flag in TrainFlags.GATES if flag != TrainFlags.CPU_MODELS]
"""The numeric gate overrides, by their TrainingConfig.gates field (cpu_models is a list)."""


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=TRAIN_COMMAND,
        description="Train, validate, quantize and publish a credit-scoring model bundle.",
        epilog="Exit codes: "
        + ", ".join(f"{c.value} {c.kind.replace('_', ' ')}" for c in ExitCode),
    )
    p.add_argument(TrainFlags.DATA, required=True, help="CSV or Parquet: a path or s3://bucket/key")
    p.add_argument(TrainFlags.TARGET, required=True, help="target column")
    p.add_argument(
        TrainFlags.POSITIVE_LABEL, required=True, help="target value meaning default / bad"
    )
    p.add_argument(TrainFlags.MODEL_NAME, required=True, help="DNS-1123 name, e.g. german-credit")
    p.add_argument(
        TrainFlags.OUTPUT, required=True, help="bundle location: a directory or s3://bucket/prefix"
    )
    p.add_argument(TrainFlags.VERSION, help="bundle version (default: UTC timestamp + data hash)")
    p.add_argument(TrainFlags.SEED, type=int, default=0)
    p.add_argument(
        "--features",
        help="JSON feature spec (descriptions, reason codes, ranges): a path or s3:// URI;"
        " default: <data stem>.features.json beside the data, when it exists",
    )
    p.add_argument(
        "--audit-only", type=_list, default=None, help="columns used only for the fairness audit"
    )
    p.add_argument("--exclude", type=_list, default=None, help="columns to ignore")
    p.add_argument("--cutoff", type=float, help="approve below this probability of default (0.5)")
    search = p.add_argument_group("search")
    search.add_argument("--hidden-units", type=_list, help="comma-separated MLP widths (8,16)")
    search.add_argument("--alphas", type=_list, help="comma-separated L2 penalties (0.3,1,3)")
    search.add_argument("--folds", type=int)
    search.add_argument("--max-iter", type=int)
    search.add_argument("--search-rows", type=int, help="rows for CV and baseline (sampled above)")
    search.add_argument("--fit-rows", type=int, help="rows for the final fit (default: all)")
    search.add_argument("--jobs", type=int, help="processes for the CV fits (default: one per CPU)")
    gates = p.add_argument_group("gate overrides")
    gates.add_argument(TrainFlags.AUC_MARGIN_VS_BASELINE, type=float)
    gates.add_argument(TrainFlags.ONNX_MAX_ABS_DP, type=float)
    gates.add_argument(TrainFlags.INT8_MAX_AUC_DROP, type=float)
    gates.add_argument(TrainFlags.INT8_MAX_ABS_DP, type=float)
    gates.add_argument(TrainFlags.MAX_BRIER, type=float)
    gates.add_argument(TrainFlags.MIN_APPROVAL_RATIO, type=float)
    gates.add_argument(TrainFlags.FAIRNESS_MIN_GROUP, type=int)
    gates.add_argument(TrainFlags.CPU_MAX_ABS_DP, type=float)
    gates.add_argument(
        TrainFlags.CPU_MODELS,
        type=_list,
        default=None,
        help="qemu-user CPU models the INT8 model must score identically under"
        f" (Haswell,Nehalem: AVX2 and SSE4.2 kernels; '{TrainFlags.CPU_MODELS_NONE}' skips"
        " the check)",
    )
    gates.add_argument(
        "--no-enforce-gates",
        action="store_true",
        help="publish even if a gate fails (recorded in the manifest)",
    )
    return p


def _given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def config_from(args: argparse.Namespace) -> Any:
    from creditmodel.training import data
    from creditmodel.training.config import FeatureSpecFile, TrainingConfig
    from creditmodel.training.errors import BadInputError

    spec = FeatureSpecFile()
    features_uri = args.features or data.feature_spec_beside(args.data)
    if features_uri is not None:
        try:
            spec = FeatureSpecFile.model_validate_json(data.read_bytes(features_uri))
        except BadInputError as exc:
            raise BadInputError(f"--features {redact(features_uri)}: {exc}") from None
        except ValidationError as exc:
            raise BadInputError(
                f"--features {redact(features_uri)}: {first_error(exc, show_input=True)}"
            ) from None
    search = _given(args, ["folds", "max_iter", "search_rows", "fit_rows", "jobs"])
    # Given but empty ("" or ",,") is an empty grid, which the config refuses, not the default.
    if args.hidden_units is not None:
        search["hidden_units"] = args.hidden_units
    if args.alphas is not None:
        search["alphas"] = args.alphas
    values: dict[str, Any] = {
        "data": args.data,
        "target": args.target,
        "positive_label": args.positive_label,
        "model_name": args.model_name,
        "output": args.output,
        "seed": args.seed,
        "features": spec.features,
        "audit_only": args.audit_only if args.audit_only is not None else spec.audit_only,
        "exclude": args.exclude if args.exclude is not None else spec.exclude,
        "search": search,
        "gates": _given(args, GATE_DESTS),
        "enforce_gates": not args.no_enforce_gates,
        **_given(args, ["version", "cutoff"]),
    }
    if args.cpu_models is not None:
        none = args.cpu_models == [TrainFlags.CPU_MODELS_NONE]
        values["cpu_models"] = [] if none else args.cpu_models
    try:
        return TrainingConfig.model_validate(values)
    except ValidationError as exc:
        raise BadInputError(f"invalid argument {first_error(exc, show_input=True)}") from None


def termination_message(document: dict[str, Any]) -> jobs.TerminationMessage:
    """The compact copy of a summary `document` for the termination message, without credentials:
    redacted before `jobs.render` shortens it, as a URL cut short could no longer be recognised."""
    texts = ("kind", "model_name", "version", "uri", "error")
    compact: dict[str, Any] = {k: str(document[k]) for k in texts if document.get(k) is not None}
    compact["exit_code"] = int(document["exit_code"])
    if document.get("gates_passed") is not None:
        compact["gates_passed"] = bool(document["gates_passed"])
    failed = [str(g["name"]) for g in document.get("gates", []) if not g["passed"]]
    compact["failed_gates"] = failed
    return jobs.TerminationMessage.model_validate_json(redact(json.dumps(compact)))


def _emit(document: dict[str, Any]) -> None:
    """The JSON summary on stdout and, inside a Kubernetes pod, a compact copy in the container's
    termination message, where the operator and `kubectl describe` see it without the logs.
    Both without credentials in any URL (an endpoint, data or output URI)."""
    sys.stdout.write(redact(json.dumps(document, indent=2, default=str)) + "\n")
    sys.stdout.flush()
    termination_log = Path(os.environ.get(jobs.TERMINATION_LOG_ENV, jobs.TERMINATION_LOG_DEFAULT))
    if not termination_log.exists():
        return
    try:
        termination_log.write_text(jobs.render(termination_message(document)))
    except OSError as exc:
        log.warning("cannot write the termination message to %s: %s", termination_log, exc)


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument like any other bad input: JSON on stdout, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise _ArgumentError(message)


def _failed(code: ExitCode, error: str, **summary: Any) -> ExitCode:
    _emit({"published": False, **summary, "error": error, "kind": code.kind, "exit_code": code})
    return code


def _bad_input(message: str) -> ExitCode:
    log.error("bad input: %s", message)
    return _failed(ExitCode.BAD_INPUT, message)


class _RedactingFormatter(logging.Formatter):
    """Log lines without credentials, whichever library logged the URL."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def run(argv: Sequence[str] | None = None) -> ExitCode:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        args = parser().parse_args(argv)
    except _ArgumentError as exc:
        return _bad_input(f"invalid arguments: {exc}")
    from creditmodel.core.bundle import BundleError
    from creditmodel.core.storage import StorageError
    from creditmodel.training import pipeline
    from creditmodel.training.errors import BadInputError
    from creditmodel.training.pipeline import GateFailedError

    try:
        result = pipeline.train(config_from(args))
    except BadInputError as exc:
        return _bad_input(str(exc))
    except GateFailedError as exc:
        log.error("%s", exc)
        return _failed(ExitCode.GATE_FAILED, str(exc), **exc.result.summary())
    except (StorageError, BundleError) as exc:
        log.error("storage: %s", exc)
        return _failed(ExitCode.STORAGE, str(exc))
    _emit({**result.summary(), "exit_code": ExitCode.OK})
    return ExitCode.OK


def main() -> None:
    sys.exit(run())
