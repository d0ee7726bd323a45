"""grpc_core.CoreServer with a real grpcio client and a deliver function of the test's own: calls
received while one wake-up is being handled arrive together at the next; every call is answered
from any thread; a deliver that raises does not stop the server; a message over the limit is the
core's RESOURCE_EXHAUSTED; a port taken is an error at start; a stop answers what is open within
its grace and cancels the rest."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from creditmodel.predictor.grpc_core import CoreServer, Incoming, Status, answer

pytestmark = pytest.mark.integration

METHOD = "/test.Echo/Call"
Deliver = Callable[[list[Incoming], float], None]


def echo(calls: list[Incoming], started: float) -> None:
    for call in calls:
        answer(call.call, call.message[::-1])


def started_server(deliver: Deliver, **options: int) -> tuple[CoreServer, str]:
    server = CoreServer("127.0.0.1:0", list(options.items()), deliver)
    port = server.start()
    return server, f"127.0.0.1:{port}"


def unary(channel: grpc.Channel) -> Callable[..., bytes]:
    return channel.unary_unary(METHOD)  # type: ignore[no-any-return]


@pytest.fixture
def stop_after() -> Iterator[list[CoreServer]]:
    servers: list[CoreServer] = []
    yield servers
    for server in servers:
        server.stop(1.0)


def test_calls_that_arrive_while_one_is_handled_are_delivered_together(
    stop_after: list[CoreServer],
) -> None:
    sizes: list[int] = []
    first = threading.Event()

    def slow_first(calls: list[Incoming], started: float) -> None:
        sizes.append(len(calls))
        if not first.is_set():
            first.set()
            time.sleep(0.3)  # the other calls arrive meanwhile
        echo(calls, started)

    server, target = started_server(slow_first)
    stop_after.append(server)
    with grpc.insecure_channel(target) as channel:
        call = unary(channel)
        lead = call.future(b"lead", timeout=10)
        assert first.wait(10)
        followers = [call.future(f"m{i}".encode(), timeout=10) for i in range(20)]
        assert lead.result() == b"lead"[::-1]
        assert [f.result() for f in followers] == [f"m{i}".encode()[::-1] for i in range(20)]
    assert sizes[0] == 1
    assert max(sizes[1:]) > 1, sizes  # batched, not one call per wake-up
    assert sum(sizes) == 21


def test_calls_are_answered_from_other_threads_and_a_failing_deliver_is_survived(
    stop_after: list[CoreServer],
) -> None:
    def deliver(calls: list[Incoming], started: float) -> None:
        for call in calls:
            if call.message == b"raise":
                raise RuntimeError("a bug in the dispatcher")
            threading.Thread(
                target=answer, args=(call.call, Status(grpc.StatusCode.NOT_FOUND, "gone"))
            ).start()

    server, target = started_server(deliver)
    stop_after.append(server)
    with grpc.insecure_channel(target) as channel:
        call = unary(channel)
        with pytest.raises(grpc.RpcError) as lost:
            call(b"raise", timeout=0.5)  # never answered: its deadline ends it
        assert lost.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.RpcError) as refused:
            call(b"next", timeout=10)
        assert (refused.value.code(), refused.value.details()) == (
            grpc.StatusCode.NOT_FOUND,
            "gone",
        )


def test_a_message_over_the_limit_is_resource_exhausted_before_delivery(
    stop_after: list[CoreServer],
) -> None:
    delivered: list[bytes] = []

    def deliver(calls: list[Incoming], started: float) -> None:
        delivered.extend(call.message for call in calls)
        echo(calls, started)

    server, target = started_server(deliver, **{"grpc.max_receive_message_length": 1024})
    stop_after.append(server)
    with grpc.insecure_channel(target) as channel:
        call = unary(channel)
        with pytest.raises(grpc.RpcError) as caught:
            call(b"x" * 2048, timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert call(b"ok", timeout=10) == b"ko"
    assert delivered == [b"ok"]


def test_a_port_in_use_fails_the_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = CoreServer(f"127.0.0.1:{port}", [("grpc.so_reuseport", 0)], echo)
        with pytest.raises(OSError, match="cannot listen"):
            server.start()


def test_a_stop_answers_within_its_grace_then_cancels_the_rest() -> None:
    held: list[Incoming] = []
    delivered: list[bytes] = []

    def deliver(calls: list[Incoming], started: float) -> None:
        for call in calls:
            delivered.append(call.message)
            if call.message == b"hold":
                held.append(call)
            else:
                threading.Timer(0.2, answer, (call.call, b"late")).start()

    server, target = started_server(deliver)
    with grpc.insecure_channel(target) as channel:
        call = unary(channel)
        answered = call.future(b"answer", timeout=10)
        stuck = call.future(b"hold", timeout=10)
        deadline = time.monotonic() + 10
        while len(delivered) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        began = time.monotonic()
        server.stop(1.0)
        assert time.monotonic() - began < 5
        assert server.stopped.is_set()
        assert answered.result() == b"late"  # open at the stop, answered within the grace
        with pytest.raises(grpc.RpcError) as cancelled:
            stuck.result()
        assert cancelled.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
