"""Console entry point `creditmodel-operator`: kopf's run options, then the handlers."""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import kopf
from pydantic import ValidationError
from pydantic_settings import SettingsError

from creditmodel.core.errors import settings_problem
from creditmodel.operator import handlers
from creditmodel.operator.settings import OperatorSettings


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="creditmodel-operator",
        description="kopf operator for CreditModel: training Jobs, canary rollouts, analysis.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve every namespace")
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="namespace (or glob); repeatable"
    )
    parser.add_argument("--liveness", metavar="URL", help="e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument(
        "--standalone", action="store_true", help="no peering (only for a single replica)"
    )
    parser.add_argument(
        "--priority",
        type=priority,
        default=0,
        help="peering priority: an integer, or `auto` (the replica started first leads, the"
        " others stand by; for several replicas of one Deployment)",
    )
    parser.add_argument(
        "--peering-lifetime",
        type=int,
        metavar="SECONDS",
        help="peering lease: a replica not seen for this long is presumed dead and a standby"
        " takes over (kopf's default: 60)",
    )
    parser.add_argument("--peering", help="peering object name (default: from settings)")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    if not args.all_namespaces and not args.namespace:
        parser.error("one of --all-namespaces or --namespace is required")
    if args.peering_lifetime is not None and not 5 <= args.peering_lifetime <= 3600:
        parser.error("--peering-lifetime must be between 5 and 3600 seconds")
    return args


def priority(value: str) -> int:
    """An integer, or `auto`: minus the start time in microseconds, so that an older replica
    always outranks a younger one (kopf pauses every replica but the highest; equal priorities
    would pause them all), and a replica that restarts rejoins as a standby."""
    if value == "auto":
        return -time.time_ns() // 1000
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer or `auto`: {value!r}") from None


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        settings = OperatorSettings()  # fail fast on a bad environment, before connecting
    except (ValidationError, SettingsError) as exc:
        problem = settings_problem(exc, "CREDITMODEL_OPERATOR_")
        raise SystemExit(f"creditmodel-operator: invalid setting: {problem or exc}") from None
    taken = liveness_problem(args.liveness) if args.liveness else None
    if taken:
        raise SystemExit(f"creditmodel-operator: --liveness {args.liveness}: {taken}")
    kopf.configure(verbose=args.verbose, quiet=args.quiet)
    assert handlers.run  # the import registers the handlers with kopf's default registry
    kopf_settings = kopf.OperatorSettings()
    if args.peering_lifetime is not None:
        kopf_settings.peering.lifetime = args.peering_lifetime
    kopf.run(
        settings=kopf_settings,
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
        standalone=args.standalone,
        priority=args.priority,
        peering_name=peering_name(args, settings),
    )


def liveness_problem(url: str) -> str | None:
    """Why kopf could not serve its liveness probe at `url`, checked before it starts: kopf's
    health reporter fails inside the running operator, with two tracebacks, when the port is
    taken (a second operator, `make run-operator` twice)."""
    parsed = urlsplit(url)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme != "http" or not parsed.hostname or port is None:
        return "must be http://HOST:PORT/PATH"
    family = socket.AF_INET6 if ":" in parsed.hostname else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((parsed.hostname, port))
        except OSError as exc:
            return (
                f"cannot listen on {parsed.hostname}:{port} ({exc.strerror}); another process"
                " holds it: choose another port (make run-operator: OPERATOR_ARGS)"
            )
    return None


def peering_name(args: argparse.Namespace, settings: OperatorSettings) -> str | None:
    """None when standalone: a peering name makes kopf's peering mandatory, and kopf then stays
    paused ("peering CRD is missing") even with --standalone, while /healthz answers 200."""
    if args.standalone:
        return None
    return str(args.peering or settings.peering_name)


if __name__ == "__main__":
    main()
