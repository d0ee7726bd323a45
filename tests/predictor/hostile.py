"""Helpers for the hostile-input tests: a raw HTTP/1.1 client that sends what no well-behaved
client would (control characters, 10,000 headers, a 20 MB header) and tells a dropped
connection from an answer; a strict predictor start; reference answers computed in-process."""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from creditmodel.predictor.engine import LoadedBundle
from creditmodel.predictor.validation import Tensor
from tests.predictor.conftest import TrainedBundle
from tests.predictor.server import SCRIPT, PredictorServer
from tests.support.process import ManagedProcess, free_port

# Everything a refusal may say back: a bounded message, never the client's megabyte.
BOUNDED = 2048
_CONTENTS = {"FP32": "fp32_contents", "INT64": "int64_contents", "BYTES": "bytes_contents"}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names, values as latin-1 text
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type") == "application/json", (self.status, self.body)
        return json.loads(self.body)

    @property
    def error(self) -> str:
        """The JSON error message of a refusal."""
        document = self.json()
        assert set(document) == {"error"}, document
        return str(document["error"])


class DroppedError(AssertionError):
    """The server closed the connection without an HTTP response."""


def _read_answer(sock: socket.socket) -> Answer:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise DroppedError(f"connection closed after {len(buffer)} bytes: {buffer[:200]!r}")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise DroppedError(f"connection closed inside a {length}-byte body")
        body += chunk
    return Answer(status, headers, body[:length])


def http(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    json_body: bool = True,
    timeout: float = 30.0,
) -> Answer:
    """One request on a fresh connection, sent from a thread while the answer is read (a server
    may answer and close before a huge request is all sent)."""
    head = [f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n".encode()]
    if json_body:
        head.append(b"content-type: application/json\r\n")
    head.append(b"content-length: %d\r\n" % len(body))
    head.extend(name + b": " + value + b"\r\n" for name, value in headers)
    request = b"".join([*head, b"\r\n", body])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:

        def send() -> None:
            with contextlib.suppress(OSError):
                sock.sendall(request)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            return _read_answer(sock)
        except ConnectionResetError as error:
            raise DroppedError(f"connection reset: {error}") from None
        finally:
            sender.join(timeout)


def infer(server: PredictorServer, document: Any, **kwargs: Any) -> Answer:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return http(server.http_port, "POST", f"/v2/models/{server.model_name}/infer", body, **kwargs)


def outputs(answer: Answer) -> dict[str, Any]:
    assert answer.status == 200, (answer.status, answer.body[:500])
    return {o["name"]: o["data"] for o in answer.json()["outputs"]}


def with_input(document: dict[str, Any], input_name: str, **changes: Any) -> dict[str, Any]:
    """A copy of a V2 request with input `input_name` changed."""
    changed = copy.deepcopy(document)
    for item in changed["inputs"]:
        if item["name"] == input_name:
            item.update(changes)
    return changed


def feature_of(champion: TrainedBundle, datatype: str) -> str:
    return next(f.name for f in champion.bundle.schema.features if f.datatype == datatype)


def infer_request(champion: TrainedBundle, n: int, start: int = 0, **fields: Any) -> Any:
    """A typed-contents ModelInferRequest for applicants start .. start + n."""
    request = pb.ModelInferRequest(model_name="demo", id="req-1")
    for spec in champion.v2_inputs(n, start):
        tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=[n])
        data = spec["data"]
        if spec["datatype"] == "BYTES":
            data = [str(v).encode() for v in data]
        getattr(tensor.contents, _CONTENTS[spec["datatype"]]).extend(data)
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def grpc_outputs(response: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for output in response.outputs:
        contents = output.contents
        if output.datatype == "BYTES":
            result[output.name] = [v.decode() for v in contents.bytes_contents]
        elif output.datatype == "FP32":
            result[output.name] = np.asarray(contents.fp32_contents)
        else:
            result[output.name] = list(contents.int_contents)
    return result


class Reference:
    """The bundle scored in this process: what every valid answer must equal."""

    def __init__(self, champion: TrainedBundle) -> None:
        self.champion = champion
        self.loaded = LoadedBundle(champion.bundle, max_rows=10_000)

    def answer(self, n: int, start: int = 0) -> dict[str, Any]:
        tensors = [
            Tensor(i["name"], i["datatype"], i["shape"], i["data"])
            for i in self.champion.v2_inputs(n, start)
        ]
        scored = self.loaded.variants["int8"].score(self.loaded.validator.validate(tensors))
        return {
            "probability": scored.probability.reshape(-1),
            "score": scored.score.reshape(-1).tolist(),
            "reason_codes": [str(r) for r in np.asarray(scored.reasons).reshape(-1)],
        }

    def check(self, got: dict[str, Any], n: int, start: int = 0) -> None:
        want = self.answer(n, start)
        np.testing.assert_allclose(got["probability"], want["probability"], rtol=1e-6, atol=1e-7)
        assert got["score"] == want["score"]
        assert got["reason_codes"] == want["reason_codes"]


def _ready(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(json.loads(response.read()).get("ready"))


@contextlib.contextmanager
def strict_server(
    model_dir: str,
    log_dir: Path,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    name: str = "predictor-hostile",
) -> Iterator[PredictorServer]:
    """A predictor that must start: an early exit (an unknown flag, say) fails the test, where
    tests.predictor.server skips it as an unavailable component."""
    http_port, grpc_port = free_port(), free_port()
    argv = [
        SCRIPT, "--model_name", "demo", "--model_dir", model_dir,
        "--http_port", str(http_port), "--grpc_port", str(grpc_port), *extra,
    ]  # fmt: skip
    process = ManagedProcess(name, argv, log_dir, env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.proc.poll() is not None:
                pytest.fail(
                    f"predictor exited with {process.proc.returncode}:\n{process.log_tail()}"
                )
            with contextlib.suppress(OSError, ValueError):
                if _ready(http_port):
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"predictor not ready after 60 s:\n{process.log_tail()}")
            time.sleep(0.1)
        yield PredictorServer(process, "demo", http_port, grpc_port)
    finally:
        process.stop()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")
