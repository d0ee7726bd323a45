"""V2 JSON request decoding and response encoding with orjson, straight to and from numpy. Pure.
Malformed documents become `RequestError`s that say which part is wrong."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from creditmodel.predictor.errors import RequestError
from creditmodel.predictor.validation import Tensor

if TYPE_CHECKING:
    from creditmodel.predictor.service import Prediction

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    tensors: list[Tensor]
    parameters: dict[str, Any] | None
    request_id: str | None
    outputs: list[str] | None


def _load(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        # orjson rejects the NaN/Infinity literals Python's json writes; parse those leniently
        # so the error names the input that carries them instead of blaming the JSON.
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise RequestError("invalid_json", f"request body is not valid JSON: {error}") from None


def decode_request(body: bytes) -> DecodedRequest:
    document = _load(body)
    if not isinstance(document, dict):
        raise RequestError("invalid_request", "request body must be a JSON object with 'inputs'")
    inputs = document.get("inputs")
    if not isinstance(inputs, list):
        raise RequestError("invalid_request", "'inputs' must be a list of input tensors")
    try:  # well-formed documents in one pass; the validator checks names, types and shapes
        tensors = [Tensor(i["name"], i["datatype"], i["shape"], i["data"]) for i in inputs]
    except (KeyError, TypeError):
        tensors = _careful_tensors(inputs)
    return DecodedRequest(
        tensors=tensors,
        parameters=_parameters(document),
        request_id=_request_id(document),
        outputs=_outputs(document),
    )


def _careful_tensors(inputs: list[Any]) -> list[Tensor]:
    """The first malformed input, named."""
    tensors = []
    for index, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise RequestError("invalid_request", f"inputs[{index}] must be an object")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str):
            raise RequestError("invalid_request", f"inputs[{index}]: 'name' must be a string")
        if not isinstance(datatype, str):
            raise RequestError("invalid_request", f"input {name!r}: 'datatype' must be a string")
        if not isinstance(shape, list):
            raise RequestError("wrong_shape", f"input {name!r}: 'shape' must be a list")
        if "data" not in item:
            raise RequestError("invalid_request", f"input {name!r}: 'data' is missing")
        tensors.append(Tensor(name=name, datatype=datatype, shape=shape, data=item["data"]))
    return tensors


def _parameters(document: dict[str, Any]) -> dict[str, Any] | None:
    parameters = document.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise RequestError("invalid_request", "'parameters' must be an object")
    return parameters


def _request_id(document: dict[str, Any]) -> str | None:
    request_id = document.get("id")
    return request_id if isinstance(request_id, str) and request_id else None


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
