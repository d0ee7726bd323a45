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
same byte limit through its own `h11_max_incomplete_event_size` option (it answers 400)."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

MAX_HEADERS = 100
MAX_HEAD_BYTES = 64 * 1024
_STATUS = 431

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

    # --- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
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
                self._answer()

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._answer()

    # --- helpers ------------------------------------------------------------------------------

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(f"request line and headers over {MAX_HEAD_BYTES} bytes")

    def _refuse(self, why: str) -> None:
        self._refusal = why
        raise HeadTooLargeError(why)

    def _answer(self) -> None:
        why = self._refusal or "request head too large"
        log.warning("request head refused: %s", why, extra={"reason": "head_too_large"})
        body = orjson.dumps({"error": f"request head refused: {why}"})
        head = [STATUS_LINE[_STATUS]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: " + str(len(body)).encode("ascii") + b"\r\n")
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join([*head, body]))
        self.transport.close()
