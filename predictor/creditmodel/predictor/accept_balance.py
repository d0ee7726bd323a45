"""Spread keep-alive connections evenly over `--workers` REST processes.

KServe's workers share one listening socket, and each worker's event loop accepts every
connection that is pending when it wakes. A burst of new connections (a load balancer, a
sidecar or a client pool opening its keep-alive connections) mostly lands on whichever worker
wakes first, and those connections stay there: measured with 16 wrk connections on two
workers, splits of 16/0, 12/4 and 11/5 happened as often as 8/8, and a 16/0 split serves at
one worker's throughput.

Here each worker publishes, in a small shared table (one slot per worker), its pid, how many
connections it holds and a heartbeat (from uvicorn's 0.1 s tick). A worker takes a pending
connection only while no other live worker holds fewer (`should_accept`); a worker whose
heartbeat is older than `STALE_SECONDS` (its loop wedged, or a zombie) or that has stopped
accepting (shutting down, or out of file descriptors) does not count, so the least-loaded
worker that counts always may take it. A worker that defers looks again every
`RECHECK_SECONDS` and, once the others have taken nothing for `PATIENCE_SECONDS` (a
least-loaded worker that is busy), takes what is pending until nothing is. Only accepting
changes: requests never wait on another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import multiprocessing
import os
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("creditmodel.predictor")

RECHECK_SECONDS = 0.001
PATIENCE_SECONDS = 0.05
STALE_SECONDS = 1.0  # ten of uvicorn's ticks
RETRY_SECONDS = 1.0  # after running out of a resource, as asyncio's servers wait
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
NOT_ACCEPTING = 2**62  # a count no live worker reaches: others never defer to this one
PID, HELD, BEAT = range(3)


def should_accept(own: int, others: Iterable[int]) -> bool:
    """Whether a worker holding `own` connections takes the next one, given what the other
    live workers hold: only while none holds fewer."""
    return all(own <= other for other in others)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000  # CLOCK_MONOTONIC: one clock for every process


class WorkerLoads:
    """The shared table: per slot a worker's pid, the connections it holds and its last
    heartbeat. Created in the parent, it reaches each spawned worker with the REST server
    it is pickled with."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._table = context.RawArray("q", 3 * workers)
        self._claiming = context.Lock()
        self.workers = workers

    def _get(self, slot: int, field: int) -> int:
        return int(self._table[3 * slot + field])

    def _set(self, slot: int, field: int, value: int) -> None:
        self._table[3 * slot + field] = value

    def _counts(self, slot: int) -> bool:
        """Whether the worker in `slot` is one the others defer to: alive and beating."""
        pid = self._get(slot, PID)
        fresh = _now_ms() - self._get(slot, BEAT) <= STALE_SECONDS * 1000
        return pid != 0 and fresh and _alive(pid)

    def claim(self, pid: int) -> int | None:
        """A slot for worker `pid` (free, or left by a worker that is gone), or None."""
        with self._claiming:
            for slot in range(self.workers):
                if not self._counts(slot):
                    self._set(slot, PID, pid)
                    self._set(slot, HELD, 0)
                    self._set(slot, BEAT, _now_ms())
                    return slot
        return None

    def publish(self, slot: int, held: int) -> None:
        self._set(slot, HELD, held)
        self._set(slot, BEAT, _now_ms())

    def leave(self, slot: int) -> None:
        self._set(slot, PID, 0)

    def all_started(self) -> bool:
        """Whether every slot holds a live worker that beats: all of them serve."""
        return all(self._counts(slot) for slot in range(self.workers))

    def others(self, slot: int) -> list[int]:
        """What the other workers that count hold."""
        return [
            self._get(other, HELD)
            for other in range(self.workers)
            if other != slot and self._counts(other)
        ]


class CountedConnections(set[Any]):
    """uvicorn's set of open connections (`ServerState.connections`: each protocol adds itself
    when connected and discards itself when lost) that reports both."""

    def __init__(self, added: Callable[[], None], removed: Callable[[], None]) -> None:
        super().__init__()
        self._added, self._removed = added, removed

    def add(self, connection: Any) -> None:
        super().add(connection)
        self._added()

    def discard(self, connection: Any) -> None:
        if connection in self:
            super().discard(connection)
            self._removed()

    def remove(self, connection: Any) -> None:
        super().remove(connection)
        self._removed()


def _pending(sock: socket.socket) -> bool:
    """Whether a connection waits to be accepted (poll, not select: any descriptor number)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class BalancedAcceptor:
    """Accepts from a listening socket shared with other workers, one connection at a time and
    only when `should_accept` says so, and hands each to `protocol_factory` on the running loop.
    `connections` is the set uvicorn's protocols must register in; `close` and `wait_closed`
    are what uvicorn calls on its servers at shutdown."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        loads: WorkerLoads,
        slot: int,
        *,
        backlog: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._sock, self._factory, self._backlog = sock, protocol_factory, backlog
        self._loads, self._slot = loads, slot
        self._ssl = ssl_context
        self.connections = CountedConnections(self._settled, self.publish)
        self._unconnected = 0  # accepted, not yet in `connections`
        self._handoffs: set[asyncio.Task[Any]] = set()
        self._deferred_at = 0.0  # since when the others have made no progress, while deferring
        self._others_then: list[int] = []
        self._timer: asyncio.TimerHandle | None = None
        self._accepting = False  # False while backing off, and once closed
        self._closed = False
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        self._sock.setblocking(False)
        self._sock.listen(self._backlog)  # one already listening only takes the new backlog
        self._accepting = True
        self.publish()
        self._watch()

    def held(self) -> int:
        """Connections this worker holds, counting those still being handed to a protocol."""
        return len(self.connections) + self._unconnected

    def publish(self) -> None:
        """Also the heartbeat: uvicorn's tick calls it every 0.1 s."""
        if self._closed:
            return  # the slot may be another worker's by now
        self._loads.publish(self._slot, self.held() if self._accepting else NOT_ACCEPTING)

    def _settled(self) -> None:
        """A connection being handed off is now in `connections`, or will never be."""
        self._unconnected = max(0, self._unconnected - 1)
        self.publish()

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, callback)

    def _watch(self) -> None:
        self._timer = None
        if self._accepting:
            self._loop.add_reader(self._sock.fileno(), self._on_pending)

    def _unwatch(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock.fileno())

    def _others(self) -> list[int]:
        self.publish()
        return self._loads.others(self._slot)

    def _on_pending(self) -> None:
        others = self._others()
        if should_accept(self.held(), others):
            self._accept_one()
            return
        self._unwatch()
        self._deferred_at, self._others_then = self._loop.time(), others
        self._later(RECHECK_SECONDS, self._recheck)

    def _recheck(self) -> None:
        """Deferred: take what is pending once this worker may, or once the others have made no
        progress (taken or dropped nothing) for PATIENCE_SECONDS; watch the socket again once
        nothing is pending."""
        self._timer = None
        if not self._accepting:
            return
        if not _pending(self._sock):
            self._watch()
            return
        others, now = self._others(), self._loop.time()
        if others != self._others_then:  # another worker is taking connections: not stuck
            self._deferred_at, self._others_then = now, others
        stuck = now - self._deferred_at >= PATIENCE_SECONDS
        if (stuck or should_accept(self.held(), others)) and not self._accept_one():
            return  # backing off
        self._later(RECHECK_SECONDS, self._recheck)

    def _accept_one(self) -> bool:
        """Accept and hand off one connection; False when backing off."""
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return True  # another worker took it, or the client gave up
        except OSError as exc:
            if exc.errno not in OUT_OF_RESOURCES:
                log.warning("accept failed", extra={"error": str(exc)})
                return True
            log.warning("accept failed", extra={"error": str(exc), "retry_in_s": RETRY_SECONDS})
            self._unwatch()
            self._accepting = False
            self.publish()
            self._later(RETRY_SECONDS, self._resume)
            return False
        conn.setblocking(False)
        self._unconnected += 1
        handoff = self._loop.create_task(
            self._loop.connect_accepted_socket(self._factory, conn, ssl=self._ssl)
        )
        self._handoffs.add(handoff)
        handoff.add_done_callback(lambda task: self._handed_off(task, conn))
        self.publish()
        return True

    def _resume(self) -> None:
        if self._closed:
            return
        self._accepting = True
        self.publish()
        self._watch()

    def _handed_off(self, task: asyncio.Task[Any], conn: socket.socket) -> None:
        self._handoffs.discard(task)
        if task.cancelled() or task.exception() is not None:
            conn.close()
            self._settled()
        elif self._closed:  # connected after uvicorn told the held connections to shut down
            _, protocol = task.result()
            shutdown = getattr(protocol, "shutdown", None)
            if shutdown is not None:
                shutdown()  # uvicorn's: answers a request in flight, then closes
            else:
                protocol.transport.close()

    def close(self) -> None:
        """Stop accepting and leave the table. A connection still being handed off is not
        cancelled (a hand-off cut after the protocol registered left it in uvicorn's
        connections with its socket closed, and uvicorn's shutdown waited for it until the
        parent killed the worker): it completes, and `_handed_off` shuts it down."""
        if self._closed:
            return
        self._closed, self._accepting = True, False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._unwatch()
        self._loads.leave(self._slot)

    async def wait_closed(self) -> None:
        if self._handoffs:
            await asyncio.gather(*self._handoffs, return_exceptions=True)
