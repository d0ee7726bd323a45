"""The Kubernetes adapter's transport against a real HTTP server: JSON both ways, a rotated token
read again once, a request without an answer as ConnectionError."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from creditmodel.operator.kube import Kube

pytestmark = pytest.mark.unit


class _Auth:
    """What Kube reads of kr8s's credentials; `reauthenticate` hands out the next token."""

    def __init__(self, server: str, tokens: list[str]) -> None:
        self.server, self.tokens = server, tokens
        self.token, self.tls_server_name, self.proxy = tokens.pop(0), None, None

    async def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context()

    async def reauthenticate(self) -> None:
        self.token = self.tokens.pop(0)


class _Api:
    def __init__(self, auth: _Auth) -> None:
        self.auth = auth


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[tuple[str, str, str]]]]:
    """An API server stand-in that accepts only the token "fresh"."""
    seen: list[tuple[str, str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.headers.get("Authorization", "")))
        if request.headers.get("Authorization") != "Bearer fresh":
            return web.json_response({"kind": "Status", "message": "Unauthorized"}, status=401)
        body = await request.json() if request.can_read_body else None
        return web.json_response({"metadata": {"name": "x"}, "echo": body})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_a_rejected_token_is_read_again_once(server: Any) -> None:
    url, seen = server
    kube = Kube(_Api(_Auth(url, ["stale", "fresh"])))  # type: ignore[arg-type]
    try:
        body = await kube.get("CreditModel", "risk", "x")
    finally:
        await kube.close()
    assert body is not None
    assert body["metadata"]["name"] == "x"
    path = "/apis/scoring.creditmodel.io/v1alpha1/namespaces/risk/creditmodels/x"
    assert seen == [("GET", path, "Bearer stale"), ("GET", path, "Bearer fresh")]


async def test_a_token_rejected_twice_is_the_callers_answer(server: Any) -> None:
    url, seen = server
    kube = Kube(_Api(_Auth(url, ["stale", "also-stale", "fresh"])))  # type: ignore[arg-type]
    try:
        status, data = await kube._call("GET", "CreditModel", "risk", "x")
    finally:
        await kube.close()
    assert (status, data["message"], len(seen)) == (401, "Unauthorized", 2)


async def test_a_patch_sends_json_with_its_content_type(server: Any) -> None:
    url, _ = server
    kube = Kube(_Api(_Auth(url, ["fresh"])))  # type: ignore[arg-type]
    try:
        data = await kube.patch_status("risk", "x", {"phase": "Ready"})
    finally:
        await kube.close()
    assert data["echo"] == {"status": {"phase": "Ready"}}


async def test_no_answer_is_a_connection_error() -> None:
    kube = Kube(_Api(_Auth("http://127.0.0.1:9", ["fresh"])))  # type: ignore[arg-type]
    try:
        with pytest.raises(ConnectionError, match=r"GET http://127\.0\.0\.1:9/"):
            await kube.get("CreditModel", "risk", "x")
    finally:
        await kube.close()
