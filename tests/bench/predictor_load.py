"""Load generators of the predictor benchmark: wrk (./bin/wrk, one thread, Lua for the POST body
and a JSON summary) for REST, and an asyncio gRPC loop on KServe's generated V2 stubs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.process import tool

_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
local unique = os.getenv("WRK_UNIQUE") == "1"
local counter = 0
if unique then
  request = function()
    counter = counter + 1
    local body = string.gsub(wrk.body, '"id":"[^"]*"', '"id":"r' .. counter .. '-' .. math.random(1e9) .. '"', 1)
    return wrk.format(nil, nil, nil, body)
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"socket_errors":%d,"non_2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int

    def rows(self, case: str, **extra: Any) -> list[dict[str, Any]]:
        return [
            {
                "case": case,
                "metric": "throughput",
                "value": self.requests_per_second,
                "unit": "req/s",
                **extra,
            },
            {"case": case, "metric": "p99 latency", "value": self.p99_ms, "unit": "ms"},
        ]


def wrk(
    url: str,
    body: bytes,
    work_dir: Path,
    *,
    seconds: float,
    connections: int = 16,
    unique_ids: bool = False,
) -> LoadResult:
    work_dir.mkdir(parents=True, exist_ok=True)
    script = work_dir / "post.lua"
    script.write_text(_LUA)
    body_path = work_dir / f"body-{abs(hash(body))}.json"
    body_path.write_bytes(body)
    argv = [
        str(tool("wrk")), "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency",
        "-s", str(script), url,
    ]  # fmt: skip
    env = {"WRK_BODY": str(body_path), "WRK_UNIQUE": "1" if unique_ids else "0"}
    completed = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, check=True,
        env={**os.environ, **env},
    )  # fmt: skip
    line = next(ln for ln in completed.stdout.splitlines() if ln.startswith("WRK_JSON "))
    data = json.loads(line.removeprefix("WRK_JSON "))
    return LoadResult(
        requests_per_second=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["socket_errors"] + data["non_2xx"],
    )


def grpc_load(
    target: str, document: dict[str, Any], model: str, *, seconds: float, concurrency: int = 16
) -> LoadResult:
    """Closed loop: `concurrency` tasks each sending the next request when the last returns."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    inputs = []
    for item in document["inputs"]:
        contents = (
            pb.InferTensorContents(bytes_contents=[v.encode() for v in item["data"]])
            if item["datatype"] == "BYTES"
            else pb.InferTensorContents(fp32_contents=item["data"])
        )
        inputs.append(pb.ModelInferRequest.InferInputTensor(
            name=item["name"], datatype=item["datatype"], shape=item["shape"], contents=contents))  # fmt: skip
    request = pb.ModelInferRequest(model_name=model, inputs=inputs)

    async def run() -> LoadResult:
        latencies: list[float] = []
        errors = 0
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            await stub.ModelInfer(request)
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    try:
                        await stub.ModelInfer(request)
                    except grpc.aio.AioRpcError:
                        errors += 1
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        latencies.sort()
        return LoadResult(
            requests_per_second=len(latencies) / elapsed,
            p50_ms=latencies[len(latencies) // 2] * 1000,
            p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
            errors=errors,
        )

    return asyncio.run(run())
