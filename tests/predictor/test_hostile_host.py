"""`--host` (or CREDITMODEL_PREDICTOR_HOST) is the address both the REST and the gRPC server
listen on (issue 13, item 3): with 127.0.0.1 neither port is reachable on another address of
this machine. The default stays every interface, as KServe listens (REST 0.0.0.0, gRPC [::])."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import grpc
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from tests.predictor.conftest import TrainedBundle
from tests.predictor.hostile import http, strict_server
from tests.predictor.server import PredictorServer

pytestmark = pytest.mark.integration

_LISTEN = "0A"
# 127.0.0.1, as an IPv4 socket or a dual-stack IPv6 socket bound to ::ffff:127.0.0.1 (gRPC's).
_LOOPBACK = {("tcp", "0100007F"), ("tcp6", "0000000000000000FFFF00000100007F")}


def listening(port: int) -> set[tuple[str, str]]:
    """(tcp or tcp6, local address in /proc's hex) of every socket listening on `port`."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == _LISTEN and int(hex_port, 16) == port:
                found.add((table, address))
    return found


def other_address() -> str | None:
    """An IPv4 address of this machine other than loopback, if it has one."""
    try:
        addresses = subprocess.run(
            ["hostname", "-I"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return next((a for a in addresses if "." in a and not a.startswith("127.")), None)


def reachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def assert_loopback_only(server: PredictorServer) -> None:
    for port in (server.http_port, server.grpc_port):
        sockets = listening(port)
        assert sockets, port
        assert sockets <= _LOOPBACK, (port, sockets)
    other = other_address()
    if other is not None:
        assert reachable(other, server.http_port) is False
        assert reachable(other, server.grpc_port) is False
    # ... and both still answer on loopback.
    assert http(server.http_port, "GET", "/v2/health/ready", json_body=False).status == 200
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready


def test_host_flag_binds_rest_and_grpc_to_loopback_only(
    champion: TrainedBundle, tmp_path: Path
) -> None:
    with strict_server(champion.uri, tmp_path, extra=["--host", "127.0.0.1"]) as server:
        assert_loopback_only(server)


def test_host_from_the_environment(champion: TrainedBundle, tmp_path: Path) -> None:
    env = {"CREDITMODEL_PREDICTOR_HOST": "127.0.0.1"}
    with strict_server(champion.uri, tmp_path, env=env) as server:
        assert_loopback_only(server)


def test_the_default_listens_on_every_interface(champion: TrainedBundle, tmp_path: Path) -> None:
    with strict_server(champion.uri, tmp_path) as server:
        assert listening(server.http_port) == {("tcp", "00000000")}
        assert listening(server.grpc_port) == {("tcp6", "0" * 32)}
        other = other_address()
        if other is not None:
            assert reachable(other, server.http_port)
            assert reachable(other, server.grpc_port)
