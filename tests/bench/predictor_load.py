"""Load generators of the predictor benchmark, both closed-loop C programs so that REST and gRPC
are driven alike: wrk (./bin/wrk, one thread, Lua for the POST body and a JSON summary) for REST
and h2load (nghttp2, one thread, one stream per connection, a per-request log for percentiles)
for unary gRPC, which is an HTTP/2 POST of a length-prefixed protobuf message. Either can be
pinned to CPUs with taskset, away from the server under test."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Sequence
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
    # CPU (user + system) the server spent per request during the run, its worker processes
    # included: steadier than throughput on a shared machine, where other load takes CPU time
    # from the server, not instructions.
    server_cpu_us: float | None = None
    # CPU the load generator itself spent per request: on two CPUs it shares them with a server
    # that uses both (the two-worker case), so it bounds what that server can reach.
    client_cpu_us: float | None = None
    # Shares of the whole machine's CPU time during the run (/proc/stat): left idle, and taken
    # by the hypervisor for other guests (steal). A server that keeps every CPU busy is bounded
    # by what the host leaves it, not by its design.
    idle_percent: float | None = None
    steal_percent: float | None = None

    def rows(self, case: str, **extra: Any) -> list[dict[str, Any]]:
        rows = [
            {
                "case": case,
                "metric": "throughput",
                "value": self.requests_per_second,
                "unit": "req/s",
                **extra,
            },
            {"case": case, "metric": "p99 latency", "value": self.p99_ms, "unit": "ms"},
        ]
        if self.server_cpu_us is not None:
            rows.append(
                {
                    "case": case,
                    "metric": "server CPU per request",
                    "value": self.server_cpu_us,
                    "unit": "us",
                }
            )
        return rows


def machine_cpu_ticks() -> tuple[int, int, int]:
    """All CPUs' ticks so far from /proc/stat: total, idle (with iowait), stolen."""
    with open("/proc/stat") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:]]
    return sum(ticks[:8]), ticks[3] + ticks[4], ticks[7]


def machine_shares(before: tuple[int, int, int], after: tuple[int, int, int]) -> dict[str, float]:
    """Percent of the CPU time between two `machine_cpu_ticks` left idle and stolen."""
    total = (after[0] - before[0]) or 1
    return {"idle_percent": 100 * (after[1] - before[1]) / total,
            "steal_percent": 100 * (after[2] - before[2]) / total}  # fmt: skip


def server_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` and its live children."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """`argv` run on `cpus` (taskset -c list) when given and taskset exists, else as is."""
    taskset = shutil.which("taskset")
    if cpus is None or taskset is None:
        return [str(a) for a in argv]
    return [taskset, "-c", cpus, *(str(a) for a in argv)]


def wrk(
    url: str,
    body: bytes,
    work_dir: Path,
    *,
    seconds: float,
    connections: int = 16,
    unique_ids: bool = False,
    cpus: str | None = None,
) -> LoadResult:
    work_dir.mkdir(parents=True, exist_ok=True)
    script = work_dir / "post.lua"
    script.write_text(_LUA)
    body_path = work_dir / f"body-{abs(hash(body))}.json"
    body_path.write_bytes(body)
    argv = pinned([
        str(tool("wrk")), "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency",
        "-s", str(script), url,
    ], cpus)  # fmt: skip
    env = {"WRK_BODY": str(body_path), "WRK_UNIQUE": "1" if unique_ids else "0"}
    client = _children_cpu_seconds()
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
        client_cpu_us=_per_request(_children_cpu_seconds() - client, data["requests"]),
    )


def _children_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's finished children: around one load
    generator run, that run's own (the servers are still running, so not counted)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _per_request(seconds: float, requests: int) -> float | None:
    return seconds / requests * 1e6 if requests else None


def grpc_request(document: dict[str, Any], model: str) -> bytes:
    """A V2 ModelInferRequest for `document` (typed contents, as KServe's and Triton's clients
    send them) framed as one gRPC message: flag 0 (uncompressed), big-endian length, payload."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    inputs = []
    for item in document["inputs"]:
        contents = (
            pb.InferTensorContents(bytes_contents=[v.encode() for v in item["data"]])
            if item["datatype"] == "BYTES"
            else pb.InferTensorContents(fp32_contents=item["data"])
        )
        inputs.append(pb.ModelInferRequest.InferInputTensor(
            name=item["name"], datatype=item["datatype"], shape=item["shape"], contents=contents))  # fmt: skip
    payload: bytes = pb.ModelInferRequest(model_name=model, inputs=inputs).SerializeToString()
    return struct.pack(">BI", 0, len(payload)) + payload


def check_grpc(target: str, document: dict[str, Any], model: str) -> None:
    """One real ModelInfer through grpcio: h2load counts a call answered with an error status
    (in the trailers of an HTTP 200) as a success, so the request must be known good first."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    framed = grpc_request(document, model)
    request = pb.ModelInferRequest.FromString(framed[5:])
    with grpc.insecure_channel(target) as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    if not response.outputs:
        raise RuntimeError(f"gRPC ModelInfer at {target} answered without outputs")


def h2load_grpc(
    target: str,
    document: dict[str, Any],
    model: str,
    work_dir: Path,
    *,
    seconds: float,
    connections: int = 16,
    cpus: str | None = None,
) -> LoadResult:
    """Unary ModelInfer under h2load: `connections` HTTP/2 connections, one call in flight on
    each (the closed loop wrk runs for REST)."""
    check_grpc(target, document, model)
    work_dir.mkdir(parents=True, exist_ok=True)
    body_path = work_dir / "grpc-request.bin"
    body_path.write_bytes(grpc_request(document, model))
    log_path = work_dir / "h2load.log"
    log_path.unlink(missing_ok=True)  # h2load appends to its log
    client = _children_cpu_seconds()
    argv = pinned([
        str(tool("h2load")), "-t1", f"-c{connections}", "-m1", f"-D{seconds:.0f}",
        "-d", str(body_path), f"--log-file={log_path}",
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        f"http://{target}/inference.GRPCInferenceService/ModelInfer",
    ], cpus)  # fmt: skip
    completed = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"h2load failed: {completed.stdout[-400:]} {completed.stderr[-400:]}")
    latencies, statuses = [], []
    for line in log_path.read_text().splitlines():  # start (us since epoch), status, duration us
        _start, status, duration = line.split("\t")
        statuses.append(int(status))
        latencies.append(int(duration))
    if not latencies:
        raise RuntimeError(f"h2load logged no requests: {completed.stdout[-400:]}")
    latencies.sort()
    return LoadResult(
        requests_per_second=len(latencies) / seconds,
        p50_ms=latencies[len(latencies) // 2] / 1000,
        p99_ms=latencies[int(len(latencies) * 0.99)] / 1000,
        errors=sum(status != 200 for status in statuses),
        client_cpu_us=_per_request(_children_cpu_seconds() - client, len(latencies)),
    )
