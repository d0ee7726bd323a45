"""KServe's InferInput (gRPC contents, raw bytes, REST binary extension) to our Tensor."""

from __future__ import annotations

from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferInput, deserialize_bytes_tensor
from kserve.utils.numpy_codec import to_np_dtype

from creditmodel.predictor.errors import RequestError
from creditmodel.predictor.validation import Tensor


def tensor_from_infer_input(infer_input: InferInput) -> Tensor:
    """Our Tensor from KServe's InferInput: JSON lists, gRPC typed contents or raw bytes
    (gRPC raw_input_contents, the REST binary extension)."""
    data: Any = infer_input.data
    raw = getattr(infer_input, "_raw_data", None)
    if raw is not None:
        dtype = to_np_dtype(infer_input.datatype)
        try:
            if infer_input.datatype == "BYTES":
                data = deserialize_bytes_tensor(raw)
            elif dtype is not None:
                data = np.frombuffer(raw, dtype=dtype)
        except (ValueError, IndexError):
            raise RequestError(
                "wrong_shape",
                f"input {infer_input.name!r}: raw contents do not hold whole"
                f" {infer_input.datatype} values",
            ) from None
    return Tensor(
        name=infer_input.name, datatype=infer_input.datatype, shape=infer_input.shape, data=data
    )
