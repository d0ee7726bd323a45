"""accept_balance against real sockets: several acceptors on one listening socket (each on its
own duplicate of it, as each worker process has its own descriptor) take connections in turn,
whatever the order of opens and closes."""

from __future__ import annotations

import asyncio
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
    CountedConnections,
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
    def __init__(self, listener: socket.socket, loads: WorkerLoads, pid: int) -> None:
        self.slot = loads.claim(pid)
        self.connections = CountedConnections(lambda: self.acceptor.publish())
        self.sock = listener.dup()
        self.acceptor = BalancedAcceptor(
            self.sock, lambda: Tracked(self.connections), loads, self.slot,
            self.connections, backlog=64,
        )  # fmt: skip

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


def test_a_dead_workers_slot_is_ignored_then_taken_over() -> None:
    loads = WorkerLoads(2)
    assert loads.claim(os.getpid()) == 0
    assert loads.claim(_dead_pid()) == 1
    loads.publish(1, 0)
    assert loads.others(0) == []  # a dead worker holding nothing does not hold the others back
    assert loads.claim(os.getpid()) == 1  # its replacement takes its slot
    loads.publish(1, 3)
    assert loads.others(0) == [3]
    with pytest.raises(RuntimeError, match="no free slot"):
        loads.claim(os.getpid())


async def test_a_stuck_least_loaded_worker_delays_a_connection_by_at_most_the_patience(
    listener: socket.socket,
) -> None:
    """A live worker that holds nothing but never accepts (stuck, or busy for long): the other
    takes the connection after PATIENCE_SECONDS rather than leaving the client waiting."""
    loads = WorkerLoads(2)
    stuck = loads.claim(os.getpid())
    loads.publish(stuck, 0)
    worker = Worker(listener, loads, os.getpid())
    clients = [socket.create_connection(listener.getsockname())]
    try:
        await wait_until(lambda: worker.held() == 1)  # a tie: it may take the first
        started = time.monotonic()
        clients.append(socket.create_connection(listener.getsockname()))
        await wait_until(lambda: worker.held() == 2)
        waited = time.monotonic() - started
        assert accept_balance.PATIENCE_SECONDS * 0.9 <= waited < 1.0
    finally:
        for client in clients:
            client.close()
        await worker.stop()
