"""V2 JSON request decoding and response encoding with orjson, straight to and from numpy. Pure.
Malformed documents become `RequestError`s that say which part is wrong; every client string a
message quotes is bounded (bounds.py).

JSON is UTF-8 only (RFC 8259 section 8.1): a UTF-16 or UTF-32 body is refused, not sniffed.
Nesting deeper than orjson's limit (1024) is refused. A `true`/`false` where a numeric tensor
expects numbers (Python's bool is an int: numpy would score it as 1.0 or 0.0) is refused by the
validator, which looks at the data anyway, rather than by a scan of the whole body here (200 us
for a 1,000-row body).

The binary tensor extension (Inference-Header-Content-Length, tritonclient's default) is
decoded here too: the JSON header, then each input's `binary_data_size` bytes in order, and the
body must end exactly where the last tensor does."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from creditmodel.predictor.bounds import checked_id, show
from creditmodel.predictor.errors import RequestError
from creditmodel.predictor.validation import Tensor

if TYPE_CHECKING:
    from creditmodel.predictor.service import Prediction

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_OVERFLOW = "infinity when parsed as double"  # orjson's words for a number beyond float64
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
# An input's raw bytes as the validator takes them (infer_types.from_raw): (name, datatype, raw).
RawDecoder = Callable[[str, str, bytes], Any]


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~3x, on every request
class DecodedRequest:
    tensors: list[Tensor]
    parameters: dict[str, Any] | None
    request_id: str | None
    outputs: list[str] | None


def _not_utf8(body: bytes) -> str | None:
    """Why `body` is not UTF-8 JSON text, when it visibly is not (a byte order mark, or the
    NUL bytes UTF-16 and UTF-32 put around ASCII)."""
    if body.startswith(_BOMS[0]):
        return "request body starts with a UTF-8 byte order mark; JSON must be UTF-8 without one"
    if body.startswith(b"\x1f\x8b"):
        return "request body is gzip-compressed data, not JSON text; send the JSON uncompressed"
    if body.startswith(_BOMS[1:]) or b"\x00" in body[:4]:
        return "request body looks like UTF-16 or UTF-32; JSON must be UTF-8"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"request body is not UTF-8 (byte {error.start}); JSON must be UTF-8"
    return None


def _load(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        problem = _not_utf8(body)
        if problem is not None:
            raise RequestError("invalid_json", problem) from None
        if b"NaN" in body or b"Infinity" in body or _OVERFLOW in str(error):
            # orjson rejects the NaN/Infinity literals Python's json writes, and numbers too
            # large for a double (1e400, a 400-digit integer: valid JSON); parse those leniently
            # so the error names the input that carries them instead of blaming the JSON.
            return _load_lenient(body, error)
        raise RequestError("invalid_json", f"request body is not valid JSON: {error}") from None


def _load_lenient(body: bytes, first: orjson.JSONDecodeError) -> Any:
    try:
        document = json.loads(body.decode("utf-8"))
        # Lone surrogates ("\\ud800") cannot be answered or logged (a ValueError here); orjson
        # would refuse the integers beyond 64 bits this path is for as well.
        json.dumps(document, ensure_ascii=False).encode()
    except UnicodeDecodeError:
        raise RequestError(
            "invalid_json", "request body is not UTF-8; JSON must be UTF-8"
        ) from None
    except json.JSONDecodeError as error:  # the document's own fault, where orjson stopped early
        raise RequestError("invalid_json", f"request body is not valid JSON: {error}") from None
    except (ValueError, RecursionError) as error:
        if "digits" in str(error):  # Python's int_max_str_digits: a DoS guard of its parser
            raise RequestError(
                "invalid_json",
                f"request body holds an integer of more than {sys.get_int_max_str_digits()}"
                f" digits ({first})",
            ) from None
        raise RequestError("invalid_json", f"request body is not valid JSON: {first}") from None
    return document


def decode_request(body: bytes) -> DecodedRequest:
    return _decode(_load(body))


def decode_binary_request(body: bytes, header_length: str, raw: RawDecoder) -> DecodedRequest:
    """The binary tensor extension: a JSON header of `header_length` bytes, then the inputs
    that carry `parameters.binary_data_size` instead of `data`, in order, to the last byte."""
    length = int(header_length) if header_length.isascii() and header_length.isdigit() else -1
    if not 0 < length <= len(body) or len(header_length) > 19:
        raise RequestError(
            "invalid_request",
            f"header 'inference-header-content-length': {show(header_length)} is not a length"
            f" within the {len(body)}-byte body",
        )
    header = body[:length]
    return _decode(_load(header), _BinaryParts(body, length, raw))


def _decode(document: Any, binary: _BinaryParts | None = None) -> DecodedRequest:
    if not isinstance(document, dict):
        raise RequestError("invalid_request", "request body must be a JSON object with 'inputs'")
    inputs = document.get("inputs")
    if not isinstance(inputs, list):
        raise RequestError("invalid_request", "'inputs' must be a list of input tensors")
    request_id = _request_id(document)
    tensors = _tensors(inputs) if binary is None else None
    if tensors is None:
        tensors = _careful_tensors(inputs, binary)
    return DecodedRequest(
        tensors=tensors,
        parameters=_parameters(document),
        request_id=request_id,
        outputs=_outputs(document),
    )


def _tensors(inputs: list[Any]) -> list[Tensor] | None:
    """Well-formed JSON inputs in one pass (the validator checks names, types and shapes). An
    input that declares binary bytes beside its `data` goes the careful way, which refuses it
    (other input parameters, such as KServe's content_type, change nothing)."""
    try:
        tensors = [Tensor(i["name"], i["datatype"], i["shape"], i["data"]) for i in inputs]
    except (KeyError, TypeError):
        return None
    for item in inputs:
        if "parameters" in item and _BinaryParts.declared(item):
            return None
    return tensors


class _BinaryParts:
    """The raw tensors after the JSON header, taken in order."""

    def __init__(self, body: bytes, offset: int, raw: RawDecoder) -> None:
        self.body, self.offset, self.raw = body, offset, raw

    @staticmethod
    def _size(item: dict[str, Any]) -> Any:
        parameters = item.get("parameters")
        return parameters.get("binary_data_size") if isinstance(parameters, dict) else None

    @staticmethod
    def declared(item: dict[str, Any]) -> bool:
        """Whether input `item` says its values are binary bytes in the body."""
        return _BinaryParts._size(item) is not None

    def take(self, name: str, datatype: str, item: dict[str, Any]) -> Any:
        size = self._size(item)
        if size is None:
            raise RequestError(
                "invalid_request",
                f"input {show(name)}: neither 'data' nor a 'binary_data_size' parameter",
            )
        if type(size) is not int or size < 0:
            raise RequestError(
                "invalid_request",
                f"input {show(name)}: 'binary_data_size' must be a non-negative integer,"
                f" got {show(size)}",
            )
        end = self.offset + size
        if end > len(self.body):
            raise RequestError(
                "invalid_request",
                f"input {show(name)}: binary_data_size {size} runs past the end of the body"
                f" ({len(self.body) - self.offset} bytes left)",
            )
        data = self.raw(name, datatype, self.body[self.offset : end])
        self.offset = end
        return data

    def finish(self) -> None:
        extra = len(self.body) - self.offset
        if extra:
            raise RequestError(
                "invalid_request",
                f"{extra} bytes after the last binary tensor; the body must end where the"
                " tensors its header declares do",
            )


def _careful_tensors(inputs: list[Any], binary: _BinaryParts | None = None) -> list[Tensor]:
    """The first malformed input, named."""
    tensors = []
    for index, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise RequestError("invalid_request", f"inputs[{index}] must be an object")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str):
            raise RequestError("invalid_request", f"inputs[{index}]: 'name' must be a string")
        if not isinstance(datatype, str):
            raise RequestError(
                "invalid_request", f"input {show(name)}: 'datatype' must be a string"
            )
        if not isinstance(shape, list):
            raise RequestError("wrong_shape", f"input {show(name)}: 'shape' must be a list")
        if "data" in item:
            if _BinaryParts.declared(item):
                # Taking `data` would leave this input's bytes in the body, for the next input
                # to be read from, or to be refused as bytes after the last tensor; without the
                # binary header, one of the two is not what the client meant.
                raise RequestError(
                    "invalid_request",
                    f"input {show(name)}: both 'data' and a 'binary_data_size' parameter; give"
                    " its values in one of them",
                )
            data = item["data"]
        elif binary is not None:
            data = binary.take(name, datatype, item)
        else:
            raise RequestError("invalid_request", f"input {show(name)}: 'data' is missing")
        tensors.append(Tensor(name=name, datatype=datatype, shape=shape, data=data))
    if binary is not None:
        binary.finish()
    return tensors


def _parameters(document: dict[str, Any]) -> dict[str, Any] | None:
    parameters = document.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise RequestError("invalid_request", "'parameters' must be an object")
    return parameters


def _request_id(document: dict[str, Any]) -> str | None:
    """The V2 `id`, a string when given (null counts as absent, as for `parameters`): any
    other value is refused, not swapped for a generated id the client never learns it got."""
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError("invalid_request", f"'id' must be a string, got {show(request_id)}")
    return checked_id(request_id, "'id'")


def _outputs(document: dict[str, Any]) -> list[str] | None:
    outputs = document.get("outputs")
    names: list[str] | None = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
        ):
            raise RequestError("invalid_request", "'outputs' must be a list of {\"name\": ...}")
        names = [o["name"] for o in outputs]
    return names


def encode_response(prediction: Prediction) -> bytes:
    outputs = []
    for name, datatype, shape, values in prediction.tensors():
        flat = values.reshape(-1)
        outputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": shape,
                "data": flat.tolist() if datatype == "BYTES" else flat,
            }
        )
    return orjson.dumps(
        {
            "model_name": prediction.model_name,
            "model_version": prediction.version,
            "id": prediction.request_id,
            "parameters": {"variant": prediction.variant},
            "outputs": outputs,
        },
        option=_NUMPY,
    )


def encode_error(message: str) -> bytes:
    return orjson.dumps({"error": message})
