"""The pure parts of the hostile-input fixes (issue 13, item 3): bounds on echoed client strings,
UTF-8-only JSON, booleans, the binary extension's framing, honest readiness, `--host`."""

from __future__ import annotations

import gzip
import json
import os
import struct
import warnings
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from kserve.errors import (
    ModelNotReady,
    ServerNotReady,
    model_not_ready_handler,
    server_not_ready_handler,
)
from kserve.model_repository import ModelRepository
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.v2_endpoints import register_v2_endpoints
from pydantic import ValidationError

from creditmodel.core.bundle import load_bundle
from creditmodel.core.schema import Feature, Schema
from creditmodel.predictor import __main__ as cli
from creditmodel.predictor import rest
from creditmodel.predictor.accept_balance import WorkerLoads
from creditmodel.predictor.bounds import (
    MAX_ID_CHARS,
    checked_id,
    header_value,
    nested_input,
    refuse_booleans,
    screen,
    show,
)
from creditmodel.predictor.codec import _tensors as codec_tensors
from creditmodel.predictor.codec import decode_binary_request, decode_request
from creditmodel.predictor.errors import MAX_MESSAGE_CHARS, RequestError, clip
from creditmodel.predictor.infer_types import from_raw
from creditmodel.predictor.model import CreditScoringModel
from creditmodel.predictor.serving import BoundedRESTServer, HonestDataPlane, grpc_address
from creditmodel.predictor.settings import PredictorSettings
from creditmodel.predictor.validation import Tensor, Validator
from tests.predictor.conftest import TrainedBundle

pytestmark = pytest.mark.unit

REFERENCE = "models/german-credit"


def refusal(call: Any, *args: Any) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call(*args)
    return caught.value


# --- bounds ----------------------------------------------------------------------------------------


def test_clip_and_show_bound_every_kind_of_value() -> None:
    assert clip("short") == "short"
    assert clip("x" * 1000) == "x" * 64 + "…(1000 characters)"
    assert show("x" * 10**6) == repr("x" * 64 + "…(1000000 characters)")
    deep: list[Any] = []
    for _ in range(100_000):  # repr() of this overflows the stack
        deep = [deep]
    assert show(deep) == "<list>"
    assert show({"a": 1}) == "<dict>"
    assert show(2**200) == "<an integer of 201 bits>"
    assert show(b"\x00" * 100).endswith("…")
    assert show(1.5) == "1.5"
    assert show(None) == "None"


def test_request_ids_are_bounded_and_headers_safe() -> None:
    assert checked_id(None, "'id'") is None
    assert checked_id("", "'id'") is None
    assert checked_id("i" * MAX_ID_CHARS, "'id'") == "i" * MAX_ID_CHARS
    error = refusal(checked_id, "i" * (MAX_ID_CHARS + 1), "'id'")
    assert (error.reason, error.message) == (
        "invalid_request",
        "'id': 129 characters, longer than the limit of 128",
    )
    assert header_value("plain-id 1") == b"plain-id 1"
    assert header_value("a\r\nb\x00\x7f") == b"a%0D%0Ab%00%7F"
    assert header_value("é\ud800") == b"%C3%A9%ED%A0%80"  # a lone surrogate from lenient JSON


def test_refusal_messages_are_bounded_whatever_built_them() -> None:
    error = RequestError("unknown_input", "input '" + "n" * 10**6 + "': not an input")
    assert len(error.message) < MAX_MESSAGE_CHARS + 64
    assert error.message.startswith("input 'nnnn")
    assert error.message.endswith("': not an input")
    assert str(error) == error.message


def test_screened_tensors_are_refused_the_same_way_and_bounded() -> None:
    schema = load_bundle(REFERENCE).schema
    validator = Validator(schema, 100)
    feature = schema.features[0]
    ok = [Tensor(f.name, f.datatype, [1], ["x"]) for f in schema.features]
    assert screen(ok, schema) is ok
    for hostile, reason in (
        (Tensor("n" * 10**6, "BYTES", [1], ["x"]), "unknown_input"),
        (Tensor(feature.name, "D" * 10**6, [1], ["x"]), "wrong_datatype"),
        (Tensor(feature.name, feature.datatype, list(range(10**5)), ["x"]), "wrong_shape"),
        (Tensor(feature.name, feature.datatype, ["s" * 10**6], ["x"]), "wrong_shape"),
        (Tensor(feature.name, feature.datatype, [2**100], ["x"]), "length_mismatch"),
        (Tensor(["not", "a", "name"], "BYTES", [1], ["x"]), "unknown_input"),
    ):
        tensors = [hostile, *ok[1:]]
        error = refusal(validator.validate, screen(tensors, schema))
        assert error.reason == reason, error.message
        assert len(error.message) < 400, error.message


def test_nested_input_finds_the_deep_one_without_recursion() -> None:
    deep: list[Any] = [1.0]
    for _ in range(100_000):
        deep = [deep]
    tensors = [Tensor("a", "FP32", [1], [[1.0]]), Tensor("b", "BYTES", [1], deep)]
    found = nested_input(tensors)
    assert found is not None
    assert found.name == "b"
    assert nested_input(tensors[:1]) is None


@pytest.mark.parametrize("datatype", ["FP32", "INT64", "FP64", "INT32"])
@pytest.mark.parametrize(
    ("data", "row"),
    [([1, True], 1), ([False], 0), ([[1], [2], [True]], 2), ([[[[1]]], [[[False]]]], 1)],
)
def test_booleans_are_not_numbers(datatype: str, data: list[Any], row: int) -> None:
    error = refusal(refuse_booleans, [Tensor("x", datatype, [len(data)], data)])
    assert error.reason == "wrong_datatype"
    assert error.message == (
        f"input 'x': row {row} is a boolean; values of a {datatype!r} input must be numbers"
    )


def test_booleans_stay_for_the_validator_where_they_are_not_numbers_claimed() -> None:
    refuse_booleans([Tensor("x", "BYTES", [1], [True]), Tensor("y", "BOOL", [1], [True])])
    refuse_booleans([Tensor("z", "FP32", [2], [1, 2.5])])


# --- JSON ------------------------------------------------------------------------------------------


def _document(**extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "INT64", "shape": [2], "data": [1, 2]}], **extra}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_json_is_utf8_only(encoding: str) -> None:
    error = refusal(decode_request, json.dumps(_document()).encode(encoding))
    assert error.reason == "invalid_json"
    assert "JSON must be UTF-8" in error.message


def test_a_utf8_byte_order_mark_is_refused() -> None:
    body = b"\xef\xbb\xbf" + json.dumps(_document()).encode()
    assert "without one" in refusal(decode_request, body).message


def test_gzip_without_its_header_is_named_as_gzip() -> None:
    """gzip's magic bytes hold a NUL, which read as UTF-16 until named for what they are."""
    error = refusal(decode_request, gzip.compress(json.dumps(_document()).encode()))
    assert error.reason == "invalid_json"
    assert "gzip" in error.message
    assert "UTF-16" not in error.message


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3", b"\xed\xa0\x80"], ids=["ff", "cut", "surrogate"])
def test_bytes_that_are_not_utf8_are_named_with_their_offset(bad: bytes) -> None:
    body = b'{"id":"' + bad + b'","inputs":[]}'
    error = refusal(decode_request, body)
    assert (error.reason, error.message) == (
        "invalid_json",
        "request body is not UTF-8 (byte 7); JSON must be UTF-8",
    )


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 2000 + b"]" * 2000,
        b'{"inputs":[NaN,' + b"[" * 5000 + b"]" * 5000 + b"]}",
        b'{"id":"\\ud800","inputs":[NaN]}',
        b'{"inputs":[NaN, \xff]}',
    ],
    ids=["deep", "nan-deep", "nan-lone-surrogate", "nan-not-utf8"],
)
def test_json_the_lenient_parser_cannot_take_is_invalid_json(body: bytes) -> None:
    assert refusal(decode_request, body).reason == "invalid_json"


def test_nan_still_reaches_the_validator_by_name() -> None:
    decoded = decode_request(
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[NaN]}]}'
    )
    assert decoded.tensors[0].name == "x"


@pytest.mark.parametrize(("data", "row"), [([7, True], 1), ([[7], [8], [False]], 2), ([True], 0)])
def test_booleans_in_an_int64_input_are_refused_by_the_validator(data: list[Any], row: int) -> None:
    """Decoding leaves them (no scan of the whole body); the validator names input and row."""
    document = _document()
    nested = type(data[0]) is list
    document["inputs"][0].update(data=data, shape=[len(data), 1] if nested else [len(data)])
    tensors = decode_request(json.dumps(document).encode()).tensors
    schema = Schema(
        features=[Feature(name="x", kind="numeric", datatype="INT64", description="x",
                          reason_code="R01")],
        target="y",
        positive_label="1",
    )  # fmt: skip
    error = refusal(Validator(schema, 10).validate, tensors)
    assert (error.reason, error.message) == (
        "wrong_datatype",
        f"input 'x': row {row} is a boolean; values of a 'INT64' input must be numbers",
    )


def _numeric_schema(datatype: str, maximum: float | None = None) -> Schema:
    feature = Feature(name="x", kind="numeric", datatype=datatype, description="x",
                      reason_code="R01", maximum=maximum)  # fmt: skip
    return Schema(features=[feature], target="y", positive_label="1")


def _numbers(literals: list[str], datatype: str = "FP32") -> bytes:
    return (
        f'{{"inputs":[{{"name":"x","datatype":"{datatype}","shape":[{len(literals)}],'
        f'"data":[{",".join(literals)}]}}]}}'
    ).encode()


@pytest.mark.parametrize(
    ("literals", "datatype", "reason", "says"),
    [
        (["1", "1" + "0" * 400], "FP32", "out_of_range", "row 1 is an integer beyond"),
        (["1" + "0" * 400], "INT64", "out_of_range", "row 0 is an integer beyond"),
        (["2", "1e400"], "FP32", "non_finite", "row 1 is inf"),
        (["-1e400"], "INT64", "non_finite", "row 0 is -inf"),
        (["-1", str(2**64)], "INT64", "out_of_range", "row 1 is 1.8446744073709552e+19, beyond"),
        (
            ["1.5", str(2**70)],
            "FP32",
            "out_of_range",
            "row 1 is 1.1805916207174113e+21, above the maximum",
        ),
    ],
    ids=[
        "int-400-digits",
        "int64-400-digits",
        "float-1e400",
        "int64-minus-1e400",
        "beside-negative",
        "beside-float",
    ],
)
def test_json_numbers_beyond_64_bits_are_refused_by_name(
    literals: list[str], datatype: str, reason: str, says: str
) -> None:
    """Valid JSON that neither orjson nor numpy holds as it stands: the refusal names the input
    and row, not the JSON (1e400) or the datatype (integers numpy keeps as Python objects)."""
    tensors = decode_request(_numbers(literals, datatype)).tensors
    error = refusal(Validator(_numeric_schema(datatype, maximum=1e20), 10).validate, tensors)
    assert (error.reason, error.message.startswith(f"input 'x': {says}")) == (reason, True)


@pytest.mark.parametrize(
    ("shape", "reason"),
    [("[1%s]", "batch_too_large"), ("[-1%s]", "wrong_shape"), ("[1, 1%s]", "wrong_shape")],
)
def test_a_shape_beyond_64_bits_is_quoted_cut(shape: str, reason: str) -> None:
    """A 400-digit dimension (valid JSON, parsed leniently) is quoted cut, not in full."""
    body = '{"inputs":[{"name":"x","datatype":"FP32","shape":%s,"data":[1]}]}' % (
        shape % ("0" * 400)
    )
    error = refusal(Validator(_numeric_schema("FP32"), 10).validate,
                    decode_request(body.encode()).tensors)  # fmt: skip
    assert error.reason == reason
    assert "0" * 65 not in error.message, error.message
    assert "0…(" in error.message, error.message


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"inputs":[1' + b"0" * 5000 + b"]}", "holds an integer of more than 4300 digits"),
        (b'{"inputs":[1e400, }', "not valid JSON: Expecting value: line 1 column 19"),
    ],
    ids=["5000-digits", "truncated-after-1e400"],
)
def test_the_lenient_parser_says_what_is_wrong(body: bytes, says: str) -> None:
    """Past orjson's first complaint (a number beyond a double), the JSON's own fault."""
    error = refusal(decode_request, body)
    assert (error.reason, says in error.message) == ("invalid_json", True), error.message


@given(st.lists(st.integers() | st.floats(allow_nan=False), min_size=1, max_size=4))
def test_any_json_number_is_scored_or_refused_by_name(values: list[int | float]) -> None:
    """Every JSON number (integers of any size, floats to the limits, beside each other) either
    validates or is refused with a reason naming the input: never a parse error or a crash."""
    body = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [len(values)], "data": values}]}
    ).encode()
    validator = Validator(_numeric_schema("FP32"), 10)
    refused: RequestError | None = None
    try:
        rows = validator.validate(decode_request(body).tensors).rows
    except RequestError as error:
        refused, rows = error, 0
    if refused is None:
        assert rows == len(values)
    else:
        assert refused.reason in ("out_of_range", "non_finite")
        assert refused.message.startswith("input 'x': row ")


def test_the_json_id_is_bounded() -> None:
    assert decode_request(json.dumps(_document(id="a\r\n")).encode()).request_id == "a\r\n"
    assert decode_request(json.dumps(_document(id=None)).encode()).request_id is None
    error = refusal(decode_request, json.dumps(_document(id=5)).encode())
    assert (error.reason, error.message) == ("invalid_request", "'id' must be a string, got 5")
    error = refusal(decode_request, json.dumps(_document(id="i" * 129)).encode())
    assert error.message.startswith("'id': 129 characters")


def _binary(extra: bytes = b"", size: int = 8) -> tuple[bytes, str]:
    document = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [2],
                "parameters": {"binary_data_size": size},
            },
            {"name": "c", "datatype": "BYTES", "shape": [1], "data": ["a"]},
        ]
    }
    header = json.dumps(document).encode()
    return header + struct.pack("<2f", 1.5, 2.5) + extra, str(len(header))


def test_binary_tensors_must_end_where_the_body_does() -> None:
    body, length = _binary()
    decoded = decode_binary_request(body, length, from_raw)
    assert decoded.tensors[0].data.tolist() == [1.5, 2.5]
    assert decoded.tensors[1].data == ["a"]
    body, length = _binary(b"\x00\x01\x02")
    assert refusal(decode_binary_request, body, length, from_raw).message.startswith(
        "3 bytes after the last binary tensor"
    )
    body, length = _binary(size=12)
    assert "binary_data_size 12 runs past the end" in (
        refusal(decode_binary_request, body, length, from_raw).message
    )
    body, length = _binary(size=-1)
    assert "non-negative integer" in refusal(decode_binary_request, body, length, from_raw).message
    for bad in ("0", "-1", "abc", "²", "9" * 30, str(len(body) + 1)):
        error = refusal(decode_binary_request, body, bad, from_raw)
        assert error.message.startswith("header 'inference-header-content-length'"), bad


@pytest.mark.parametrize(
    "parameters",
    [{"binary_data_size": 4}, {"binary_data_size": 0}, {"binary_data_size": "4"}],
)
def test_data_beside_a_binary_size_is_refused_without_the_binary_header(
    parameters: dict[str, Any],
) -> None:
    """Before, the JSON path took `data` and ignored the size: the body carried one of the two
    by mistake, and which one the client meant is a guess."""
    document = {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [1], "data": [1.5]},
            {
                "name": "b",
                "datatype": "FP32",
                "shape": [1],
                "data": [2.5],
                "parameters": parameters,
            },
        ]
    }
    error = refusal(decode_request, json.dumps(document).encode())
    assert error.message == (
        "input 'b': both 'data' and a 'binary_data_size' parameter; give its values in one of them"
    )


@pytest.mark.parametrize("parameters", [{}, {"content_type": "str"}, None, [1]])
def test_other_input_parameters_change_nothing(parameters: Any) -> None:
    inputs = [{"name": "b", "datatype": "FP32", "shape": [1], "data": [2.5]}]
    plain = decode_request(json.dumps({"inputs": inputs}).encode())
    inputs[0]["parameters"] = parameters
    assert decode_request(json.dumps({"inputs": inputs}).encode()) == plain
    assert codec_tensors(inputs) is not None  # the one-pass path still takes them


async def test_only_routing_errors_become_v2_error_objects() -> None:
    """A path or method no route takes answers the V2 error object; any other HTTPException
    (a route's own 401 or 409, a structured detail) keeps FastAPI's answer untouched."""
    from fastapi import HTTPException

    app = FastAPI()

    @app.get("/auth")
    async def auth() -> None:
        raise HTTPException(401, "auth", headers={"www-authenticate": "Bearer"})

    @app.get("/conflict")
    async def conflict() -> None:
        raise HTTPException(409, {"code": "x"})

    transport = httpx.ASGITransport(app=rest.FastPathApp(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/auth")).json() == {"detail": "auth"}
        assert (await client.get("/auth")).headers["www-authenticate"] == "Bearer"
        assert (await client.get("/conflict")).json() == {"detail": {"code": "x"}}
        missing = await client.get("/missing")
        wrong = await client.post("/auth")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found: GET '/missing'"})
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "GET")
    assert wrong.json() == {"error": "Method Not Allowed: POST '/auth' (allowed: GET)"}


# --- readiness, host ----------------------------------------------------------------------------


async def test_readiness_tells_the_truth(champion: TrainedBundle) -> None:
    model = CreditScoringModel(PredictorSettings(model_name="demo", model_dir=champion.uri))
    model.load()
    repository = ModelRepository()
    plane = HonestDataPlane(model_registry=repository)
    assert await plane.ready() is False  # no model at all
    repository.update(model)
    assert await plane.ready() is True
    assert "model_repository_extension" not in plane.metadata()["extensions"]
    app = FastAPI()
    register_v2_endpoints(app, plane, ModelRepositoryExtension(repository))
    app.add_exception_handler(ServerNotReady, server_not_ready_handler)
    app.add_exception_handler(ModelNotReady, model_not_ready_handler)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/v2/health/ready")).json() == {"ready": True}
        model.ready = False
        assert (await client.get("/v2/health/ready")).status_code == 503
        assert (await client.get("/v2/models/demo/ready")).status_code == 503


async def test_with_workers_ready_only_once_every_worker_has_started(
    champion: TrainedBundle,
) -> None:
    """The first worker up must not answer ready alone: the connections a client pool opens
    on that answer would all stay with it. After start-up, a worker that dies (KServe
    replaces it) does not turn the pod unready."""
    model = CreditScoringModel(PredictorSettings(model_name="demo", model_dir=champion.uri))
    model.load()
    repository = ModelRepository()
    repository.update(model)
    plane = HonestDataPlane(model_registry=repository)
    loads = WorkerLoads(2)
    plane.wait_for_workers(loads)
    assert await plane.ready() is False  # no worker serves yet
    loads.claim(os.getpid())
    assert await plane.ready() is False  # one of two
    second = loads.claim(os.getpid())
    assert second is not None
    assert await plane.ready() is True
    loads.leave(second)
    assert await plane.ready() is True


async def test_the_rest_server_of_several_workers_makes_readiness_wait_for_them(
    champion: TrainedBundle,
) -> None:
    model = CreditScoringModel(PredictorSettings(model_name="demo", model_dir=champion.uri))
    model.load()
    repository = ModelRepository()
    repository.update(model)
    single, several = (HonestDataPlane(model_registry=repository) for _ in range(2))
    extension = ModelRepositoryExtension(repository)
    BoundedRESTServer("app", single, extension, 0, workers=1, host="127.0.0.1")
    BoundedRESTServer("app", several, extension, 0, workers=2, host="127.0.0.1")
    assert await single.ready() is True
    assert await several.ready() is False  # neither worker has started


def test_grpc_addresses() -> None:
    assert grpc_address("0.0.0.0", 81) == "[::]:81"
    assert grpc_address("127.0.0.1", 81) == "127.0.0.1:81"
    assert grpc_address("::1", 81) == "[::1]:81"
    assert grpc_address("localhost", 81) == "localhost:81"


def test_host_from_flag_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    parse = cli.build_parser().parse_args
    assert cli.settings_from(parse([])).host == "0.0.0.0"
    assert cli.settings_from(parse(["--host", "127.0.0.1"])).host == "127.0.0.1"
    monkeypatch.setenv("CREDITMODEL_PREDICTOR_HOST", "::1")
    assert cli.settings_from(parse([])).host == "::1"
    assert cli.settings_from(parse(["--host", "127.0.0.1"])).host == "127.0.0.1"
    for bad in ("", "a b", "host;rm", "x" * 300):
        with pytest.raises(ValidationError):
            PredictorSettings(host=bad)


@pytest.mark.parametrize("length", [65, 100, 128, 129])
def test_an_unknown_input_name_over_64_characters_is_quoted_cut(length: int) -> None:
    """Names up to 128 characters were quoted whole, though every other client string is cut
    to 64 plus its length (docs/predictor.md)."""
    long_name = "n" * length
    body = json.dumps(
        {"inputs": [{"name": long_name, "datatype": "FP32", "shape": [1], "data": [1]}]}
    )
    tensors = screen(decode_request(body.encode()).tensors, _numeric_schema("FP32"))
    error = refusal(Validator(_numeric_schema("FP32"), 10).validate, tensors)
    assert error.reason == "unknown_input"
    assert "n" * 65 not in error.message, error.message
    assert f"({length} characters)" in error.message


def test_a_signalling_nan_among_raw_fp32_bytes_is_refused_without_a_warning() -> None:
    """Widening a signalling NaN to float64 raises numpy's 'invalid value' warning, which went to
    the server's stderr once per process; the value is refused by name either way."""
    features = [
        Feature(name=name, kind="numeric", datatype="FP32", description=name, reason_code=code)
        for name, code in (("x", "R01"), ("y", "R02"))
    ]
    validator = Validator(Schema(features=features, target="t", positive_label="1"), 10)
    signalling = struct.pack("<2I", 0x3F800000, 0x7FA00000)  # 1.0, then a signalling NaN
    tensors = [
        Tensor("x", "FP32", [2], from_raw("x", "FP32", signalling)),
        Tensor("y", "FP32", [2], from_raw("y", "FP32", struct.pack("<2f", 1.0, 2.0))),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        error = refusal(validator.validate, tensors)
    assert (error.reason, error.message.startswith("input 'x': row 1 ")) == ("non_finite", True)
