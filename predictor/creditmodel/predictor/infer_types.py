"""V2 tensors as KServe or the wire hands them over (KServe's InferInput, gRPC typed contents,
raw little-endian bytes) to our Tensor, our outputs back to raw bytes, and the request path both
KServe-facing entry points share (`Model.predict`, the fast gRPC ModelInfer).

BYTES elements become `str` when they are valid UTF-8: the validator's vectorised path looks
categories up by string, and anything else (bytes) sends a request down its careful per-input
path. Invalid UTF-8 stays bytes so that path names the input and row."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.infer_type import InferInput

from creditmodel.predictor.bounds import refuse_booleans, show
from creditmodel.predictor.errors import RequestError, clip
from creditmodel.predictor.service import InferenceRequest, Prediction, ScoringService
from creditmodel.predictor.validation import Tensor

# V2 datatype -> the little-endian numpy dtype of its raw contents (BYTES is length-prefixed).
RAW_DTYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
_LENGTH = struct.Struct("<I")


def strings(values: list[bytes]) -> list[str] | list[bytes]:
    """UTF-8 text when every element decodes, else the bytes as they came (see module doc)."""
    try:
        return [value.decode() for value in values]
    except UnicodeDecodeError:
        return values


def bytes_elements(raw: bytes) -> list[bytes]:
    """The elements of a raw BYTES tensor (each a 4-byte little-endian length, then the bytes);
    ValueError when the buffer ends inside an element. A tight loop: it runs once per value."""
    items: list[bytes] = []
    append, unpack = items.append, _LENGTH.unpack_from
    offset, end = 0, len(raw)
    try:
        while offset < end:
            start = offset + 4
            offset = start + unpack(raw, offset)[0]
            append(raw[start:offset])
    except struct.error:
        raise ValueError("truncated length") from None
    if offset != end:
        raise ValueError("truncated element")
    return items


def bytes_contents(values: npt.NDArray[Any]) -> bytes:
    """A BYTES tensor (str elements) as raw contents, the inverse of `bytes_elements`."""
    encoded = [str(v).encode() for v in values.reshape(-1).tolist()]
    return b"".join([_LENGTH.pack(len(e)) + e for e in encoded])


def from_raw(name: str, datatype: str, raw: bytes) -> Any:
    """Raw tensor contents as the validator takes them: a numpy array, or strings for BYTES."""
    try:
        if datatype == "BYTES":
            return strings(bytes_elements(raw))
        dtype = RAW_DTYPES.get(datatype)
        return np.frombuffer(raw, dtype=dtype) if dtype is not None else []
    except ValueError:
        raise RequestError(
            "wrong_shape",
            f"input {show(name)}: raw contents do not hold whole {clip(datatype, 16)} values",
        ) from None


def tensor_from_infer_input(infer_input: InferInput) -> Tensor:
    """Our Tensor from KServe's InferInput: JSON lists, gRPC typed contents or raw bytes
    (gRPC raw_input_contents, the REST binary extension). JSON booleans in a numeric input are
    refused here, naming the row, as the validator refuses them on our own paths."""
    data: Any = infer_input.data
    raw = getattr(infer_input, "_raw_data", None)
    if raw is not None:
        data = from_raw(infer_input.name, infer_input.datatype, raw)
    tensor = Tensor(
        name=infer_input.name, datatype=infer_input.datatype, shape=infer_input.shape, data=data
    )
    refuse_booleans([tensor])
    return tensor


def decoded(
    service: ScoringService, request_id: str, decode: Callable[[], list[Tensor]]
) -> list[Tensor]:
    """`decode()`'s tensors; a decoding refusal is counted and logged here (the service counts
    its own), then raised as KServe's InvalidInput naming the input."""
    try:
        return decode()
    except RequestError as error:
        service.refuse(error, request_id)
        raise InvalidInput(error.message) from None


def kserve_error(error: RequestError, model_name: str) -> Exception:
    """The service's refusal as the KServe error KServe's handlers answer: ModelNotFound (the
    name cut) for a model not served, InvalidInput (400 / INVALID_ARGUMENT) otherwise."""
    refusal: Exception = (
        ModelNotFound(clip(model_name))
        if error.reason == "unknown_model"
        else InvalidInput(error.message)
    )
    return refusal


async def kserve_infer(
    service: ScoringService,
    model_name: str,
    request_id: str,
    decode: Callable[[], list[Tensor]],
    parameters: Mapping[str, Any] | None,
    outputs: Sequence[str] | None,
    rows: int = 0,
) -> Prediction:
    """Decode and score one request, refusals raised as KServe's errors so KServe's handlers
    answer them (`decoded`, `kserve_error`). Decoding a batch of more than `inline_rows`
    (`rows`, as the request declares it) takes milliseconds, so it runs in a worker thread, as
    scoring does (kserve issue 3950)."""
    if rows > service.settings.inline_rows:
        tensors = await asyncio.to_thread(decoded, service, request_id, decode)
    else:
        tensors = decoded(service, request_id, decode)
    try:
        return await service.infer(
            InferenceRequest(model_name, tensors, request_id, parameters, outputs)
        )
    except RequestError as error:
        raise kserve_error(error, model_name) from None
