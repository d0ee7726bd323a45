"""The two reference servers of the predictor benchmark, each serving the same int8 ONNX model
over V2 REST (reference A also gRPC). Run as `python -m tests.bench.predictor_refs a|b ...`.

A, the stock path: a plain kserve.Model whose async predict maps V2 inputs onto the session,
   under KServe's ModelServer with default settings.
B, the practical limit: a bare ASGI app on uvicorn (uvloop, httptools) doing the same orjson
   decode, onnxruntime run and orjson encode, and nothing else."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

from creditmodel.core.bundle import MODEL_INT8, load_bundle


def _session(model_dir: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        load_bundle(model_dir).files[MODEL_INT8], options, providers=["CPUExecutionProvider"]
    )


def stock_model(name: str, model_dir: str) -> Any:
    """Reference A's model: a plain kserve.Model whose async predict maps V2 inputs to the
    session and returns the probability."""
    from kserve import Model
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    class StockModel(Model):  # type: ignore[misc]
        def load(self) -> bool:
            self.session = _session(model_dir)
            self.ready = True
            return True

        async def predict(
            self,
            payload: InferRequest,
            headers: dict[str, str] | None = None,
            response_headers: Any = None,
        ) -> InferResponse:
            feed = {}
            for item in payload.inputs:
                values = item.as_numpy().reshape(-1, 1)
                feed[item.name] = values.astype(object if item.datatype == "BYTES" else np.float32)
            (probability,) = self.session.run(["probability"], feed)
            output = InferOutput(
                "probability", list(probability.shape), "FP32", probability.tolist()
            )
            return InferResponse(payload.id, self.name, [output])

    model = StockModel(name)
    model.load()
    return model


def reference_a(argv: list[str]) -> None:
    from kserve import ModelServer, model_server

    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args = parser.parse_args(argv)
    model = stock_model(args.model_name, args.model_dir)
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers).start(
        [model]
    )


async def read_body(receive: Any) -> bytes:
    """An ASGI request's whole body."""
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def bare_app(model_dir: str) -> Any:
    """Reference B's ASGI app: orjson decode, onnxruntime run, orjson encode, nothing else."""
    session = _session(model_dir)
    headers = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"].endswith("/ready"):
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b'{"ready":true}'})
            return
        body = await read_body(receive)
        document = orjson.loads(body)
        feed = {
            item["name"]: np.asarray(
                item["data"], dtype=object if item["datatype"] == "BYTES" else np.float32
            ).reshape(-1, 1)
            for item in document["inputs"]
        }
        (probability,) = session.run(["probability"], feed)
        response = orjson.dumps(
            {
                "model_name": "german-credit",
                "id": document.get("id"),
                "outputs": [
                    {
                        "name": "probability",
                        "datatype": "FP32",
                        "shape": list(probability.shape),
                        "data": probability,
                    }
                ],
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": response})

    return app


def reference_b(argv: list[str]) -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--http_port", type=int, required=True)
    args, _ = parser.parse_known_args(argv)
    uvicorn.run(
        bare_app(args.model_dir),
        host="127.0.0.1",
        port=args.http_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
    )


if __name__ == "__main__":
    {"a": reference_a, "b": reference_b}[sys.argv[1]](sys.argv[2:])
