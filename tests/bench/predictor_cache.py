"""The predictor behind a Redis-backed response cache (the seed design had one), to decide with
numbers whether caching pays for a model that runs in microseconds. Bench-only: an ASGI
middleware keyed by a hash of path and body, wrapped around KServe's app before it starts.

    python -m tests.bench.predictor_cache --redis_url redis://127.0.0.1:6379 [predictor flags]"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

from tests.bench.predictor_refs import read_body

_TTL_SECONDS = 300


class RedisResponseCache:
    def __init__(self, app: Any, url: str) -> None:
        import redis.asyncio

        self.app = app
        self.redis = redis.asyncio.from_url(url)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].endswith("/infer")
        ):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        key = (
            b"creditmodel:"
            + hashlib.blake2b(scope["path"].encode() + body, digest_size=16).digest()
        )
        cached = await self.redis.get(key)
        if cached is not None:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"x-cache", b"hit")]})  # fmt: skip
            await send({"type": "http.response.body", "body": cached})
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, replay, capture)
        if status == 200:
            await self.redis.set(key, b"".join(chunks), ex=_TTL_SECONDS)


def main() -> None:
    argv = sys.argv[1:]
    index = argv.index("--redis_url")
    url = argv[index + 1]
    del argv[index : index + 2]
    from creditmodel.predictor import __main__ as predictor

    predictor.prepare_metrics_dir()  # before KServe imports prometheus_client
    from kserve.model_server import app

    app.add_middleware(RedisResponseCache, url=url)
    predictor.main(argv)


if __name__ == "__main__":
    main()
