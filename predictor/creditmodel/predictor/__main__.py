"""Console entry point `creditmodel-predictor`: KServe's model-server flags plus ours.

Nothing is parsed or imported at module import beyond the standard library: the Prometheus
multiprocess directory must be in the environment before KServe imports prometheus_client."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

_OURS = (
    "host",
    "model_dir",
    "shadow_model_dir",
    "default_variant",
    "ab_percent",
    "max_batch_rows",
    "max_body_bytes",
    "request_read_timeout_seconds",
    "inline_rows",
    "drift_window_seconds",
    "drift_min_rows",
)
_SCALING = ("base_score", "base_odds", "points_to_double_odds")
_ENV = "CREDITMODEL_PREDICTOR_"


def prepare_metrics_dir() -> None:
    """Metrics must aggregate across `--workers` processes (kserve issue 2979): use
    prometheus_client's multiprocess mode, in the directory given (wiped: stale files from a
    previous run would be summed in) or a private temporary one."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in [*path.glob("*.db"), *path.glob("drift_*.npy")]:
            stale.unlink(missing_ok=True)
        return
    created = tempfile.mkdtemp(prefix="creditmodel-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
    atexit.register(shutil.rmtree, created, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    from kserve import model_server

    from creditmodel.core.commands import PredictorFlags

    parser = argparse.ArgumentParser(
        prog="creditmodel-predictor",
        parents=[model_server.parser],
        description="Serve a credit-scoring bundle over the KServe V2 protocol (REST and gRPC).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.set_defaults(model_name=None)
    ours = parser.add_argument_group("credit model (defaults: CREDITMODEL_PREDICTOR_* env)")
    ours.add_argument(
        "--host",
        help="address the REST and gRPC servers listen on (default 0.0.0.0: every interface)",
    )
    ours.add_argument(
        PredictorFlags.MODEL_DIR, help="bundle URI: a local directory or s3://bucket/prefix"
    )
    ours.add_argument("--shadow_model_dir", help="challenger bundle scored in shadow")
    ours.add_argument("--default_variant", choices=["int8", "fp32"])
    ours.add_argument(
        "--ab_percent", type=float, help="percent of traffic split to the other variant"
    )
    ours.add_argument("--max_batch_rows", type=int, help="rows per request limit")
    ours.add_argument("--max_body_bytes", type=int, help="request body size limit")
    ours.add_argument(
        "--request_read_timeout_seconds",
        type=float,
        help="a request's head and body must arrive within this, else 408 (60)",
    )
    ours.add_argument("--inline_rows", type=int, help="larger batches run in a worker thread")
    ours.add_argument("--drift_window_seconds", type=float, help="PSI sliding window")
    ours.add_argument(
        "--drift_min_rows", type=int, help="rows the window needs before PSI is published (500)"
    )
    ours.add_argument("--base_score", type=float, help="points at --base_odds (default: bundle's)")
    ours.add_argument("--base_odds", type=float, help="good:bad odds at --base_score")
    ours.add_argument("--points_to_double_odds", type=float, help="points to double the odds")
    return parser


def settings_from(args: argparse.Namespace) -> Any:
    from creditmodel.core.points import PointsScaling
    from creditmodel.predictor.settings import PredictorSettings

    given = {name: getattr(args, name) for name in _OURS if getattr(args, name) is not None}
    if args.model_name is not None:
        given["model_name"] = args.model_name
    scaling = {name: getattr(args, name) for name in _SCALING if getattr(args, name) is not None}
    if not scaling:  # the three as environment variables, like every other flag of ours
        scaling = {n: os.environ[v] for n in _SCALING if (v := _ENV + n.upper()) in os.environ}
    if scaling:
        if len(scaling) != len(_SCALING):
            raise SystemExit(
                "creditmodel-predictor: give all of --base_score, --base_odds and"
                " --points_to_double_odds (or CREDITMODEL_PREDICTOR_BASE_SCORE, _BASE_ODDS and"
                " _POINTS_TO_DOUBLE_ODDS), or none"
            )
        given["scaling"] = PointsScaling.model_validate(scaling)
    return PredictorSettings(**given)


def main(argv: list[str] | None = None) -> None:
    prepare_metrics_dir()
    args = build_parser().parse_args(argv)

    import logging

    from kserve import logging as kserve_logging
    from kserve import model_server
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from creditmodel.core.bundle import BundleError
    from creditmodel.core.errors import settings_problem
    from creditmodel.predictor.model import CreditScoringModel
    from creditmodel.predictor.serving import CreditModelServer

    if args.configure_logging and not args.log_config_file:
        args.log_config_file = str(resources.files("creditmodel.predictor") / "log_config.json")
        model_server.args.log_config_file = args.log_config_file  # read by spawned workers
    if args.configure_logging:
        kserve_logging.configure_logging(args.log_config_file)
    log = logging.getLogger("creditmodel.predictor")
    try:
        settings = settings_from(args)
    except (ValidationError, SettingsError) as error:
        problem = settings_problem(error, _ENV, flags={*_OURS, *_SCALING, "model_name"})
        raise SystemExit(f"creditmodel-predictor: invalid setting: {problem or error}") from None
    model = CreditScoringModel(settings)
    try:
        model.load()
    except (BundleError, ValueError) as error:
        dirs = {"model_dir": settings.model_dir}
        if settings.shadow_model_dir:
            dirs["shadow_model_dir"] = settings.shadow_model_dir
        log.error("refusing to serve: %s", error, extra=dirs)
        sys.exit(2)
    version = model.service.champion.version if model.service else "?"
    log.info(
        "serving",
        extra={"model": settings.model_name, "version": version, "model_dir": settings.model_dir},
    )
    CreditModelServer(
        host=settings.host,
        max_body_bytes=settings.max_body_bytes,
        read_timeout=settings.request_read_timeout_seconds,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=args.workers,
        max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers,
        enable_grpc=args.enable_grpc,
        enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
    ).start([model])


if __name__ == "__main__":
    main()
