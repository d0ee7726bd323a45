#!/usr/bin/env python3
"""Score an applicant over the V2 gRPC API with KServe's Python client: no grpcurl, no .proto.

With `make serve` running (gRPC on localhost:8081), in another shell:

    .venv/bin/python predictor/examples/grpc_infer.py

It asks ModelMetadata for the model's version and platform (printed on stderr), sends the curl
example's request (predictor/examples/german-credit-request.json) as a ModelInfer, and prints the
answer on stdout as one JSON document shaped like the REST response. Options: --target
HOST:PORT, --model NAME, --request FILE (a V2 JSON request), --variant int8|fp32.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc
from kserve import InferenceGRPCClient
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse

HERE = Path(__file__).resolve().parent


async def metadata(target: str, model: str) -> Any:
    """ModelMetadata through the generated stub (KServe's client has no call for it)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        return await stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=10)


def request_from(document: dict[str, Any], model: str, variant: str | None) -> InferRequest:
    """A V2 JSON request (as POSTed to /v2/models/{name}/infer) as KServe's InferRequest."""
    inputs = [
        InferInput(name=i["name"], shape=i["shape"], datatype=i["datatype"], data=i["data"])
        for i in document["inputs"]
    ]
    return InferRequest(
        model_name=model,
        infer_inputs=inputs,
        request_id=document.get("id"),
        parameters={"variant": variant} if variant else None,
    )


def as_json(response: InferResponse) -> dict[str, Any]:
    """The response as the REST API writes it (BYTES as text)."""
    parameters = {
        key: getattr(value, value.WhichOneof("parameter_choice"))
        for key, value in (response.parameters or {}).items()
    }
    return {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "parameters": parameters,
        "outputs": [
            {
                "name": output.name,
                "datatype": output.datatype,
                "shape": list(output.shape),
                "data": [v.decode() if isinstance(v, bytes) else v for v in output.data],
            }
            for output in response.outputs
        ],
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description="V2 gRPC ModelInfer with KServe's client.")
    parser.add_argument("--target", default="localhost:8081", help="gRPC HOST:PORT")
    parser.add_argument("--model", default="german-credit")
    parser.add_argument("--request", type=Path, default=HERE / "german-credit-request.json")
    parser.add_argument("--variant", choices=["int8", "fp32"])
    args = parser.parse_args()

    described = await metadata(args.target, args.model)
    print(
        f"{described.name}: versions {list(described.versions)}, platform {described.platform},"
        f" {len(described.inputs)} inputs, outputs {[o.name for o in described.outputs]}",
        file=sys.stderr,
    )
    request = request_from(json.loads(args.request.read_text()), args.model, args.variant)
    async with InferenceGRPCClient(args.target, retries=0, timeout=30) as client:
        response = await client.infer(request)
    print(json.dumps(as_json(response)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except grpc.aio.AioRpcError as error:  # the server's status, without a traceback
        sys.exit(f"grpc_infer: {error.code().name}: {error.details()}")
