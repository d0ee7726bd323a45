"""accept_balance against real sockets: several acceptors on one listening socket (each on its
own duplicate of it, as each worker process has its own descriptor) take connections in turn,
whatever the order of opens and closes."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditmodel.predictor import accept_balance
from creditmodel.predictor.accept_balance import (
    BalancedAcceptor,
    WorkerLoads,
    should_accept,
)

pytestmark = pytest.mark.unit


@given(st.integers(0, 50), st.lists(st.integers(0, 50), max_size=6))
def test_a_worker_accepts_only_while_no_other_holds_fewer(own: int, others: list[int]) -> None:
    assert should_accept(own, others) == (not others or own <= min(others))


class Tracked(asyncio.Protocol):
    """Adds itself to its worker's connections when connected and leaves when lost, as
    uvicorn's protocols do with `ServerState.connections`."""

    def __init__(self, connections: set[Any]) -> None:
        self.connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)


class Worker:
    def __init__(
        self, listener: socket.socket, loads: WorkerLoads, pid: int,
        protocol: type[Tracked] = Tracked,
    ) -> None:  # fmt: skip
        slot = loads.claim(pid)
        assert slot is not None
        self.slot = slot
        self.sock = listener.dup()
        self.acceptor = BalancedAcceptor(
            self.sock, lambda: protocol(self.connections), loads, slot, backlog=64
        )
        self.connections = self.acceptor.connections
        self.acceptor.start()

    def held(self) -> int:
        return len(self.connections)

    async def stop(self) -> None:
        self.acceptor.close()
        await self.acceptor.wait_closed()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


async def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 2
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def wait_for_total(pool: list[Worker], total: int) -> None:
    await wait_until(lambda: sum(held(pool)) == total)


def held(workers: list[Worker]) -> list[int]:
    return [worker.held() for worker in workers]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    workers=st.integers(2, 4),
    steps=st.lists(st.one_of(st.just("open"), st.integers(0, 30)), min_size=1, max_size=30),
)
async def test_each_connection_goes_to_a_least_loaded_worker(
    listener: socket.socket, workers: int, steps: list[str | int]
) -> None:
    """`open` connects a client; an integer closes the client at that index (of those open),
    which the worker holding it notices. Every accepted connection lands on a worker that held
    no more than any other at that moment."""
    loads = WorkerLoads(workers)
    pool = [Worker(listener, loads, os.getpid()) for _ in range(workers)]
    clients: list[socket.socket] = []
    try:
        for step in steps:
            before = held(pool)
            if step == "open":
                clients.append(socket.create_connection(listener.getsockname()))
                await wait_for_total(pool, sum(before) + 1)
                after = held(pool)
                (taker,) = [i for i in range(workers) if after[i] > before[i]]
                assert before[taker] == min(before), (before, after)
            elif clients:
                clients.pop(int(step) % len(clients)).close()
                await wait_for_total(pool, sum(before) - 1)
    finally:
        for client in clients:
            client.close()
        for worker in pool:
            await worker.stop()


async def test_a_burst_is_split_evenly(listener: socket.socket) -> None:
    """All connections pending before any worker runs (wrk or a pool opening at once)."""
    loads = WorkerLoads(3)
    pool = [Worker(listener, loads, os.getpid()) for _ in range(3)]
    clients = [socket.create_connection(listener.getsockname()) for _ in range(16)]
    try:
        await wait_for_total(pool, 16)
        assert sorted(held(pool)) == [5, 5, 6]
    finally:
        for client in clients:
            client.close()
        for worker in pool:
            await worker.stop()


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_slot_counts_only_while_its_worker_lives_and_beats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dead (or zombie, or wedged: no heartbeat) workers do not hold the others back, and their
    replacements take their slots."""
    loads = WorkerLoads(3)
    assert loads.claim(os.getpid()) == 0
    assert loads.claim(os.getpid()) == 1
    assert loads.claim(_dead_pid()) == 2
    loads.publish(1, 3)
    loads.publish(2, 0)
    assert loads.others(0) == [3]
    assert loads.claim(os.getpid()) == 2  # the dead worker's replacement
    loads.publish(2, 5)
    assert sorted(loads.others(0)) == [3, 5]
    assert loads.claim(os.getpid()) is None  # every slot held
    later = time.monotonic_ns() + int(accept_balance.STALE_SECONDS * 2e9)
    monkeypatch.setattr(accept_balance.time, "monotonic_ns", lambda: later)
    assert loads.others(0) == []  # no heartbeat for two staleness periods: none counts
    assert loads.claim(os.getpid()) == 0


async def test_a_connection_being_handed_off_is_counted_once(listener: socket.socket) -> None:
    """While the protocol is connected (and the hand-off task has not finished yet), the
    worker holds one connection, not two: a peer at a tie must not lose its turn."""
    loads = WorkerLoads(2)
    seen: list[int] = []

    class Probe(Tracked):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            seen.append(worker.acceptor.held())

    worker = Worker(listener, loads, os.getpid(), Probe)
    client = socket.create_connection(listener.getsockname())
    try:
        await wait_until(lambda: bool(seen))
        await asyncio.sleep(0.01)
        assert seen == [1]
        assert worker.acceptor.held() == 1
    finally:
        client.close()
        await worker.stop()


async def _stuck_peer(listener: socket.socket) -> tuple[Worker, list[socket.socket]]:
    """A worker beside a live peer that holds nothing and never accepts, with one connection
    taken at the tie."""
    loads = WorkerLoads(2)
    stuck = loads.claim(os.getpid())
    assert stuck is not None
    loads.publish(stuck, 0)
    worker = Worker(listener, loads, os.getpid())
    clients = [socket.create_connection(listener.getsockname())]
    await wait_until(lambda: worker.held() == 1)
    return worker, clients


async def test_a_busy_least_loaded_worker_delays_a_burst_by_the_patience_once(
    listener: socket.socket,
) -> None:
    """A peer that holds fewer but does not accept (busy): the other worker waits
    PATIENCE_SECONDS, then takes everything pending, not one connection per patience."""
    worker, clients = await _stuck_peer(listener)
    try:
        started = time.monotonic()
        clients += [socket.create_connection(listener.getsockname()) for _ in range(5)]
        await asyncio.sleep(accept_balance.PATIENCE_SECONDS / 2)
        assert worker.held() == 1  # deferring to the peer, within the patience
        await wait_until(lambda: worker.held() == 6)
        waited = time.monotonic() - started
        assert (
            accept_balance.PATIENCE_SECONDS * 0.9
            <= waited
            < 2 * accept_balance.PATIENCE_SECONDS + 0.05
        )
    finally:
        for client in clients:
            client.close()
        await worker.stop()


class FailingOnce(socket.socket):
    """A listening socket whose next accept fails with `errno`."""

    failures: list[int]

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures:
            raise OSError(self.failures.pop(), "injected")
        return super().accept()


async def test_out_of_descriptors_backs_off_and_stops_counting(listener: socket.socket) -> None:
    loads = WorkerLoads(2)
    sock = FailingOnce(fileno=os.dup(listener.fileno()))
    sock.failures = [errno.EMFILE]
    slot = loads.claim(os.getpid())
    assert slot is not None
    acceptor = BalancedAcceptor(sock, asyncio.Protocol, loads, slot, backlog=64)
    acceptor.start()
    peer = loads.claim(os.getpid())
    assert peer is not None
    client = socket.create_connection(listener.getsockname())
    try:
        await wait_until(lambda: loads.others(peer) == [accept_balance.NOT_ACCEPTING])
        assert acceptor.held() == 0
    finally:
        client.close()
        acceptor.close()
        sock.close()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("steps", range(6))
def test_a_connection_handed_off_across_shutdown_is_shut_down_not_left_behind(
    listener: socket.socket, loop: str, steps: int
) -> None:
    """uvicorn closes its servers, then shuts down the connections it holds, then waits for
    them to go. A hand-off still running at that close was cancelled; on uvloop one cut after
    its protocol had registered stayed in uvicorn's connections with its socket closed under
    it, and uvicorn waited for it until the parent killed the worker (about 30 s, 4 runs in
    30 under load). Now it completes and is shut down; the client sees the connection end."""
    import uvloop

    class Closing(Tracked):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self.transport = transport

        def shutdown(self) -> None:  # uvicorn's protocols have one
            self.transport.close()

    async def trial() -> tuple[int, bytes]:
        loads = WorkerLoads(1)
        slot = loads.claim(os.getpid())
        assert slot is not None
        sock = listener.dup()
        acceptor = BalancedAcceptor(sock, lambda: Closing(acceptor.connections), loads, slot,
                                    backlog=64)  # fmt: skip
        acceptor.start()
        acceptor._unwatch()  # accept by hand, at a chosen point
        client = socket.create_connection(listener.getsockname())
        try:
            await asyncio.sleep(0.01)  # in the listen queue
            acceptor._accept_one()
            for _ in range(steps):  # the hand-off is somewhere between started and done
                await asyncio.sleep(0)
            acceptor.close()
            for connection in list(acceptor.connections):
                connection.shutdown()  # what uvicorn does next
            await acceptor.wait_closed()
            await wait_until(lambda: not acceptor.connections)
            client.settimeout(2)
            return len(acceptor.connections), client.recv(1)
        finally:
            client.close()
            sock.close()

    run = uvloop.run if loop == "uvloop" else asyncio.run
    left, received = run(trial())
    assert left == 0
    assert received == b""  # closed by the server, not left open
