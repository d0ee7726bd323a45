"""The bound single-row run (bound_run.py): for generated schemas (FP32 and INT64 inputs, [N]
and [N, 1] graph inputs, a `probability` [N] or a [N, 2] output) every row run alone through
the bound buffers scores bit for bit as the dict path does for the whole batch; a graph it cannot
serve, a run that finds the buffers in use, or a bound run that scores differently leaves the
dict path in charge."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from creditmodel.core.bundle import load_bundle
from creditmodel.core.schema import Feature, Schema
from creditmodel.predictor import bound_run
from creditmodel.predictor.bound_run import BoundRun
from creditmodel.predictor.engine import LoadedBundle
from creditmodel.predictor.validation import Tensor
from tests.predictor.conftest import TrainedBundle

pytestmark = pytest.mark.unit

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "german-credit"


def _graph(datatypes: list[str], flat: list[bool], weights: list[float], pair: bool) -> bytes:
    """Inputs x0..xk (FP32 or INT64, shape [N] or [N, 1]) -> float -> [N, k] -> weighted sum
    -> sigmoid: `probability` [N], or `probabilities` [N, 2] (1 - p, p) as skl2onnx writes."""
    nodes, inputs, columns = [], [], []
    for i, (datatype, one_d) in enumerate(zip(datatypes, flat, strict=True)):
        kind = TensorProto.FLOAT if datatype == "FP32" else TensorProto.INT64
        inputs.append(helper.make_tensor_value_info(f"x{i}", kind, [None] if one_d else [None, 1]))
        nodes.append(helper.make_node("Cast", [f"x{i}"], [f"f{i}"], to=TensorProto.FLOAT))
        if one_d:
            nodes.append(helper.make_node("Unsqueeze", [f"f{i}", "axis1"], [f"c{i}"]))
        else:
            nodes.append(helper.make_node("Identity", [f"f{i}"], [f"c{i}"]))
        columns.append(f"c{i}")
    nodes += [
        helper.make_node("Concat", columns, ["x"], axis=1),
        helper.make_node("MatMul", ["x", "w"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p2d"]),
    ]
    initializers = [
        helper.make_tensor("w", TensorProto.FLOAT, [len(weights), 1], weights),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("flat", TensorProto.INT64, [1], [-1]),
    ]
    if pair:
        nodes += [
            helper.make_node("Sub", ["one", "p2d"], ["q2d"]),
            helper.make_node("Concat", ["q2d", "p2d"], ["probabilities"], axis=1),
        ]
        output = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])
    else:
        nodes.append(helper.make_node("Reshape", ["p2d", "flat"], ["probability"]))
        output = helper.make_tensor_value_info("probability", TensorProto.FLOAT, [None])
    graph = helper.make_graph(nodes, "g", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


def _schema(datatypes: list[str]) -> Schema:
    return Schema(
        features=[
            Feature(name=f"x{i}", kind="numeric", datatype=datatype, description=f"x{i}",
                    reason_code=f"R{i:02d}", minimum=-1000, maximum=1000)
            for i, datatype in enumerate(datatypes)
        ],
        target="bad",
        positive_label="1",
    )  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    size=st.integers(1, 6),
    pair=st.booleans(),
    rows=st.integers(1, 30),
)
def test_every_row_alone_scores_as_the_batch_for_generated_schemas(
    data: st.DataObject, size: int, pair: bool, rows: int
) -> None:
    datatypes = data.draw(
        st.lists(st.sampled_from(["FP32", "INT64"]), min_size=size, max_size=size)
    )
    flat = data.draw(st.lists(st.booleans(), min_size=size, max_size=size))
    weights = data.draw(st.lists(st.floats(-0.01, 0.01), min_size=size, max_size=size))
    session = ort.InferenceSession(_graph(datatypes, flat, weights, pair))
    schema = _schema(datatypes)
    numeric = np.empty((rows, size))
    feed = {}
    for i, datatype in enumerate(datatypes):
        if datatype == "FP32":
            values = data.draw(
                st.lists(
                    st.floats(-1000, 1000, width=32, allow_subnormal=False),
                    min_size=rows,
                    max_size=rows,
                )
            )
            column = np.asarray(values, dtype=np.float32)
        else:
            values = data.draw(st.lists(st.integers(-1000, 1000), min_size=rows, max_size=rows))
            column = np.asarray(values, dtype=np.int64)
        numeric[:, i] = column.astype(np.float64)  # what validation.Batch.numeric holds
        feed[f"x{i}"] = column if flat[i] else column.reshape(-1, 1)
    output = "probabilities" if pair else "probability"
    (result,) = session.run([output], feed)
    batch = np.ascontiguousarray(result[:, 1] if pair else result, dtype=np.float32)
    assert BoundRun.servable(session, schema, [])
    flat_names = {f"x{i}" for i, one_d in enumerate(flat) if one_d}
    bound = BoundRun(session, schema, [], flat_names, output, 2 if pair else None)
    codes = np.empty((rows, 0), dtype=np.intp)
    assert bound.verified(numeric, codes, batch)
    for row in range(rows):
        alone = bound.probability(numeric[row : row + 1], codes[row : row + 1])
        assert alone is not None
        assert alone.tobytes() == batch[row : row + 1].tobytes()


def test_the_reference_bundle_scores_single_rows_through_the_bound_run() -> None:
    loaded = LoadedBundle(load_bundle(str(BUNDLE)), max_rows=5_000)
    for variant in loaded.variants.values():
        assert variant._bound is not None, variant.variant  # the fast path is really taken


def test_single_rows_score_as_their_batch_and_fall_back_while_the_buffers_are_in_use(
    champion: TrainedBundle,
) -> None:
    loaded = LoadedBundle(champion.bundle, max_rows=5_000)
    tensors = [
        Tensor(i["name"], i["datatype"], i["shape"], i["data"]) for i in champion.v2_inputs(200)
    ]
    batch = loaded.validator.validate(tensors)
    for variant in loaded.variants.values():
        bound = variant._bound
        assert bound is not None
        together = variant.score(batch, with_reasons=False).probability
        for row in range(batch.rows):
            one = loaded.validator.validate(
                [Tensor(t.name, t.datatype, [1, 1], t.data[row : row + 1]) for t in tensors]
            )
            assert variant.score(one).probability.tobytes() == together[row : row + 1].tobytes()
        held = threading.Event()
        release = threading.Event()

        def hold(
            bound: BoundRun = bound,
            held: threading.Event = held,
            release: threading.Event = release,
        ) -> None:
            with bound._lock:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(10)
        first = loaded.validator.validate(
            [Tensor(t.name, t.datatype, [1, 1], t.data[:1]) for t in tensors]
        )
        assert bound.probability(first.numeric, first.codes) is None
        assert variant.score(first).probability.tobytes() == together[:1].tobytes()
        release.set()
        holder.join()


def test_a_bound_run_that_scores_differently_is_not_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = BoundRun.probability

    def shifted(self: BoundRun, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray | None:
        got = real(self, numeric, codes)
        return None if got is None else np.nextafter(got, np.float32(1))

    monkeypatch.setattr(bound_run.BoundRun, "probability", shifted)
    loaded = LoadedBundle(load_bundle(str(BUNDLE)), max_rows=5_000)
    assert all(variant._bound is None for variant in loaded.variants.values())


def test_a_graph_with_string_inputs_is_not_servable() -> None:
    text = helper.make_tensor_value_info("colour", TensorProto.STRING, [None, 1])
    out = helper.make_tensor_value_info("colour_out", TensorProto.STRING, [None, 1])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["colour"], ["colour_out"])], "g", [text], [out]
    )
    session = ort.InferenceSession(
        helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8
        ).SerializeToString()
    )
    schema = Schema(
        features=[Feature(name="colour", kind="categorical", datatype="BYTES", description="c",
                          reason_code="R01", categories=["red", "blue"])],
        target="bad",
        positive_label="1",
    )  # fmt: skip
    assert not BoundRun.servable(session, schema, [])
