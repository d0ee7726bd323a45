"""Spread keep-alive connections evenly over `--workers` REST processes.

KServe's workers share one listening socket, and each worker's event loop accepts every
connection that is pending when it wakes. A burst of new connections (a load balancer, a
sidecar or a client pool opening its keep-alive connections) mostly lands on whichever worker
wakes first, and those connections stay there: measured with 16 wrk connections on two
workers, splits of 16/0, 12/4 and 11/5 happened as often as 8/8, and a 16/0 split serves at
one worker's throughput.

Here each worker publishes how many connections it holds in a small shared table (one slot per
worker: its pid and its count), and takes a pending connection only while no other live worker
holds fewer (`should_accept`). The least-loaded worker always may, so some worker always takes
it. A worker that defers looks again every `RECHECK_SECONDS`, and takes the connection anyway
once it has waited `PATIENCE_SECONDS` (a least-loaded worker that is stuck, or has died and not
yet been replaced, costs a client at most that long). Slots of workers that died are taken over
by their replacements. Only accepting changes: requests never wait on another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import select
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("creditmodel.predictor")

RECHECK_SECONDS = 0.001
PATIENCE_SECONDS = 0.05
RETRY_SECONDS = 1.0  # after an accept that failed for want of a resource (as asyncio waits)


def should_accept(own: int, others: Iterable[int]) -> bool:
    """Whether a worker holding `own` connections takes the next one, given what the other live
    workers hold: only while none holds fewer."""
    return all(own <= other for other in others)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkerLoads:
    """The shared table: per slot, a worker's pid and how many connections it holds. Created in
    the parent, it reaches each spawned worker with the REST server it is pickled with."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._table = context.RawArray("q", 2 * workers)
        self._claiming = context.Lock()
        self.workers = workers

    def claim(self, pid: int) -> int:
        """A slot for worker `pid`: a free one, or one whose worker has died."""
        with self._claiming:
            for slot in range(self.workers):
                holder = self._table[2 * slot]
                if holder == 0 or not _alive(holder):
                    self._table[2 * slot], self._table[2 * slot + 1] = pid, 0
                    return slot
        raise RuntimeError(f"no free slot among {self.workers} for worker {pid}")

    def publish(self, slot: int, connections: int) -> None:
        self._table[2 * slot + 1] = connections

    def others(self, slot: int) -> list[int]:
        """What the other live workers hold."""
        counts = []
        for other in range(self.workers):
            pid = self._table[2 * other]
            if other != slot and pid != 0 and _alive(pid):
                counts.append(self._table[2 * other + 1])
        return counts


class CountedConnections(set[Any]):
    """uvicorn's set of open connections (`ServerState.connections`: each protocol adds itself
    when connected, discards itself when lost) that reports every change."""

    def __init__(self, changed: Callable[[], None]) -> None:
        super().__init__()
        self._changed = changed

    def add(self, connection: Any) -> None:
        super().add(connection)
        self._changed()

    def discard(self, connection: Any) -> None:
        super().discard(connection)
        self._changed()

    def remove(self, connection: Any) -> None:
        super().remove(connection)
        self._changed()


def _pending(sock: socket.socket) -> bool:
    """Whether a connection waits to be accepted (poll, not select: any descriptor number)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class BalancedAcceptor:
    """Accepts from a listening socket shared with other workers, one connection at a time and
    only when `should_accept` says so, and hands each to `protocol_factory` on the running loop.
    Has the two methods uvicorn calls on its servers at shutdown, `close` and `wait_closed`."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        loads: WorkerLoads,
        slot: int,
        connections: set[Any],
        *,
        backlog: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._sock = sock
        self._factory = protocol_factory
        self._loads, self._slot = loads, slot
        self._connections = connections
        self._ssl = ssl_context
        self._loop = asyncio.get_running_loop()
        self._handoffs: set[asyncio.Task[Any]] = set()
        self._deferred_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        sock.setblocking(False)
        sock.listen(backlog)  # a socket that is already listening only takes the new backlog
        self._loop.add_reader(sock.fileno(), self._on_pending)

    def held(self) -> int:
        """Connections this worker holds, counting those being handed to a protocol."""
        return len(self._connections) + len(self._handoffs)

    def publish(self) -> None:
        self._loads.publish(self._slot, self.held())

    def _on_pending(self) -> None:
        self.publish()
        if should_accept(self.held(), self._loads.others(self._slot)):
            self._accept_one()
            return
        self._loop.remove_reader(self._sock.fileno())
        self._deferred_at = self._loop.time()
        self._timer = self._loop.call_later(RECHECK_SECONDS, self._recheck)

    def _recheck(self) -> None:
        self._timer = None
        if self._closed:
            return
        if _pending(self._sock):
            self.publish()
            waited = self._loop.time() - (self._deferred_at or self._loop.time())
            if not should_accept(self.held(), self._loads.others(self._slot)) and (
                waited < PATIENCE_SECONDS
            ):
                self._timer = self._loop.call_later(RECHECK_SECONDS, self._recheck)
                return
            self._accept_one()
        self._deferred_at = None
        self._loop.add_reader(self._sock.fileno(), self._on_pending)

    def _resume(self) -> None:
        self._timer = None
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._on_pending)

    def _accept_one(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up
        except OSError as exc:  # out of file descriptors, say
            log.warning("accept failed", extra={"error": str(exc), "retry_in_s": RETRY_SECONDS})
            self._loop.remove_reader(self._sock.fileno())
            self._timer = self._loop.call_later(RETRY_SECONDS, self._resume)
            return
        conn.setblocking(False)
        handoff = self._loop.create_task(
            self._loop.connect_accepted_socket(self._factory, conn, ssl=self._ssl)
        )
        self._handoffs.add(handoff)
        handoff.add_done_callback(lambda task: self._handed_off(task, conn))
        self.publish()

    def _handed_off(self, task: asyncio.Task[Any], conn: socket.socket) -> None:
        self._handoffs.discard(task)
        if task.cancelled() or task.exception() is not None:
            conn.close()
        self.publish()

    def close(self) -> None:
        """Stop accepting (the connections held are uvicorn's to shut down)."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock.fileno())

    async def wait_closed(self) -> None:
        if self._handoffs:
            await asyncio.gather(*self._handoffs, return_exceptions=True)
