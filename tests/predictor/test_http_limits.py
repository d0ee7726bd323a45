"""The request-head limits of `BoundedHttpToolsProtocol`, read by read: each `data_received` call
here is one read from the socket, so how a request is split across reads is exact (over a real
socket it depends on timing)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from creditmodel.predictor.http_limits import MAX_HEAD_BYTES, BoundedHttpToolsProtocol

pytestmark = pytest.mark.unit


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _connection() -> tuple[BoundedHttpToolsProtocol, _Transport]:
    config = uvicorn.Config(app=_app, http=BoundedHttpToolsProtocol, log_level="warning")
    config.load()
    protocol = BoundedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


def _request(body: bytes, headers: bytes = b"") -> bytes:
    return (
        b"POST /v2/models/m/infer HTTP/1.1\r\nhost: x\r\n"
        + headers
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


async def _answers(transport: _Transport) -> list[bytes]:
    for _ in range(50):
        await asyncio.sleep(0)
    return [line for line in bytes(transport.written).split(b"\r\n") if line.startswith(b"HTTP/")]


async def test_a_large_body_does_not_count_against_the_next_head() -> None:
    """A keep-alive connection: a 600 KB request whose last read is 255,000 bytes of body, then a
    12 KB head in 1,000-byte reads. The body's last read used to count as head bytes (431)."""
    protocol, transport = _connection()
    first = _request(b"x" * 600_000)
    protocol.data_received(first[:-255_000])
    protocol.data_received(first[-255_000:])
    assert await _answers(transport) == [b"HTTP/1.1 200 OK"]
    padding = b"".join(b"x-pad-%d: %s\r\n" % (i, b"a" * 900) for i in range(12))
    second = _request(b"{}", padding)
    for start in range(0, len(second), 1_000):
        protocol.data_received(second[start : start + 1_000])
    assert await _answers(transport) == [b"HTTP/1.1 200 OK"] * 2
    assert not transport.closed


async def test_a_head_that_begins_in_the_read_ending_a_body_is_not_charged_for_it() -> None:
    protocol, transport = _connection()
    first, second = _request(b"y" * 300_000), _request(b"{}", b"x-a: b\r\n")
    protocol.data_received(first[:1_000])
    protocol.data_received(first[1_000:] + second[:10])  # the body's end and the next head
    for start in range(10, len(second), 5):
        protocol.data_received(second[start : start + 5])
    assert await _answers(transport) == [b"HTTP/1.1 200 OK"] * 2


async def test_a_pipelined_read_that_ends_one_head_and_begins_the_next_is_not_counted() -> None:
    """Head A over two reads; the second ends it, carries A's 100 KB body and begins head B:
    all of it was counted as head bytes (431, and request A dropped with it)."""
    protocol, transport = _connection()
    first, second = _request(b"z" * 100_000), _request(b"{}")
    protocol.data_received(first[:20])
    protocol.data_received(first[20:] + second[:10])
    protocol.data_received(second[10:])
    assert await _answers(transport) == [b"HTTP/1.1 200 OK"] * 2
    assert not transport.closed


@pytest.mark.parametrize("read", [1_000, 16_384, 262_144])
async def test_an_endless_header_is_cut_off_after_the_limit_plus_one_read(read: int) -> None:
    protocol, transport = _connection()
    protocol.data_received(b"POST /v2/models/m/infer HTTP/1.1\r\nx-endless: ")
    sent = 0
    while not transport.closed and sent < 10 * MAX_HEAD_BYTES + read:
        protocol.data_received(b"a" * read)
        sent += read
    assert transport.closed
    assert sent <= MAX_HEAD_BYTES + read
    answer = bytes(transport.written)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"request line and headers over 65536 bytes" in answer
