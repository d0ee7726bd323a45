"""The console entry point's arguments and the typed settings."""

from __future__ import annotations

import inspect

import pytest

from creditmodel.operator import __main__ as main_module
from creditmodel.operator.__main__ import parse_args
from creditmodel.operator.settings import OperatorSettings

pytestmark = pytest.mark.unit


def test_dockerfile_default_arguments_parse() -> None:
    args = parse_args(["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"])
    assert args.all_namespaces
    assert args.liveness == "http://0.0.0.0:8080/healthz"


def test_namespaces_repeat() -> None:
    assert parse_args(["-n", "risk", "-n", "fraud-*"]).namespace == ["risk", "fraud-*"]


def test_a_scope_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args([])
    assert "--all-namespaces or --namespace" in capsys.readouterr().err


def test_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITMODEL_OPERATOR_PROMETHEUS_URL", "http://prometheus:9090")
    monkeypatch.setenv("CREDITMODEL_OPERATOR_RESYNC_SECONDS", "5")
    settings = OperatorSettings()
    assert str(settings.prometheus_url) == "http://prometheus:9090"
    assert settings.resync_seconds == 5


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RESYNC_SECONDS", "-1", "greater than or equal to 0.1"),
        ("RESYNC_SECONDS", "abc", "valid number"),
        ("RESYNC_SECONDS", "inf", "finite number"),  # never polled again
        ("RESYNC_SECONDS", "1e-9", "greater than or equal to 0.1"),  # a busy loop
        ("CHILDREN_RESYNC_SECONDS", "inf", "finite number"),
        ("PROMETHEUS_TIMEOUT_SECONDS", "nan", "finite number"),
        ("DRIFT_POLL_SECONDS", "inf", "finite number"),
        ("PROMETHEUS_NAMESPACE_LABEL", 'a"} or vector(1) #', "should match pattern"),
        ("PROMETHEUS_URL", "http://user:secret@prom:9090", "must be http(s)://HOST"),
        ("PROMETHEUS_URL", "http://169.254.169.254/", "metadata"),
        ("GATEWAY_PROXY_NAMESPACES", "envoy-gateway-system", "not JSON"),
        # refused only by the API server, for every CreditModel, at reconcile time:
        ("PREDICTOR_INGRESS_FROM", "[{}]", "a peer names podSelector"),
        ("PREDICTOR_INGRESS_FROM", '[{"bogus": 1}]', "a peer names podSelector"),
        ("PREDICTOR_INGRESS_FROM", '[{"ipBlock": {}}]', "an ipBlock peer has a cidr"),
        ("PREDICTOR_IMAGE", "bad image", "must be an image reference"),
        ("TRAINING_IMAGE", " ", "must be an image reference"),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    """A bad variable ended start-up with a fifteen-line traceback naming the Python field (a
    list setting that was not JSON, with neither value nor format); inf or 1e-9 seconds were
    taken, and the namespace label went unchecked into every PromQL query."""
    monkeypatch.setenv(f"CREDITMODEL_OPERATOR_{variable}", value)
    with pytest.raises(SystemExit) as stopped:
        main_module.main(["--all-namespaces"])
    message = str(stopped.value)
    assert message.startswith(
        f"creditmodel-operator: invalid setting: CREDITMODEL_OPERATOR_{variable}"
    )
    assert says in message
    assert "\n" not in message


def test_standalone_runs_without_a_peering_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run-operator` (--standalone) never reconciled: a peering name made kopf's peering
    mandatory and kopf stayed paused."""
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(main_module.kopf, "run", lambda **kwargs: calls.append(kwargs))
    main_module.main(["--all-namespaces", "--standalone"])
    main_module.main(["--all-namespaces"])
    main_module.main(["--all-namespaces", "--peering", "team-a"])
    assert [c["peering_name"] for c in calls] == [None, "creditmodel-operator", "team-a"]
    assert [c["standalone"] for c in calls] == [True, False, False]


def test_auto_priority_ranks_the_older_replica_first() -> None:
    """`--priority=auto` (the chart's, for replicaCount > 1): distinct priorities, the replica
    started first highest, so exactly one leads and a restarted one rejoins as a standby."""
    older = parse_args(["-A", "--priority=auto"]).priority
    younger = parse_args(["-A", "--priority=auto"]).priority
    assert older > younger
    assert parse_args(["-A", "--priority=7"]).priority == 7


def test_peering_lifetime_reaches_kopf(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(main_module.kopf, "run", lambda **kwargs: calls.append(kwargs))
    main_module.main(["-A", "--peering-lifetime", "15"])
    main_module.main(["-A"])
    lifetimes = [c["settings"].peering.lifetime for c in calls]  # type: ignore[attr-defined]
    assert lifetimes == [15, 60]


@pytest.mark.parametrize("bad", [["--priority=high"], ["--peering-lifetime=2"]])
def test_bad_peering_flags_are_refused(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["-A", *bad])
    assert "--p" in capsys.readouterr().err


def test_watch_and_index_handlers_run_on_the_event_loop() -> None:
    """kopf runs a plain function in its thread pool: a thread hop per watch event, and a daemon's
    asyncio.Event set from that thread is not reliably seen by the loop."""
    import kopf

    from creditmodel.operator import handlers

    registry = kopf.get_default_registry()
    found = [
        handler.fn
        for handler in (
            *registry._watching.get_all_handlers(),
            *registry._indexing.get_all_handlers(),
        )
        if handler.fn.__module__ == handlers.__name__
    ]
    assert {fn.__name__ for fn in found} >= {"changed", "child_changed", "isvc_readiness"}
    assert [fn.__name__ for fn in found if not inspect.iscoroutinefunction(fn)] == []


def test_a_liveness_port_someone_holds_stops_start_up_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second `make run-operator` (or anything on port 8090) ended the first seconds of the
    operator with two tracebacks from kopf's health reporter; now one line names the port and the
    knob, before kopf starts. A free port starts kopf with it."""
    import socket

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(main_module.kopf, "run", lambda **kwargs: calls.append(kwargs))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        url = f"http://127.0.0.1:{port}/healthz"
        with pytest.raises(SystemExit) as stopped:
            main_module.main(["--all-namespaces", "--standalone", f"--liveness={url}"])
    message = str(stopped.value)
    assert message.startswith(f"creditmodel-operator: --liveness {url}: cannot listen on")
    assert "OPERATOR_ARGS" in message
    assert "\n" not in message
    assert not calls
    main_module.main(["--all-namespaces", "--standalone", f"--liveness={url}"])  # free again
    assert calls[0]["liveness_endpoint"] == url
    with pytest.raises(SystemExit, match="must be http://HOST:PORT/PATH"):
        main_module.main(["--all-namespaces", "--liveness=https://127.0.0.1/healthz"])
