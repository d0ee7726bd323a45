"""The KServe model: loads and verifies the bundle, serves the stock path through KServe's
DataPlane, and installs the fast V2 REST route (rest.py) on KServe's own FastAPI app; the fast
gRPC ModelInfer (grpc_fast.py) finds its `service` through KServe's model registry.

With `--workers N`, KServe pickles the model into N spawned REST processes; `__getstate__` ships
the already-verified bundle bytes, and each process rebuilds its sessions and installs the route."""

from __future__ import annotations

import time
from typing import Any

from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import (
    InferOutput,
    InferRequest,
    InferResponse,
    to_http_parameters,
)

from creditmodel.core.bundle import Bundle, load_bundle
from creditmodel.predictor import rest
from creditmodel.predictor.bounds import checked_id
from creditmodel.predictor.engine import LoadedBundle
from creditmodel.predictor.errors import RequestError
from creditmodel.predictor.infer_types import kserve_infer, tensor_from_infer_input
from creditmodel.predictor.prediction_log import PredictionLogger, PredictionLogSettings
from creditmodel.predictor.service import (
    OUTPUTS,
    Prediction,
    ScoringService,
    new_request_id,
)
from creditmodel.predictor.settings import PredictorSettings

# V2 model metadata `platform`: the name Triton gives a model it runs with ONNX Runtime.
PLATFORM = "onnxruntime_onnx"


def to_infer_response(prediction: Prediction, binary: bool = False) -> InferResponse:
    """`binary`: answer in raw tensor contents, as clients that sent raw inputs expect (Triton's
    gRPC client reads outputs only from raw_output_contents)."""
    outputs = [
        InferOutput(
            name=name,
            shape=shape,
            datatype=datatype,
            data=values.reshape(-1).tolist(),
        )
        for name, datatype, shape, values in prediction.tensors()
    ]
    return InferResponse(
        response_id=prediction.request_id,
        model_name=prediction.model_name,
        model_version=prediction.version,
        infer_outputs=outputs,
        parameters={"variant": prediction.variant},
        use_binary_outputs=binary,
    )


class CreditScoringModel(Model):  # type: ignore[misc]
    def __init__(self, settings: PredictorSettings) -> None:
        super().__init__(settings.model_name)
        self.settings = settings
        self.service: ScoringService | None = None
        self._bundles: tuple[Bundle, Bundle | None] | None = None

    def load(self) -> bool:
        """Verify every checksum (core.bundle.load_bundle) before anything is served; a bad
        bundle raises BundleError and the server never starts, so it never turns ready."""
        champion = load_bundle(self.settings.model_dir)
        challenger = (
            load_bundle(self.settings.shadow_model_dir) if self.settings.shadow_model_dir else None
        )
        self._serve(champion, challenger)
        return bool(self.ready)

    def _serve(self, champion: Bundle, challenger: Bundle | None) -> None:
        rows, scaling = self.settings.max_batch_rows, self.settings.scaling
        log_settings = PredictionLogSettings()
        self.service = ScoringService(
            self.settings,
            LoadedBundle(champion, rows, scaling),
            LoadedBundle(challenger, rows, scaling) if challenger is not None else None,
            PredictionLogger(log_settings, champion.schema, self.settings.model_name)
            if log_settings.uri
            else None,
        )
        self._bundles = (champion, challenger)
        rest.install(self.service)
        self.ready = True

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "bundles": self._bundles}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"])  # type: ignore[misc]
        if state["bundles"] is not None:
            self._serve(*state["bundles"])

    def _running(self) -> ScoringService:
        if self.service is None:
            raise RuntimeError("model used before load()")
        return self.service

    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        started = time.perf_counter()
        service = self._running()
        try:
            request_id = (
                checked_id(payload.id, "'id'")
                or checked_id((headers or {}).get("x-request-id"), "header 'x-request-id'")
                or new_request_id()
            )
        except RequestError as error:
            service.refuse(error, new_request_id())
            raise InvalidInput(error.message) from None
        outputs = payload.request_outputs
        prediction = await kserve_infer(
            service,
            self.name,
            request_id,
            lambda: [tensor_from_infer_input(i) for i in payload.inputs],
            to_http_parameters(payload.parameters) if payload.parameters else None,
            [o.name for o in outputs] if outputs else None,
        )
        response = to_infer_response(prediction, binary=payload.use_binary_outputs)
        service.done(prediction, started)
        return response

    def v2_metadata(self) -> dict[str, Any]:
        """What KServe's model metadata leaves empty (serving.HonestDataPlane adds it): the
        served bundle's version and the platform."""
        return {"versions": [self._running().champion.version], "platform": PLATFORM}

    def get_input_types(self) -> list[dict[str, Any]]:
        schema = self._running().champion.bundle.schema
        return [{"name": f.name, "datatype": f.datatype, "shape": [-1, 1]} for f in schema.features]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [
            {"name": name, "datatype": datatype, "shape": [-1, *tail]}
            for name, (datatype, tail) in OUTPUTS.items()
        ]
