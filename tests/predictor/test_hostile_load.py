"""Valid and hostile requests together, REST and gRPC, for a while (issue 13, item 3): every
valid answer equals the in-process reference, nothing answers 5xx or drops a connection, every
hostile request gets its 4xx, and the server's resident memory grows by at most 10 % after the
warm-up. 20 s by default; CREDITMODEL_HOSTILE_LOAD_SECONDS=60 for the long run."""

from __future__ import annotations

import json
import os
import random
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from tests.predictor.conftest import TrainedBundle
from tests.predictor.hostile import (
    Reference,
    feature_of,
    grpc_outputs,
    http,
    infer,
    infer_request,
    outputs,
    rss_bytes,
    strict_server,
    with_input,
)
from tests.predictor.server import PredictorServer

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("CREDITMODEL_HOSTILE_LOAD_SECONDS", "20"))
ROWS = 64  # distinct applicants the valid requests draw from
REST_THREADS, GRPC_THREADS = 4, 2
MAX_RSS_GROWTH = 0.10

Case = Callable[[random.Random], None]


@pytest.fixture(scope="module")
def server(
    champion: TrainedBundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PredictorServer]:
    with strict_server(champion.uri, tmp_path_factory.mktemp("hostile-load")) as running:
        yield running


class Load:
    """The cases, each raising AssertionError when its answer is wrong."""

    def __init__(self, server: PredictorServer, champion: TrainedBundle) -> None:
        self.server, self.champion = server, champion
        reference = Reference(champion)
        self.want = [reference.answer(1, start) for start in range(ROWS)]
        self.batch_want = reference.answer(8, 0)
        self.channel = grpc.insecure_channel(server.grpc_target)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.raw_infer = self.channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        number = feature_of(champion, "FP32")
        base = {"inputs": champion.v2_inputs(2)}
        binary = with_input(base, number, parameters={"binary_data_size": 8})
        values = next(i["data"] for i in base["inputs"] if i["name"] == number)
        for item in binary["inputs"]:
            if item["name"] == number:
                del item["data"]
        header = json.dumps(binary).encode()
        trailing = header + struct.pack("<2f", *values) + b"\x00" * 9
        self.hostile: dict[str, tuple[Callable[[], Any], int]] = {
            "bad json": (lambda: infer(server, b'{"inputs": ['), 400),
            "deep json": (lambda: infer(server, b"[" * 3000 + b"]" * 3000), 400),
            "boolean": (lambda: infer(server, with_input(base, number, data=[1.0, True])), 400),
            "long id": (lambda: infer(server, {**base, "id": "i" * 5000}), 400),
            "utf-16": (lambda: infer(server, json.dumps(base).encode("utf-16")), 400),
            "v1": (lambda: http(server.http_port, "POST", "/v1/models/demo:predict", b"{}"), 404),
            "unload": (
                lambda: http(server.http_port, "POST", "/v2/repository/models/demo/unload"),
                404,
            ),
            "trailing": (
                lambda: infer(
                    server,
                    trailing,
                    headers=[(b"inference-header-content-length", b"%d" % len(header))],
                ),
                400,
            ),
            "headers": (
                lambda: infer(server, base, headers=[(b"x-%d" % i, b"v") for i in range(150)]),
                431,
            ),
            "big header": (lambda: infer(server, base, headers=[(b"x-big", b"a" * 300_000)]), 431),
            "big name": (lambda: infer(server, with_input(base, number, name="n" * 200_000)), 400),
            "unknown model": (
                lambda: http(server.http_port, "POST", "/v2/models/nope/infer", b"{}"),
                404,
            ),
        }

    def rest_valid(self, rng: random.Random) -> None:
        if rng.random() < 0.2:
            document = {"inputs": self.champion.v2_inputs(8), "id": "batch\r\n"}
            got, want = outputs(infer(self.server, document)), self.batch_want
        else:
            start = rng.randrange(ROWS)
            got = outputs(infer(self.server, {"inputs": self.champion.v2_inputs(1, start)}))
            want = self.want[start]
        assert got["score"] == want["score"], (got, want)
        assert got["reason_codes"] == want["reason_codes"]
        assert abs(got["probability"][0] - float(want["probability"][0])) < 1e-6

    def rest_hostile(self, rng: random.Random) -> str:
        name = rng.choice(list(self.hostile))
        send, status = self.hostile[name]
        answer = send()
        assert answer.status == status, (name, answer.status, answer.body[:300])
        return name

    def grpc_valid(self, rng: random.Random) -> None:
        start = rng.randrange(ROWS)
        got = grpc_outputs(self.stub.ModelInfer(infer_request(self.champion, 1, start), timeout=30))
        want = self.want[start]
        assert list(got["score"]) == want["score"]
        assert got["reason_codes"] == want["reason_codes"]

    def grpc_hostile(self, rng: random.Random) -> str:
        choice = rng.randrange(4)
        expected = [
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.UNIMPLEMENTED,
            grpc.StatusCode.INVALID_ARGUMENT,
        ][choice]
        code: grpc.StatusCode | None = None
        try:
            if choice == 0:
                self.raw_infer(b"\xff\xfe\x00garbage" + struct.pack("<I", rng.randrange(1 << 30)))
            elif choice == 1:
                self.stub.ModelInfer(infer_request(self.champion, 1, model_name="m" * 100_000))
            elif choice == 2:
                self.stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="demo"))
            else:
                request = infer_request(self.champion, 1)
                del request.inputs[0]
                self.stub.ModelInfer(request)
        except grpc.RpcError as error:
            code = error.code()
        assert code == expected, (choice, code)
        return f"grpc {expected.name}"


def _worker(
    load: Load, valid: Case, hostile: Callable[[random.Random], str], seed: int, until: float,
    counts: Counter[str], failures: list[str], lock: threading.Lock,
) -> None:  # fmt: skip
    rng = random.Random(seed)
    while time.monotonic() < until:
        try:
            if rng.random() < 0.5:
                valid(rng)
                name = "valid"
            else:
                name = hostile(rng)
        except Exception as error:  # every failure is reported, not just the first
            with lock:
                failures.append(f"{type(error).__name__}: {str(error)[:300]}")
            continue
        with lock:
            counts[name] += 1


def test_mixed_valid_and_hostile_load(server: PredictorServer, champion: TrainedBundle) -> None:
    load = Load(server, champion)
    counts: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    started = time.monotonic()
    until = started + SECONDS
    workers = [
        threading.Thread(
            target=_worker,
            args=(load, load.rest_valid, load.rest_hostile, i, until, counts, failures, lock),
        )
        for i in range(REST_THREADS)
    ] + [
        threading.Thread(
            target=_worker,
            args=(load, load.grpc_valid, load.grpc_hostile, 100 + i, until, counts, failures, lock),
        )
        for i in range(GRPC_THREADS)
    ]
    for worker in workers:
        worker.start()
    time.sleep(SECONDS * 0.25)  # warm-up: allocator arenas, onnxruntime, caches
    warm = rss_bytes(server.process.proc.pid)
    for worker in workers:
        worker.join(SECONDS + 60)
    final = rss_bytes(server.process.proc.pid)
    load.channel.close()
    assert not failures, f"{len(failures)} failures, first: {failures[:5]}"
    assert counts["valid"] > 50, counts
    assert len(counts) >= 10, counts  # most hostile cases came up
    assert server.metric("creditmodel_request_errors_total") > 0
    assert final <= warm * (1 + MAX_RSS_GROWTH), (
        f"RSS grew from {warm / 2**20:.1f} MiB to {final / 2**20:.1f} MiB ({counts})"
    )
    print(f"\n{sum(counts.values())} requests in {SECONDS:.0f} s; RSS {warm / 2**20:.1f} ->"
          f" {final / 2**20:.1f} MiB; {dict(counts)}")  # fmt: skip
