"""Hidden-unit equalization: the same function, balanced units, and the INT8 search that uses it
(export.quantize_within) on MLP graphs built here in the exporter's node layout."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from creditmodel.training import equalize, export

pytestmark = pytest.mark.unit


def mlp_graph(layers: list[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """x [N, inputs] -> (MatMul -> Add -> Relu)* -> MatMul -> Add -> Sigmoid -> probability [N],
    node for node as skl2onnx writes an MLPClassifier (the `cm_` names included)."""
    nodes, initializers = [], []
    current = "x"
    for index, (weight, bias) in enumerate(layers):
        suffix = "" if index == 0 else str(index)
        w, b = f"cm_coefficient{suffix}", f"cm_intercepts{suffix}"
        initializers += [
            numpy_helper.from_array(weight.astype(np.float32), w),
            numpy_helper.from_array(bias.astype(np.float32).reshape(1, -1), b),
        ]
        nodes += [
            helper.make_node("MatMul", [current, w], [f"mul{index}"], name=f"cm_MatMul{suffix}"),
            helper.make_node("Add", [f"mul{index}", b], [f"add{index}"], name=f"cm_Add{suffix}"),
        ]
        last = index == len(layers) - 1
        nodes.append(
            helper.make_node(
                "Sigmoid" if last else "Relu", [f"add{index}"], [f"act{index}"], name=f"act{index}"
            )
        )
        current = f"act{index}"
    initializers.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"))
    nodes.append(helper.make_node("Squeeze", [current, "axes"], [export.OUTPUT], name="squeeze"))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, layers[0][0].shape[0]])],
        [helper.make_tensor_value_info(export.OUTPUT, TensorProto.FLOAT, [None])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def run(model: bytes, x: np.ndarray, output: str = export.OUTPUT) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return np.asarray(session.run([output], {"x": x})[0], dtype=np.float64)


def hidden_max(model: bytes, tensor: str, x: np.ndarray) -> np.ndarray:
    return equalize._activation_max(onnx.load_from_string(model), tensor, {"x": x})


def weights(model: bytes) -> dict[str, np.ndarray]:
    return {
        t.name: numpy_helper.to_array(t).astype(np.float64)
        for t in onnx.load_from_string(model).graph.initializer
    }


@st.composite
def mlps(draw: st.DrawFn) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """1-2 hidden layers of 1-9 units whose sizes differ by up to 100x, and input rows."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    hidden = draw(st.lists(st.integers(1, 9), min_size=1, max_size=2))
    sizes = [draw(st.integers(1, 6)), *hidden]
    layers = []
    for fan_in, fan_out in zip(sizes, [*sizes[1:], 1], strict=True):
        spread = 10.0 ** rng.uniform(-1, 1, size=fan_out)  # units of very different sizes
        weight = rng.normal(size=(fan_in, fan_out)) * spread
        layers.append((weight, rng.normal(size=fan_out) * 0.5))
    return layers, rng.normal(size=(64, sizes[0])).astype(np.float32)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mlps())
def test_equalized_graph_computes_the_same_probability(
    case: tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray],
) -> None:
    layers, x = case
    model = mlp_graph(layers)
    found = equalize.hidden_layers(onnx.load_from_string(model))
    assert len(found) == len(layers) - 1  # every hidden layer, and only those
    balanced = equalize.equalized(model, {"x": x})
    np.testing.assert_allclose(run(balanced, x), run(model, x), rtol=0, atol=1e-5)
    # each unit of the last hidden layer that fires: its largest activation equals its largest
    # outgoing |weight| (both sqrt(a * w) of before). An earlier layer's outgoing weights are the
    # next layer's incoming ones, rescaled again when that layer is equalized.
    last = equalize.hidden_layers(onnx.load_from_string(balanced))[-1]
    peak = hidden_max(balanced, last.activations, x)
    outgoing = np.max(np.abs(weights(balanced)[last.weight_out]), axis=1)
    fired = peak > 1e-6
    np.testing.assert_allclose(peak[fired], outgoing[fired], rtol=1e-4)


def test_units_that_never_fire_or_feed_nothing_keep_their_scale() -> None:
    scales = equalize.unit_scales(
        np.array([4.0, 0.0, 2.0, np.inf]), np.array([[1.0], [3.0], [0.0], [1.0]])
    )
    assert scales.tolist() == [0.5, 1.0, 1.0, 1.0]


def test_graph_without_a_hidden_relu_layer_is_returned_unchanged() -> None:
    rng = np.random.default_rng(0)
    model = mlp_graph([(rng.normal(size=(3, 1)), np.zeros(1))])  # logistic regression
    x = rng.normal(size=(10, 3)).astype(np.float32)
    assert equalize.hidden_layers(onnx.load_from_string(model)) == []
    assert onnx.load_from_string(equalize.equalized(model, {"x": x})) == onnx.load_from_string(
        model
    )


def lopsided() -> tuple[bytes, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Two hidden units: one spans [0, 50] and feeds the output through a weight of 0.02, the
    other spans [0, 1] through a weight of 2. Quantized as trained, the narrow unit gets a
    fiftieth of the activation levels; equalized, both span about [0, 1.4]."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, size=(4_000, 2)).astype(np.float32)
    model = mlp_graph(
        [
            (np.array([[50.0, 0.0], [0.0, 1.0]]), np.zeros(2)),
            (np.array([[0.02], [2.0]]), np.array([-1.5])),
        ]
    )
    p = run(model, x)
    labels = (rng.uniform(size=len(p)) < p).astype(int)
    return model, {"x": x[:2_000]}, {"x": x[2_000:]}, labels[2_000:]


def test_quantize_within_equalizes_when_the_model_as_trained_breaks_the_bound() -> None:
    model, calibration, evaluation, labels = lopsided()
    as_trained = export.predict(export.quantize(model, calibration, []), evaluation)
    reference = export.predict(model, evaluation)
    plain_dp = float(np.max(np.abs(as_trained - reference)))
    bound = 0.01
    assert plain_dp > 2 * bound  # the premise: the model as trained breaks it
    result = export.quantize_within(model, calibration, evaluation, labels, 0.01, bound)
    assert result.equalized
    assert result.fp32_layers == ()  # every layer still INT8
    assert result.max_abs_dp <= bound
    served = export.predict(result.model, evaluation)
    assert float(np.max(np.abs(served - reference))) == pytest.approx(result.max_abs_dp)


def test_quantize_within_leaves_a_model_that_passes_as_it_is() -> None:
    model, calibration, evaluation, labels = lopsided()
    result = export.quantize_within(model, calibration, evaluation, labels, 1.0, 1.0)
    assert not result.equalized
    assert result.model == export.quantize(model, calibration, [])
