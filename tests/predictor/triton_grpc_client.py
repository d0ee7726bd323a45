"""Run one inference with tritonclient's gRPC client and print the outcome as JSON.

It runs in its own process because tritonclient.grpc and KServe register the same protobuf
symbols (`inference.ServerLiveRequest`, ...) in protobuf's default pool, so they cannot be
imported into one interpreter. Usage: python -m tests.predictor.triton_grpc_client TARGET
MODEL < request.json (V2 JSON: inputs, optional parameters)."""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException


def main() -> None:
    target, model = sys.argv[1], sys.argv[2]
    document = json.load(sys.stdin)
    client = triton_grpc.InferenceServerClient(target)
    inputs = []
    for spec in document["inputs"]:
        item = triton_grpc.InferInput(spec["name"], spec["shape"], spec["datatype"])
        dtype = object if spec["datatype"] == "BYTES" else np.float32
        item.set_data_from_numpy(np.asarray(spec["data"], dtype=dtype).reshape(spec["shape"]))
        inputs.append(item)
    try:
        result = client.infer(model, inputs, parameters=document.get("parameters"))
    except InferenceServerException as error:
        print(json.dumps({"status": error.status(), "message": error.message()}))
        return
    outputs = {}
    for name in ("probability", "score", "reason_codes"):
        values = result.as_numpy(name)
        outputs[name] = [
            v.decode() if isinstance(v, bytes) else v for v in values.reshape(-1).tolist()
        ]
    print(json.dumps({"status": "OK", "outputs": outputs}))


if __name__ == "__main__":
    main()
