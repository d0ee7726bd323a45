"""Bounded HTTP request heads: at most `MAX_HEADERS` header fields and `MAX_HEAD_BYTES` of
request line and headers, else `431 Request Header Fields Too Large` (RFC 6585) with a JSON
error, and the connection is closed.

uvicorn's httptools protocol (the one it picks when httptools is installed, as it is here) has
no limit of its own: it would accept 10,000 headers or a 20 MB header and hand them to the app.
`BoundedHttpToolsProtocol` counts the fields as the parser reports them, and the bytes of the reads
that arrive wholly inside a head still incomplete, so an endless header is cut off after about
`MAX_HEAD_BYTES` plus one read rather than buffered. The read that begins a head (which may also
end the previous request's body on a keep-alive connection) is not counted: counting it made a
large request's body count against the small head after it. The limits are Envoy's defaults
(100 headers, 60 KiB), the proxy in front of a KServe predictor, rounded up: nothing that passed
one is refused here. uvicorn's pure-Python h11 protocol, the fallback without httptools, gets the
same byte limit through its own `h11_max_incomplete_event_size` option (it answers 400).

A request must also arrive whole, head and body, within `read_timeout` seconds (default
`READ_TIMEOUT_SECONDS`) of its first byte, or of the connection's opening for a connection's first
request, else `408 Request Timeout` with a JSON error, and the connection is closed. uvicorn has
no such bound: a connection that sends nothing, or a head or body a byte at a time, held its slot
for as long as the client liked (slowloris), and an idle keep-alive connection was only closed
once a response had been sent on it. The clock stops when the request is complete, so a slow
model is not cut off; uvicorn's keep-alive timeout covers the wait between requests."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from creditmodel.predictor.settings import PredictorSettings

MAX_HEADERS = 100
MAX_HEAD_BYTES = 64 * 1024
# The setting's default, written once (settings.py); a protocol built without the setting uses it.
READ_TIMEOUT_SECONDS: float = PredictorSettings.model_fields["request_read_timeout_seconds"].default
# The attribute of uvicorn's Config that carries --request_read_timeout_seconds to each protocol,
# in every worker process (KServe pickles the Config into the workers it spawns).
READ_TIMEOUT_ATTRIBUTE = "creditmodel_read_timeout"

log = logging.getLogger("creditmodel.predictor")


class HeadTooLargeError(Exception):
    """Raised inside a parser callback to stop parsing a head over the limits."""


def protocol() -> str:
    """uvicorn's `http` setting: the bounded httptools protocol, or h11 without httptools."""
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    return f"{__name__}:BoundedHttpToolsProtocol"


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn formats every access-log line's arguments (client address, a URL-quoted path)
        # before the logger drops it at our WARNING level: a few microseconds per response.
        # Access lines are formatted only while uvicorn.access logs INFO.
        self.access_log = self.access_log and self.access_logger.isEnabledFor(logging.INFO)
        self._head_bytes = 0  # of the current head's complete fields
        self._incomplete_bytes = 0  # of the reads that arrived inside the current head
        self._head_open = False  # a head has begun and is not complete yet
        self._head_began = False  # ... in the read being parsed
        self._refusal: str | None = None
        self.read_timeout = float(
            getattr(self.config, READ_TIMEOUT_ATTRIBUTE, READ_TIMEOUT_SECONDS)
        )
        # When the request being read began (None: none is), and the one timer that checks it.
        # A timer armed and cancelled per request cost 2 us of a 150 us request; this one is
        # armed once per connection and, on a busy connection, moved on at most once a timeout.
        self._reading_since: float | None = None
        self._read_timer: asyncio.TimerHandle | None = None

    # --- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._begin_read()  # a connection that never sends a byte is cut off too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        super().connection_lost(exc)

    # --- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._reading_since is None:  # a connection's first request keeps its opening's
            self._begin_read()
        self._head_bytes = 0
        self._incomplete_bytes = 0
        self._head_open = True
        self._head_began = True

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADERS:
            self._refuse(f"more than {MAX_HEADERS} header fields")
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_open = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_since = None
        super().on_message_complete()

    # --- transport ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        # Counted: a read that continues a head begun in an earlier one and does not complete it.
        # A pipelined read may complete one head, carry its body and begin the next head.
        inside, self._head_began = self._head_open, False
        super().data_received(data)  # a refusal from a callback ends in send_400_response
        counted = inside and self._head_open and not self._head_began
        if counted and self._refusal is None and self.parser is not None:
            self._incomplete_bytes += len(data)
            if self._incomplete_bytes > MAX_HEAD_BYTES:  # every byte of these reads is head
                self._refusal = f"request line and headers over {MAX_HEAD_BYTES} bytes"
                self._answer(_HEAD_TOO_LARGE)

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:  # bytes that are not HTTP: a JSON error as every other refusal
            self._refusal = msg.rstrip(".")
            self._answer(_MALFORMED, logged=True)  # uvicorn has logged it
        else:
            self._answer(_HEAD_TOO_LARGE)

    # --- helpers ------------------------------------------------------------------------------

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(f"request line and headers over {MAX_HEAD_BYTES} bytes")

    def _refuse(self, why: str) -> None:
        self._refusal = why
        raise HeadTooLargeError(why)

    def _begin_read(self) -> None:
        self._reading_since = self.loop.time()
        if self._read_timer is None:
            self._read_timer = self.loop.call_later(self.read_timeout, self._check_read)

    def _check_read(self) -> None:
        self._read_timer = None
        if self._reading_since is None:  # nothing being read: the next request arms it again
            return
        left = self._reading_since + self.read_timeout - self.loop.time()
        if left > 0:  # a later request than the one the timer was armed for
            self._read_timer = self.loop.call_later(left, self._check_read)
            return
        # The cycle of the request being read, if its head is in (until then, self.cycle is the
        # previous request's on a keep-alive connection, or None).
        cycle = None if self._head_open else self.cycle
        if cycle is not None and cycle.response_started:  # the app answers before the body is in
            if cycle.response_complete:  # answered (a 413); the rest of the body dawdles
                self.transport.close()
            else:  # end the connection once the answer is out, not the answer
                cycle.keep_alive = False
            return
        self._refusal = f"the request did not arrive whole within {self.read_timeout:g} seconds"
        self._answer(_TIMED_OUT)

    def _answer(self, refusal: tuple[int, str, str], logged: bool = False) -> None:
        """Answer `refusal` (status, log message, reason) with a JSON error and close the
        connection: the request was not read whole, so the app has answered nothing of it."""
        status, message, reason = refusal
        why = self._refusal or message
        if not logged:
            log.warning("%s: %s", message, why, extra={"reason": reason})
        body = orjson.dumps({"error": f"{message}: {why}"})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: " + str(len(body)).encode("ascii") + b"\r\n")
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join([*head, body]))
        self.transport.close()


_HEAD_TOO_LARGE = (431, "request head refused", "head_too_large")
_TIMED_OUT = (408, "request read timed out", "read_timeout")
_MALFORMED = (400, "malformed HTTP request", "malformed_http")
