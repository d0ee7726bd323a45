"""The served models of one bundle: an onnxruntime session per variant (int8, fp32), checked
against the schema at load, plus each variant's reason-code table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from creditmodel.core.bundle import MODEL_FP32, MODEL_INT8, Bundle, BundleError
from creditmodel.predictor.scoring import PointsScale, ReasonTable, probe_plan
from creditmodel.predictor.settings import PointsScaling
from creditmodel.predictor.validation import Batch, Column, Validator

VARIANT_FILES = {"int8": MODEL_INT8, "fp32": MODEL_FP32}
_ORT_TYPES = {"INT64": "tensor(int64)", "FP32": "tensor(float)", "BYTES": "tensor(string)"}


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~3x, on every request
class Scored:
    probability: npt.NDArray[np.float32]
    score: npt.NDArray[np.int32]
    reasons: npt.NDArray[np.object_] | None


class VariantModel:
    """One ONNX model. Sessions use one intra-op thread: a request is microseconds of work, and
    scaling comes from worker processes, not from threads fighting over two cores."""

    def __init__(self, bundle: Bundle, variant: str, scale: PointsScale) -> None:
        self.variant = variant
        self.scale = scale
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        where = f"{bundle.uri}/{VARIANT_FILES[variant]}"
        try:
            self.session = ort.InferenceSession(
                bundle.files[VARIANT_FILES[variant]], options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise BundleError(f"{where}: onnxruntime cannot load it ({exc})") from None
        self._flat_inputs = self._check_inputs(bundle, where)
        self._output, self._column = self._probability_output(where)
        self._outputs = [self._output]
        # InferenceSession.run checks the feed's names against the graph's on every call (a
        # quarter of the cost of a single-row run); the validator guarantees them, and
        # _check_inputs checked them against the graph once, so the session's own run is called.
        native = getattr(self.session, "_sess", None)
        self._run = native.run if native is not None else self.session.run
        plan = probe_plan(bundle.schema, bundle.reference)
        self.reason_table = ReasonTable(bundle.schema, plan, self.probability(plan.columns))

    def _check_inputs(self, bundle: Bundle, where: str) -> set[str]:
        inputs = {i.name: i for i in self.session.get_inputs()}
        expected = {f.name: f for f in bundle.schema.features}
        if set(inputs) != set(expected):
            raise BundleError(
                f"{where}: model inputs {sorted(inputs)} differ from schema.json features"
                f" {sorted(expected)}"
            )
        for name, feature in expected.items():
            if inputs[name].type != _ORT_TYPES[feature.datatype]:
                raise BundleError(
                    f"{where}: input {name!r} is {inputs[name].type}, schema says"
                    f" {feature.datatype}"
                )
        return {name for name, i in inputs.items() if len(i.shape) == 1}

    def _probability_output(self, where: str) -> tuple[str, int | None]:
        """`probability` [N] if the graph has it, else column 1 (the positive class, label 1) of
        a float [N, 2] output such as skl2onnx's `probabilities`."""
        outputs = self.session.get_outputs()
        for output in outputs:
            if output.name == "probability" and output.type == "tensor(float)":
                return output.name, None
        for output in outputs:
            if output.type == "tensor(float)" and len(output.shape) == 2 and output.shape[1] == 2:
                return output.name, 1
        raise BundleError(f"{where}: no float probability output among {[o.name for o in outputs]}")

    def probability(self, columns: dict[str, Column]) -> npt.NDArray[np.float32]:
        feed: dict[str, Any] = (
            {
                name: (column.reshape(-1) if name in self._flat_inputs else column)
                for name, column in columns.items()
            }
            if self._flat_inputs
            else columns
        )
        (result,) = self._run(self._outputs, feed, None)
        values = result if self._column is None else result[:, self._column]
        return np.ascontiguousarray(values, dtype=np.float32).reshape(-1)

    def score(self, batch: Batch, with_reasons: bool = True) -> Scored:
        probability = self.probability(batch.columns)
        return Scored(
            probability=probability,
            score=self.scale.score(probability),
            reasons=self.reason_table.reasons(batch.numeric, batch.codes) if with_reasons else None,
        )


def bundle_scaling(bundle: Bundle) -> PointsScaling:
    """The points scaling the bundle was trained with (manifest lineage params `scoring`)."""
    params = bundle.manifest.lineage.params.get("scoring")
    return PointsScaling.model_validate(params) if isinstance(params, dict) else PointsScaling()


class LoadedBundle:
    """A verified bundle ready to serve: validator and both variants."""

    def __init__(self, bundle: Bundle, max_rows: int, scaling: PointsScaling | None = None) -> None:
        self.bundle = bundle
        self.name = bundle.manifest.model_name
        self.version = bundle.version
        self.scaling = scaling or bundle_scaling(bundle)
        scale = PointsScale.from_scaling(self.scaling)
        self.validator = Validator(bundle.schema, max_rows)
        self.variants = {variant: VariantModel(bundle, variant, scale) for variant in VARIANT_FILES}
