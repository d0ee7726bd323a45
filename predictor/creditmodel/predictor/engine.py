"""The served models of one bundle: an onnxruntime session per variant (int8, fp32), checked
against the schema at load, plus each variant's reason-code table."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from creditmodel.core.bundle import MODEL_FP32, MODEL_INT8, Bundle, BundleError, bundle_scaling
from creditmodel.core.points import PointsScaling
from creditmodel.core.schema import Schema
from creditmodel.predictor.bound_run import BoundRun
from creditmodel.predictor.coded_inputs import coded_categoricals
from creditmodel.predictor.scoring import PointsScale, ReasonTable, probe_plan
from creditmodel.predictor.validation import Batch, Column, Validator

VARIANT_FILES = {"int8": MODEL_INT8, "fp32": MODEL_FP32}
log = logging.getLogger(__name__)
_ORT_TYPES = {"INT64": "tensor(int64)", "FP32": "tensor(float)", "BYTES": "tensor(string)"}


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~3x, on every request
class Scored:
    probability: npt.NDArray[np.float32]
    score: npt.NDArray[np.int32]
    reasons: npt.NDArray[np.object_] | None


class VariantModel:
    """One ONNX model. Sessions use one intra-op thread: a request is microseconds of work, and
    scaling comes from worker processes, not from threads fighting over two cores. Categorical
    inputs go in as category codes where the graph allows it (coded_inputs.py), checked here to
    score every probe row bit for bit as the bundle's own graph does."""

    def __init__(self, bundle: Bundle, variant: str, scale: PointsScale) -> None:
        self.variant = variant
        self.scale = scale
        where = f"{bundle.uri}/{VARIANT_FILES[variant]}"
        model_bytes = bundle.files[VARIANT_FILES[variant]]
        self.session = _session(model_bytes, where)
        self._flat_inputs = self._check_inputs(bundle, where)
        self._output, self._column = self._probability_output(where)
        self._outputs = [self._output]
        self._categorical = [f.name for f in bundle.schema.features if f.kind == "categorical"]
        self._coded: list[tuple[str, int]] = []
        self._bind_run()
        plan = probe_plan(bundle.schema, bundle.reference)
        plan_codes = category_codes(bundle.schema, plan.columns)
        try:
            expected = self.probability(plan.columns, plan_codes)
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise BundleError(
                f"{where}: the graph fails on the bundle's own probe rows ({exc})"[:1024]
            ) from None
        self._use_codes(model_bytes, bundle, where, plan.columns, plan_codes, expected)
        self._bound = self._bind_one_row(bundle, where, plan.columns, plan_codes, expected)
        self.reason_table = ReasonTable(bundle.schema, plan, expected)

    def _bind_run(self) -> None:
        # InferenceSession.run checks the feed's names against the graph's on every call (a
        # quarter of the cost of a single-row run); the validator guarantees them, and
        # _check_inputs checked them against the graph once, so the session's own run is called.
        native = getattr(self.session, "_sess", None)
        self._run = native.run if native is not None else self.session.run

    def _use_codes(
        self,
        model_bytes: bytes,
        bundle: Bundle,
        where: str,
        columns: dict[str, Column],
        codes: npt.NDArray[np.intp],
        expected: npt.NDArray[np.float32],
    ) -> None:
        """Switch to the coded graph if there is one and it scores the probe rows (every
        category of every feature) exactly as the string graph did."""
        try:
            rewritten = coded_categoricals(model_bytes, bundle.schema)
        except Exception as exc:  # onnx raises several unrelated types on odd graphs
            log.warning("%s: categorical inputs stay strings (%s)", where, exc)
            return
        if rewritten is None:
            return
        strings = (self.session, self._run, self._coded)
        coded_bytes, names = rewritten
        try:
            self.session = _session(coded_bytes, where)
            self._bind_run()
            self._coded = [(n, i) for i, n in enumerate(self._categorical) if n in names]
            same = self.probability(columns, codes).tobytes() == expected.tobytes()
            problem = "coded graph scores differ"
        except Exception as exc:  # the bundle's own graph loaded and ran: it stays served
            same, problem = False, f"coded graph fails: {exc}"
        if not same:
            log.warning("%s: categorical inputs stay strings (%s)", where, problem)
            self.session, self._run, self._coded = strings

    def _bind_one_row(
        self,
        bundle: Bundle,
        where: str,
        columns: dict[str, Column],
        codes: npt.NDArray[np.intp],
        expected: npt.NDArray[np.float32],
    ) -> BoundRun | None:
        """The bound single-row run (bound_run.py), if every input is a number and it scores
        every probe row alone exactly as the dict path scored them together."""
        schema = bundle.schema
        if not BoundRun.servable(self.session, schema, self._coded):
            return None
        numeric_names = [f.name for f in schema.features if f.kind == "numeric"]
        numeric = np.column_stack(
            [columns[name].reshape(-1).astype(np.float64) for name in numeric_names]
            or [np.empty((len(codes), 0))]
        )
        try:
            bound = BoundRun(
                self.session,
                schema,
                self._coded,
                self._flat_inputs,
                self._output,
                None if self._column is None else 2,  # [N, 2]: column 1 is P(positive)
            )
            if bound.verified(numeric, codes, expected):
                return bound
            problem = "scores differ"
        except Exception as exc:  # onnxruntime raises several unrelated types
            problem = str(exc)
        log.warning("%s: single rows keep the dict path (bound run: %s)", where, problem)
        return None

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

    def probability(
        self, columns: Mapping[str, Column], codes: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.float32]:
        """P(positive) per row; `columns` and `codes` as in validation.Batch. A coded input's
        column is never read (a batch builds its string columns only when read)."""
        if self._coded:
            by_feature = np.ascontiguousarray(codes.T, dtype=np.int64)  # [categorical, N]
            coded = {name: by_feature[index].reshape(-1, 1) for name, index in self._coded}
            feed = {name: coded[name] if name in coded else columns[name] for name in columns}
        else:
            feed = dict(columns)  # onnxruntime takes a dict
        if self._flat_inputs:
            feed = {
                name: (column.reshape(-1) if name in self._flat_inputs else column)
                for name, column in feed.items()
            }
        (result,) = self._run(self._outputs, feed, None)
        values = result if self._column is None else result[:, self._column]
        return np.ascontiguousarray(values, dtype=np.float32).reshape(-1)

    def score(self, batch: Batch, with_reasons: bool = True) -> Scored:
        probability = (
            self._bound.probability(batch.numeric, batch.codes)
            if batch.rows == 1 and self._bound is not None
            else None
        )
        if probability is None:
            probability = self.probability(batch.columns, batch.codes)
        return Scored(
            probability=probability,
            score=self.scale.score(probability),
            reasons=self.reason_table.reasons(batch.numeric, batch.codes) if with_reasons else None,
        )


def _session(model_bytes: bytes, where: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # fatal only: a failed run raises, and the request path logs it as one JSON line; at 3
    # (error) onnxruntime also prints its own coloured line to stderr
    options.log_severity_level = 4
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise BundleError(f"{where}: onnxruntime cannot load it ({exc})") from None


def category_codes(schema: Schema, columns: dict[str, Column]) -> npt.NDArray[np.intp]:
    """[N, categorical] positions of category strings in their schema lists, as the validator
    computes them for requests; -1 for a string the list lacks."""
    categorical = [f for f in schema.features if f.kind == "categorical"]
    rows = len(next(iter(columns.values()))) if columns else 0
    codes = np.empty((rows, len(categorical)), dtype=np.intp)
    for index, feature in enumerate(categorical):
        position = {c: i for i, c in enumerate(feature.categories or ())}
        codes[:, index] = [position.get(v, -1) for v in columns[feature.name].reshape(-1).tolist()]
    return codes


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
