"""Hostile input over REST against a real predictor process (issue 13, item 3): every case is
answered with a clear JSON 4xx naming what is wrong (never a 5xx, a dropped connection, a
traceback or a wrong score), and every client string that comes back is bounded."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.predictor.conftest import TrainedBundle
from tests.predictor.hostile import (
    BOUNDED,
    Reference,
    feature_of,
    http,
    infer,
    outputs,
    with_input,
)
from tests.predictor.server import PredictorServer, predictor_server

pytestmark = pytest.mark.integration

MEGABYTE = 1_000_000


@pytest.fixture(scope="module")
def server(
    champion: TrainedBundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PredictorServer]:
    with predictor_server(champion.uri, tmp_path_factory.mktemp("hostile-logs")) as running:
        yield running


@pytest.fixture(scope="module")
def reference(champion: TrainedBundle) -> Reference:
    return Reference(champion)


def request(champion: TrainedBundle, n: int = 1, **extra: Any) -> dict[str, Any]:
    return {"inputs": champion.v2_inputs(n), **extra}


def refused(server: PredictorServer, reason: str) -> float:
    return server.metric("creditmodel_request_errors_total", reason=reason)


# --- 1. the model repository extension is off; readiness tells the truth ---------------------


def test_repository_load_and_unload_are_refused_and_the_model_keeps_serving(
    server: PredictorServer, champion: TrainedBundle, reference: Reference
) -> None:
    for action in ("unload", "load"):
        answer = http(server.http_port, "POST", f"/v2/repository/models/demo/{action}")
        assert answer.status == 404, answer
        assert "model repository extension is disabled" in answer.error
    ready = http(server.http_port, "GET", "/v2/health/ready", json_body=False)
    assert (ready.status, ready.json()) == (200, {"ready": True})
    model_ready = http(server.http_port, "GET", "/v2/models/demo/ready", json_body=False)
    assert model_ready.status == 200
    assert model_ready.json()["ready"] is True
    reference.check(outputs(infer(server, request(champion, 3))), 3)
    metadata = http(server.http_port, "GET", "/v2", json_body=False).json()
    assert "model_repository_extension" not in metadata["extensions"]


# --- 2. request ids with control characters; bounded ids ----------------------------------------


@pytest.mark.parametrize(
    ("given", "header"),
    [
        ("a\r\nb", "a%0D%0Ab"),
        ("a\nx-injected: 1", "a%0Ax-injected: 1"),
        ("a\x00b", "a%00b"),
        ("bell\x07\x7f", "bell%07%7F"),
        ("é€", "%C3%A9%E2%82%AC"),
        ("plain-id_0123", "plain-id_0123"),
    ],
)
def test_an_id_with_control_characters_is_answered_with_a_safe_header(
    server: PredictorServer, champion: TrainedBundle, reference: Reference, given: str, header: str
) -> None:
    answer = infer(server, request(champion, 2, id=given))
    assert answer.status == 200, answer
    assert answer.json()["id"] == given  # the body keeps the id as given (JSON-escaped)
    assert answer.headers["x-request-id"] == header
    assert "x-injected" not in answer.headers
    reference.check(outputs(answer), 2)


def test_ids_longer_than_128_characters_are_refused_by_name(
    server: PredictorServer, champion: TrainedBundle
) -> None:
    assert infer(server, request(champion, id="i" * 128)).status == 200
    answer = infer(server, request(champion, id="i" * MEGABYTE))
    assert answer.status == 400
    assert answer.error == f"'id': {MEGABYTE} characters, longer than the limit of 128"
    assert len(answer.headers["x-request-id"]) <= 128
    answer = infer(server, request(champion), headers=[(b"x-request-id", b"h" * 129)])
    assert answer.status == 400
    assert answer.error.startswith("header 'x-request-id': 129 characters")
    good = infer(server, request(champion), headers=[(b"x-request-id", b"trace-1")])
    assert good.headers["x-request-id"] == "trace-1"


# --- 3. deep nesting -----------------------------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def test_json_nested_deeper_than_the_limit_is_a_400(server: PredictorServer) -> None:
    before = refused(server, "invalid_json")
    for body in (_nested(5_000), '{"inputs":' + _nested(100_000) + "}"):
        answer = infer(server, body.encode())
        assert answer.status == 400, answer
        assert "depth limit exceeded" in answer.error
    # NaN takes the lenient parser (to name the input); deep nesting must not crash it either.
    answer = infer(server, b'{"inputs":[NaN,' + _nested(5_000).encode() + b"]}")
    assert answer.status == 400
    assert refused(server, "invalid_json") == before + 3


@pytest.mark.parametrize(
    ("literal", "reason"), [("1" + "0" * 400, "out_of_range"), ("-1e400", "non_finite")]
)
def test_json_numbers_beyond_a_double_are_refused_by_name(
    server: PredictorServer, champion: TrainedBundle, literal: str, reason: str
) -> None:
    """Valid JSON that orjson cannot parse as it stands: the 400 names the input, not the JSON."""
    name = feature_of(champion, "FP32")
    document = request(champion, 2)
    for tensor in document["inputs"]:
        if tensor["name"] == name:
            tensor["data"][1] = "BIG"
    body = json.dumps(document).replace('"BIG"', literal).encode()
    before = refused(server, reason)
    answer = infer(server, body)
    assert answer.status == 400, answer
    assert answer.error.startswith(f"input {name!r}: row 1 is "), answer.error
    assert refused(server, reason) == before + 1


@pytest.mark.parametrize(
    "where",
    ["numeric data", "category data", "variant", "applicant_key", "name", "datatype", "shape"],
)
def test_deep_nesting_within_the_limit_is_refused_by_name(
    server: PredictorServer, champion: TrainedBundle, where: str
) -> None:
    """1,000 levels: orjson parses it, and repr() of it would exhaust the stack."""
    document = request(champion)
    kind = "BYTES" if where == "category data" else "FP32"
    target = next(i for i in document["inputs"] if i["datatype"] == kind)
    named = repr(target["name"])
    if where in ("variant", "applicant_key"):
        document["parameters"] = {where: "DEEP"}
        named = f"parameter {where!r}"
    else:
        target[where.split()[-1]] = "DEEP"
        named = "input <list>" if where == "name" else named
    body = json.dumps(document).replace('"DEEP"', _nested(1_000))
    answer = infer(server, body.encode())
    assert answer.status == 400, answer
    assert named in answer.error
    assert len(answer.body) < BOUNDED


# --- 4. booleans are not numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "shape"), [([2.0, True], [2]), ([[2], [False]], [2, 1]), ([True], [1])]
)
def test_booleans_in_a_numeric_input_are_wrong_datatype(
    server: PredictorServer, champion: TrainedBundle, data: list[Any], shape: list[int]
) -> None:
    """Mixed with numbers, true was scored as 1.0 (no INT64 input in these bundles: the same
    decode-time check for INT64 is a unit test)."""
    name = feature_of(champion, "FP32")
    before = refused(server, "wrong_datatype")
    rows = shape[0]
    document = with_input(request(champion, rows), name, data=data, shape=shape)
    answer = infer(server, document)
    assert answer.status == 400, answer
    assert answer.error.startswith(f"input {name!r}: row ")
    assert "is a boolean" in answer.error
    assert refused(server, "wrong_datatype") == before + 1


def test_booleans_in_the_json_of_a_binary_request_are_refused(
    server: PredictorServer, champion: TrainedBundle
) -> None:
    name = feature_of(champion, "FP32")
    header = json.dumps(with_input(request(champion, 2), name, data=[1.5, True])).encode()
    answer = infer(
        server, header, headers=[(b"inference-header-content-length", b"%d" % len(header))]
    )
    assert answer.status == 400
    assert f"input {name!r}: row 1 is a boolean" in answer.error


# --- 5. V1 is not spoken here ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/models/demo:predict"),
        ("POST", "/v1/models/demo:explain"),
        ("GET", "/v1/models/demo"),
        ("GET", "/v1/models"),
    ],
)
def test_v1_answers_a_clear_404(server: PredictorServer, method: str, path: str) -> None:
    body = json.dumps({"instances": [[1, 2, 3]]}).encode() if method == "POST" else b""
    answer = http(server.http_port, method, path, body)
    assert answer.status == 404, answer
    assert "V2 inference protocol only" in answer.error
    assert "/v2/models/{name}/infer" in answer.error


@pytest.mark.parametrize(
    ("method", "path", "error"),
    [
        ("GET", "/nope", "Not Found: GET '/nope'"),
        ("POST", "/v2/models/demo/nope", "Not Found: POST '/v2/models/demo/nope'"),
        (
            "GET",
            "/v2/models/demo/infer",
            "Method Not Allowed: GET '/v2/models/demo/infer' (allowed: POST)",
        ),
        (
            "DELETE",
            "/v2/models/demo",
            "Method Not Allowed: DELETE '/v2/models/demo' (allowed: GET)",
        ),
        ("GET", "/" + "p" * 500, f"Not Found: GET '/{'p' * 63}…(501 characters)'"),
    ],
)
def test_a_path_or_method_no_route_takes_gets_a_v2_error_object(
    server: PredictorServer, method: str, path: str, error: str
) -> None:
    """The V2 protocol's `{"error": ...}`, naming the method and the (bounded) path, where
    FastAPI answered `{"detail": "Not Found"}`; a 405 keeps its Allow header."""
    answer = http(server.http_port, method, path)
    assert answer.error == error
    assert answer.status == (405 if "Allowed" in error else 404)
    if answer.status == 405:
        assert answer.headers["allow"] == error.rsplit("allowed: ", 1)[1].rstrip(")")


# --- 6. client strings come back bounded --------------------------------------------------------


def test_megabyte_client_strings_come_back_bounded(
    server: PredictorServer, champion: TrainedBundle
) -> None:
    name = champion.bundle.schema.features[0].name
    cases = {
        "input name": with_input(request(champion), name, name="n" * MEGABYTE),
        "datatype": with_input(request(champion), name, datatype="D" * MEGABYTE),
        "shape": with_input(request(champion), name, shape=list(range(200_000))),
        "shape element": with_input(request(champion), name, shape=["s" * MEGABYTE]),
        "variant": request(champion, parameters={"variant": "v" * MEGABYTE}),
        "output": request(champion, outputs=[{"name": "o" * MEGABYTE}]),
        "category": with_input(
            request(champion), feature_of(champion, "BYTES"), data=["c" * MEGABYTE]
        ),
    }
    for case, document in cases.items():
        answer = infer(server, document)
        assert answer.status == 400, (case, answer.status)
        assert len(answer.body) < BOUNDED, (case, len(answer.body))
    path = "/v2/models/" + "m" * 50_000 + "/infer"
    answer = http(server.http_port, "POST", path, json.dumps(request(champion)).encode())
    assert answer.status == 404
    assert len(answer.body) < BOUNDED
    answer = http(server.http_port, "GET", "/v2/models/" + "m" * 50_000 + "/ready")
    assert answer.status == 404
    assert len(answer.body) < BOUNDED
    lines = server.process.log_path.read_text().splitlines()
    assert max(len(line) for line in lines) < 2 * BOUNDED
    assert "Traceback" not in "\n".join(lines)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-h%d" % i, b"v") for i in range(10_000)],
        [(b"x-big", b"a" * 20_000_000)],
        [(b"x-big", b"a" * 70_000)],
    ],
    ids=["10000-headers", "20MB-header", "70KB-header"],
)
def test_too_many_or_too_large_headers_get_431(
    server: PredictorServer, champion: TrainedBundle, headers: list[tuple[bytes, bytes]]
) -> None:
    answer = infer(server, request(champion), headers=headers)
    assert answer.status == 431, answer
    assert answer.error.startswith("request head refused")
    assert http(server.http_port, "GET", "/v2/health/ready", json_body=False).status == 200


def test_headers_within_the_limits_are_served(
    server: PredictorServer, champion: TrainedBundle, reference: Reference
) -> None:
    headers = [(b"x-h%d" % i, b"v" * 500) for i in range(90)]
    reference.check(outputs(infer(server, request(champion, 2), headers=headers)), 2)


def _silent_then_answered(port: int, sent: bytes) -> tuple[bytes, float]:
    """Open a connection, send `sent` (a request cut short, or nothing), then wait: the answer
    the server gives before it closes, and how long it took."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        started = time.monotonic()
        sock.sendall(sent)
        answer = bytearray()
        while chunk := sock.recv(65536):
            answer += chunk
        return bytes(answer), time.monotonic() - started


def test_requests_that_do_not_arrive_whole_in_time_get_408_from_every_worker(
    champion: TrainedBundle, tmp_path: Path
) -> None:
    """Slowloris: connections that send nothing, half a head or half a body held a slot for as
    long as the client liked. Eight at once, so that both workers (spawned, each with its own
    copy of the setting) get some; then a whole request is served as before."""
    document = json.dumps(request(champion)).encode()
    whole = (
        b"POST /v2/models/demo/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(document), document)
    )
    cut_short = [b"", whole[:30], whole[: whole.index(b"\r\n\r\n") + 10], whole[:-5]] * 2
    extra = ["--workers", "2", "--request_read_timeout_seconds", "1.5"]
    with predictor_server(champion.uri, tmp_path, extra=extra) as slow:
        with ThreadPoolExecutor(len(cut_short)) as pool:
            answers = list(
                pool.map(lambda sent: _silent_then_answered(slow.http_port, sent), cut_short)
            )
        for (answer, took), sent in zip(answers, cut_short, strict=True):
            assert answer.startswith(b"HTTP/1.1 408 "), (sent[:40], answer[:200])
            assert b"request read timed out: the request did not arrive whole within 1.5" in answer
            assert 1.0 < took < 10.0, took
        assert outputs(infer(slow, request(champion, 2)))


# --- 7. JSON is UTF-8; binary tensors end where the body does -------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
def test_json_that_is_not_utf8_is_refused(
    server: PredictorServer, champion: TrainedBundle, encoding: str
) -> None:
    answer = infer(server, json.dumps(request(champion)).encode(encoding))
    assert answer.status == 400, answer
    assert "JSON must be UTF-8" in answer.error


def _binary(
    champion: TrainedBundle, reference_name: str, size_change: int = 0, keep_data: bool = False
) -> tuple[bytes, int]:
    """A binary-extension request: input `reference_name` as raw FP32 bytes (and as JSON
    `data` too with `keep_data`)."""
    document = request(champion, 2)
    raw = b""
    for item in document["inputs"]:
        if item["name"] == reference_name:
            raw = struct.pack("<2f", *(item["data"] if keep_data else item.pop("data")))
            item["parameters"] = {"binary_data_size": len(raw) + size_change}
    header = json.dumps(document).encode()
    return header + raw, len(header)


def test_binary_tensors_are_served_and_trailing_bytes_refused(
    server: PredictorServer, champion: TrainedBundle, reference: Reference
) -> None:
    name = feature_of(champion, "FP32")
    body, length = _binary(champion, name)
    header = [(b"inference-header-content-length", b"%d" % length)]
    reference.check(outputs(infer(server, body, headers=header)), 2)
    for extra in (b"\x00", b"trailing garbage" * 100):
        answer = infer(server, body + extra, headers=header)
        assert answer.status == 400, answer
        assert f"{len(extra)} bytes after the last binary tensor" in answer.error
    short, short_length = _binary(champion, name, size_change=4)
    answer = infer(
        server, short, headers=[(b"inference-header-content-length", b"%d" % short_length)]
    )
    assert answer.status == 400
    assert f"input {name!r}: binary_data_size 12 runs past the end" in answer.error
    for length_header in (b"0", b"99999999999", b"12a", b"-5"):
        answer = infer(server, body, headers=[(b"inference-header-content-length", length_header)])
        assert answer.status == 400, (length_header, answer)
        assert "header 'inference-header-content-length'" in answer.error


def test_an_input_with_both_data_and_binary_bytes_is_refused_by_name(
    server: PredictorServer, champion: TrainedBundle
) -> None:
    """It was read from `data` and its bytes left in the body: the refusal blamed the bytes
    after the last tensor, or the next binary input was read from this one's bytes."""
    name = feature_of(champion, "FP32")
    body, length = _binary(champion, name, keep_data=True)
    before = refused(server, "invalid_request")
    answer = infer(server, body, headers=[(b"inference-header-content-length", b"%d" % length)])
    assert answer.status == 400, answer
    assert answer.error == (
        f"input {name!r}: both 'data' and a 'binary_data_size' parameter; give its values in"
        " one of them"
    )
    assert refused(server, "invalid_request") == before + 1
