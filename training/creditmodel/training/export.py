"""scikit-learn pipeline -> ONNX (fp32) -> static INT8, with the checks the gates need.

The exported graph takes one tensor per schema feature (FP32 `[N,1]` for numeric, string `[N,1]`
for categorical, the V2 BYTES datatype), does the scaling and one-hot encoding itself and has a
single output, `probability` (FP32 `[N]`, probability of the positive class). The INT8 model is
quantized statically (MinMax ranges calibrated once on training rows, so the scales are constants
of the graph and a row scores bit-for-bit the same alone or in any batch) with integer arithmetic
that is exact on every x86-64 kernel family (see `quantize`). When the parity bounds break, the
hidden units are equalized first (equalize.py), and layers whose quantization would still break
them stay in fp32 (`Int8Model.fp32_layers`).

Byte-identical output for identical inputs: fixed graph name and producer fields, no timestamps,
calibration on a deterministic row order.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper
from sklearn.pipeline import Pipeline

from creditmodel.core.schema import Schema

log = logging.getLogger(__name__)

OUTPUT = "probability"
PRODUCER = "creditmodel-training"
# Bumped by hand when the graph layout changes; never derived from git, so that the reference
# bundle's hashes only move when the model really changes.
GRAPH_VERSION = "1"
CALIBRATION_ROWS = 5_000
INVARIANCE_ROWS = 1_000


def feeds(schema: Schema, inputs: pd.DataFrame) -> dict[str, np.ndarray]:
    """The ONNX Runtime feed for `inputs`: one `[N,1]` array per feature."""
    out: dict[str, np.ndarray] = {}
    for feature in schema.features:
        column = inputs[feature.name]
        if feature.kind == "numeric":
            out[feature.name] = column.to_numpy(dtype=np.float32).reshape(-1, 1)
        else:
            out[feature.name] = column.astype(str).to_numpy(dtype=object).reshape(-1, 1)
    return out


def _normalise(model: onnx.ModelProto, variant: str) -> bytes:
    model.producer_name = PRODUCER
    model.producer_version = GRAPH_VERSION
    model.domain = "dev.creditmodel"
    model.model_version = 1
    model.doc_string = ""
    model.graph.name = "creditmodel"
    model.graph.doc_string = ""
    # skl2onnx collects opset imports in a set: their order follows the process's string-hash
    # seed, and so would the bytes. Sorted, they do not.
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, version in opsets:
        model.opset_import.add(domain=domain, version=version)
    del model.metadata_props[:]
    for key, value in (("creditmodel.output", OUTPUT), ("creditmodel.variant", variant)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    serialized: bytes = model.SerializeToString(deterministic=True)
    return serialized


def _single_probability_output(model: onnx.ModelProto) -> None:
    """Replace skl2onnx's `label` and `[N,2]` `probabilities` outputs by `probability` `[N]`
    (column 1 = the positive class) and drop the nodes only the label needed."""
    graph = model.graph
    graph.initializer.extend(
        [
            helper.make_tensor("positive_column_start", TensorProto.INT64, [1], [1]),
            helper.make_tensor("positive_column_end", TensorProto.INT64, [1], [2]),
            helper.make_tensor("class_axis", TensorProto.INT64, [1], [1]),
        ]
    )
    graph.node.extend(
        [
            helper.make_node(
                "Slice",
                ["probabilities", "positive_column_start", "positive_column_end", "class_axis"],
                ["positive_column"],
                name="positive_column",
            ),
            helper.make_node("Squeeze", ["positive_column", "class_axis"], [OUTPUT], name=OUTPUT),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None]))
    needed = {OUTPUT}
    kept = []
    for node in reversed(list(graph.node)):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def to_onnx(pipeline: Pipeline, schema: Schema) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial_types = [
        (
            f.name,
            FloatTensorType([None, 1]) if f.kind == "numeric" else StringTensorType([None, 1]),
        )
        for f in schema.features
    ]
    model = convert_sklearn(
        pipeline,
        initial_types=initial_types,
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        naming="cm_",
    )
    _single_probability_output(model)
    return _normalise(model, "fp32")


def session(model: bytes) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def predict(model: bytes | object, feed: dict[str, np.ndarray]) -> np.ndarray:
    runner = session(model) if isinstance(model, bytes) else model
    return np.asarray(runner.run([OUTPUT], feed)[0], dtype=np.float32)  # type: ignore[attr-defined]


def _slice(feed: dict[str, np.ndarray], rows: np.ndarray | slice) -> dict[str, np.ndarray]:
    return {name: values[rows] for name, values in feed.items()}


def calibration_rows(n: int, seed: int) -> np.ndarray:
    """A fixed, seeded choice of training rows for calibration, in ascending order."""
    if n <= CALIBRATION_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, CALIBRATION_ROWS, replace=False))


def batch_invariant(model: bytes, feed: dict[str, np.ndarray]) -> bool:
    """True when every one of the first rows scores bit-for-bit the same alone as in one batch."""
    runner = session(model)
    n = min(INVARIANCE_ROWS, len(next(iter(feed.values()))))
    batch = predict(runner, _slice(feed, slice(0, n)))
    alone = np.concatenate([predict(runner, _slice(feed, slice(i, i + 1))) for i in range(n)])
    return bool(np.array_equal(batch.view(np.uint32), alone.view(np.uint32)))


def matmul_layers(model: bytes) -> list[str]:
    return [
        node.name for node in onnx.load_from_string(model).graph.node if node.op_type == "MatMul"
    ]


def quantize(model: bytes, calibration: dict[str, np.ndarray], fp32_layers: list[str]) -> bytes:
    """Static INT8 (QOperator format: QLinearMatMul, integer accumulation) of every MatMul except
    `fp32_layers`; per-channel asymmetric uint8 weights, uint8 activations, MinMax calibration.

    uint8 x uint8, not the usual uint8 x int8: onnxruntime's u8s8 kernels on AVX2 and AVX-512 core
    add pairs of products into int16 with saturation (vpmaddubsw) and its VNNI kernel does not, so
    a u8s8 model scores differently on different CPUs (0.049 in probability on German Credit). The
    u8u8 kernels widen to int16 before multiplying on every instruction set: exact everywhere, at
    full 8-bit weight precision (7-bit reduced-range int8 weights are exact too, but coarser)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            n = len(next(iter(calibration.values())))
            self._batches: Iterator[dict[str, np.ndarray]] = (
                _slice(calibration, slice(i, i + 500)) for i in range(0, n, 500)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" advice is noise here
    try:
        with tempfile.TemporaryDirectory(prefix="creditmodel-quant-") as tmp:
            source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            source.write_bytes(model)
            quantize_static(
                str(source),
                str(target),
                Reader(),
                quant_format=QuantFormat.QOperator,
                op_types_to_quantize=["MatMul"],
                nodes_to_exclude=list(fp32_layers),
                per_channel=True,
                weight_type=QuantType.QUInt8,
                activation_type=QuantType.QUInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"WeightSymmetric": False, "ActivationSymmetric": False},
            )
            quantized = onnx.load(str(target))
    finally:
        quiet.setLevel(level)
    return _normalise(quantized, "int8")


@dataclass(frozen=True)
class Int8Model:
    model: bytes
    fp32_layers: tuple[str, ...]
    quantized_layers: tuple[str, ...]
    auc_drop: float
    max_abs_dp: float
    equalized: bool = False  # quantized from equalize.equalized(model), not the model as trained


def quantize_within(
    model: bytes,
    calibration: dict[str, np.ndarray],
    evaluation: dict[str, np.ndarray],
    labels: np.ndarray,
    max_auc_drop: float,
    max_abs_dp: float,
) -> Int8Model:
    """Quantize every MatMul of the model as trained. While the parity bounds are broken, try
    the same with its hidden units equalized (equalize.py), then return to fp32 the one layer
    whose exclusion, from either graph, helps most. Ends with the last attempt (possibly all
    layers but one in fp32). Parity is always measured against `model` as trained; a model that
    passes at once is quantized exactly as before, equalization never tried."""
    from sklearn.metrics import roc_auc_score

    from creditmodel.training.equalize import equalized

    reference = predict(model, evaluation)
    reference_auc = float(roc_auc_score(labels, reference))
    layers = matmul_layers(model)
    excluded: list[str] = []

    def attempt(source: bytes, fp32_layers: list[str]) -> Int8Model:
        quantized = quantize(source, calibration, fp32_layers)
        scores = predict(quantized, evaluation)
        return Int8Model(
            model=quantized,
            fp32_layers=tuple(fp32_layers),
            quantized_layers=tuple(name for name in layers if name not in fp32_layers),
            auc_drop=reference_auc - float(roc_auc_score(labels, scores)),
            max_abs_dp=float(np.max(np.abs(scores.astype(np.float64) - reference))),
            equalized=source is not model,
        )

    def within(result: Int8Model) -> bool:
        return result.auc_drop <= max_auc_drop and result.max_abs_dp <= max_abs_dp

    def best(options: list[Int8Model]) -> Int8Model:
        return min(options, key=lambda r: (not within(r), r.max_abs_dp))

    current = attempt(model, excluded)
    if within(current):
        return current
    sources = [model]
    balanced = equalized(model, calibration)
    if balanced != model:
        sources.append(balanced)
        tried = attempt(balanced, excluded)
        log.info("INT8: hidden units equalized (max |dp| %.4f)", tried.max_abs_dp)
        current = best([current, tried])
    while not within(current) and len(excluded) < len(layers) - 1:
        options = [
            attempt(source, [*excluded, name])
            for source in sources
            for name in layers
            if name not in excluded
        ]
        current = best(options)
        excluded = list(current.fp32_layers)
        log.info(
            "INT8: keeping %s in fp32%s (max |dp| %.4f)",
            excluded,
            ", hidden units equalized" if current.equalized else "",
            current.max_abs_dp,
        )
    return current
