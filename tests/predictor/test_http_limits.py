"""The request-head limits and the read deadline of `BoundedHttpToolsProtocol`, read by read: each
`data_received` call here is one read from the socket, so how a request is split across reads is
exact (over a real socket it depends on timing)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import uvicorn
from uvicorn.server import ServerState

from creditmodel.predictor.http_limits import (
    MAX_HEAD_BYTES,
    READ_TIMEOUT_ATTRIBUTE,
    READ_TIMEOUT_SECONDS,
    BoundedHttpToolsProtocol,
)

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
        self.protocol: asyncio.Protocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closed:
            self.written += data

    def close(self) -> None:
        if not self.closed and self.protocol is not None:  # as asyncio's transports do
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)
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


def _connection(
    app: Any = _app, read_timeout: float | None = None
) -> tuple[BoundedHttpToolsProtocol, _Transport]:
    config = uvicorn.Config(app=app, http=BoundedHttpToolsProtocol, log_level="warning")
    config.load()
    if read_timeout is not None:
        setattr(config, READ_TIMEOUT_ATTRIBUTE, read_timeout)
    protocol = BoundedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    transport.protocol = protocol
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


# --- the read deadline ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
async def _no_callback_fails() -> Any:
    """A timer callback that raises is only logged by the loop: make it fail the test."""
    failures: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: failures.append(context))
    yield
    loop.set_exception_handler(None)
    assert failures == []


TICK = 0.05  # the read timeout of these tests; every wait below is a multiple of it


def _timed_out(transport: _Transport) -> bool:
    answer = bytes(transport.written)
    return answer.startswith(b"HTTP/1.1 408 ") or b"\r\n\r\nHTTP/1.1 408 " in answer


async def test_the_default_timeout_is_used_without_a_setting() -> None:
    protocol, transport = _connection()
    assert protocol.read_timeout == READ_TIMEOUT_SECONDS
    transport.close()
    await asyncio.sleep(0)


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00",
        b"GET /\x00 HTTP/1.1\r\n",
        b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
    ],
    ids=["header-without-colon", "tls-hello", "nul-in-target", "transfer-coding-not-chunked"],
)
async def test_bytes_that_are_not_http_get_a_json_400_and_a_close(garbage: bytes) -> None:
    """uvicorn answers these with a plain-text 400; every other refusal here is JSON."""
    protocol, transport = _connection()
    protocol.data_received(garbage)
    await asyncio.sleep(0)
    assert transport.closed
    written = bytes(transport.written)
    head, _, body = written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head
    assert orjson.loads(body) == {"error": "malformed HTTP request: Invalid HTTP request received"}


async def test_a_connection_that_sends_nothing_is_answered_408_and_closed() -> None:
    _, transport = _connection(read_timeout=TICK)
    await asyncio.sleep(3 * TICK)
    assert transport.closed
    assert _timed_out(transport)
    assert b'"error":"request read timed out: the request did not arrive whole within 0.05' in (
        bytes(transport.written)
    )
    assert b"connection: close" in bytes(transport.written)


async def test_a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_deadline_not_per_read() -> None:
    """Each byte comes well within the timeout; the head as a whole does not."""
    protocol, transport = _connection(read_timeout=4 * TICK)
    head = _request(b"{}")[:-10]
    sent = 0
    while not transport.closed and sent < len(head):
        protocol.data_received(head[sent : sent + 1])
        sent += 1
        await asyncio.sleep(TICK / 5)
    assert transport.closed
    assert _timed_out(transport)
    assert sent < len(head)


async def test_a_body_that_stalls_is_answered_408_and_the_app_sees_a_disconnect() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(message)
            if not message.get("more_body"):
                return

    protocol, transport = _connection(app, read_timeout=2 * TICK)
    whole = _request(b"x" * 1_000)
    protocol.data_received(whole[:-500])
    await asyncio.sleep(4 * TICK)
    assert transport.closed
    assert _timed_out(transport)
    assert seen[-1]["type"] == "http.disconnect"


async def test_a_slow_model_is_not_cut_off_and_the_next_request_gets_a_fresh_deadline() -> None:
    """The clock stops once the request is in: a model slower than the timeout still answers.
    A keep-alive connection idle for longer than the timeout between two requests is uvicorn's
    keep-alive timeout's business, and its next request gets a deadline of its own."""

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await asyncio.sleep(3 * TICK)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    protocol, transport = _connection(slow, read_timeout=2 * TICK)
    await asyncio.sleep(TICK)
    protocol.data_received(_request(b"{}"))
    await asyncio.sleep(5 * TICK)
    assert await _answers(transport) == [b"HTTP/1.1 200 OK"]
    second = _request(b"{}")
    protocol.data_received(second[:10])
    await asyncio.sleep(TICK)  # within the second request's own deadline
    protocol.data_received(second[10:])
    await asyncio.sleep(5 * TICK)
    assert await _answers(transport) == [b"HTTP/1.1 200 OK"] * 2
    assert not transport.closed
    transport.close()
    await asyncio.sleep(0)


async def test_a_body_that_dawdles_after_an_early_answer_gets_no_408_only_a_close() -> None:
    """An app may answer before the body is in (a 413): that answer stands, and the connection
    is closed at the deadline without a second status line."""

    async def early(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b"too large"})

    protocol, transport = _connection(early, read_timeout=2 * TICK)
    protocol.data_received(_request(b"x" * 10_000)[:-5_000])
    await asyncio.sleep(TICK)
    assert await _answers(transport) == [b"HTTP/1.1 413 Request Entity Too Large"]
    assert not transport.closed
    await asyncio.sleep(3 * TICK)
    assert transport.closed
    assert await _answers(transport) == [b"HTTP/1.1 413 Request Entity Too Large"]


async def test_a_first_request_is_timed_from_the_connections_opening() -> None:
    """A client cannot buy a second timeout by waiting almost one before its first byte."""
    protocol, transport = _connection(read_timeout=4 * TICK)
    await asyncio.sleep(3 * TICK)
    protocol.data_received(_request(b"{}")[:10])
    await asyncio.sleep(2 * TICK)  # 5 ticks after the opening, 2 after the first byte
    assert transport.closed
    assert _timed_out(transport)


async def test_an_answer_under_way_at_the_deadline_is_finished_then_the_connection_closed() -> None:
    async def streaming(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(4 * TICK)
        await send({"type": "http.response.body", "body": b"the whole answer"})

    protocol, transport = _connection(streaming, read_timeout=2 * TICK)
    protocol.data_received(_request(b"x" * 100)[:-50])
    await asyncio.sleep(6 * TICK)
    assert transport.closed
    assert bytes(transport.written).endswith(b"the whole answer\r\n0\r\n\r\n")  # chunked, ended
    assert not _timed_out(transport)


async def test_a_keep_alive_connections_next_request_that_stalls_is_answered_408() -> None:
    protocol, transport = _connection(read_timeout=2 * TICK)
    protocol.data_received(_request(b"{}"))
    assert await _answers(transport) == [b"HTTP/1.1 200 OK"]
    await asyncio.sleep(3 * TICK)  # idle past the timeout: no request under way, no deadline
    assert not transport.closed
    protocol.data_received(_request(b"{}")[:10])
    await asyncio.sleep(3 * TICK)
    assert transport.closed
    assert await _answers(transport) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 408 Request Timeout"]


async def test_each_request_on_a_busy_connection_has_its_own_deadline() -> None:
    """The connection's one timer, armed for an earlier request, fires while a later one is
    being read: it waits on for the later one's own deadline instead of cutting it off."""
    protocol, transport = _connection(read_timeout=4 * TICK)
    protocol.data_received(_request(b"{}"))
    assert await _answers(transport) == [b"HTTP/1.1 200 OK"]
    await asyncio.sleep(3 * TICK)
    second = _request(b"{}")
    protocol.data_received(second[:10])
    await asyncio.sleep(2 * TICK)  # the timer fired at 4 ticks; the second began at 3
    assert not transport.closed
    protocol.data_received(second[10:])
    assert await _answers(transport) == [b"HTTP/1.1 200 OK"] * 2
    third = _request(b"{}")
    protocol.data_received(third[:10])
    await asyncio.sleep(6 * TICK)
    assert transport.closed
    assert await _answers(transport) == [b"HTTP/1.1 200 OK"] * 2 + [b"HTTP/1.1 408 Request Timeout"]


async def test_a_connection_the_client_closed_mid_request_is_not_timed_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protocol, transport = _connection(read_timeout=2 * TICK)
    protocol.data_received(_request(b"{}")[:10])
    transport.close()  # the client went away: connection_lost, as asyncio reports it
    await asyncio.sleep(4 * TICK)
    assert not _timed_out(transport)
    assert "request read timed out" not in caplog.text
