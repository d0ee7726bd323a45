"""`creditmodel-train`: the training Job's entrypoint.

Progress goes to stderr, one JSON document to stdout (the run summary, or the error), and the exit
code says what happened:

    0  bundle published (every gate passed, or gates not enforced)
    2  bad input: arguments, data file or data contents; nothing published
    3  a quality gate failed; nothing published
    4  storage error: S3 or the output location (bucket, credentials, endpoint, already published)

Inside a pod a compact copy of the summary (exit code, version, failed gates, error) also goes to
the termination message (`/dev/termination-log`, or `CREDITMODEL_TERMINATION_LOG`).
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

from creditmodel.core.errors import first_error
from creditmodel.core.storage import redact

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_GATE_FAILED = 3
EXIT_STORAGE = 4

log = logging.getLogger("creditmodel.training")


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="creditmodel-train",
        description="Train, validate, quantize and publish a credit-scoring model bundle.",
        epilog="Exit codes: 0 ok, 2 bad input, 3 gate failed, 4 storage error.",
    )
    p.add_argument("--data", required=True, help="CSV or Parquet: a path or s3://bucket/key")
    p.add_argument("--target", required=True, help="target column")
    p.add_argument("--positive-label", required=True, help="target value meaning default / bad")
    p.add_argument("--model-name", required=True, help="DNS-1123 name, e.g. german-credit")
    p.add_argument(
        "--output", required=True, help="bundle location: a directory or s3://bucket/prefix"
    )
    p.add_argument("--version", help="bundle version (default: UTC timestamp + data hash)")
    p.add_argument("--seed", type=int, default=0)
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
    gates.add_argument("--auc-margin-vs-baseline", type=float)
    gates.add_argument("--onnx-max-abs-dp", type=float)
    gates.add_argument("--int8-max-auc-drop", type=float)
    gates.add_argument("--int8-max-abs-dp", type=float)
    gates.add_argument("--max-brier", type=float)
    gates.add_argument("--min-approval-ratio", type=float)
    gates.add_argument("--fairness-min-group", type=int)
    gates.add_argument("--cpu-max-abs-dp", type=float)
    gates.add_argument(
        "--cpu-models",
        type=_list,
        default=None,
        help="qemu-user CPU models the INT8 model must score identically under"
        " (Haswell,Nehalem: AVX2 and SSE4.2 kernels; 'none' skips the check)",
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
    if args.hidden_units:
        search["hidden_units"] = args.hidden_units
    if args.alphas:
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
        "gates": _given(
            args,
            [
                "auc_margin_vs_baseline",
                "onnx_max_abs_dp",
                "int8_max_auc_drop",
                "int8_max_abs_dp",
                "max_brier",
                "min_approval_ratio",
                "fairness_min_group",
                "cpu_max_abs_dp",
            ],
        ),
        "enforce_gates": not args.no_enforce_gates,
        **_given(args, ["version", "cutoff"]),
    }
    if args.cpu_models is not None:
        values["cpu_models"] = [] if args.cpu_models == ["none"] else args.cpu_models
    try:
        return TrainingConfig.model_validate(values)
    except ValidationError as exc:
        raise BadInputError(f"invalid argument {first_error(exc, show_input=True)}") from None


def _emit(document: dict[str, Any]) -> None:
    """The JSON summary on stdout and, inside a Kubernetes pod, a compact copy in the container's
    termination message, where the operator and `kubectl describe` see it without the logs.
    Both without credentials in any URL (an endpoint, data or output URI)."""
    sys.stdout.write(redact(json.dumps(document, indent=2, default=str)) + "\n")
    sys.stdout.flush()
    termination_log = Path(os.environ.get("CREDITMODEL_TERMINATION_LOG", "/dev/termination-log"))
    if not termination_log.exists():
        return
    compact = {
        key: document[key]
        for key in ("exit_code", "kind", "model_name", "version", "uri", "gates_passed")
        if key in document
    }
    compact["failed_gates"] = [g["name"] for g in document.get("gates", []) if not g["passed"]]
    if "error" in document:
        # Redacted before truncating: a URL cut short could no longer be recognised.
        compact["error"] = redact(str(document["error"]))[:2000]
    try:
        termination_log.write_text(redact(json.dumps(compact, default=str))[:4000])
    except OSError as exc:
        log.warning("cannot write the termination message to %s: %s", termination_log, exc)


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument like any other bad input: JSON on stdout, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise _ArgumentError(message)


def _bad_input(message: str) -> int:
    log.error("bad input: %s", message)
    _emit({"error": message, "kind": "bad_input", "exit_code": EXIT_BAD_INPUT, "published": False})
    return EXIT_BAD_INPUT


class _RedactingFormatter(logging.Formatter):
    """Log lines without credentials, whichever library logged the URL."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def run(argv: Sequence[str] | None = None) -> int:
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
        _emit(
            {
                **exc.result.summary(),
                "error": str(exc),
                "kind": "gate_failed",
                "exit_code": EXIT_GATE_FAILED,
            }
        )
        return EXIT_GATE_FAILED
    except (StorageError, BundleError) as exc:
        log.error("storage: %s", exc)
        _emit({"error": str(exc), "kind": "storage", "exit_code": EXIT_STORAGE, "published": False})
        return EXIT_STORAGE
    _emit({**result.summary(), "exit_code": EXIT_OK})
    return EXIT_OK


def main() -> None:
    sys.exit(run())
