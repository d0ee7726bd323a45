"""Categorical inputs as codes (coded_inputs.py, engine.VariantModel): the rewritten graph's
one-hot vectors equal the string graph's for every category of generated category lists, graphs
of any other shape keep their strings, and the engine serves the coded graph only when it scores
the probe rows exactly as the bundle's own graph does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from creditmodel.core.bundle import load_bundle
from creditmodel.core.schema import Feature, Schema
from creditmodel.predictor import engine
from creditmodel.predictor.coded_inputs import coded_categoricals
from creditmodel.predictor.engine import LoadedBundle, category_codes
from creditmodel.predictor.scoring import probe_plan
from creditmodel.predictor.validation import CategoryColumns, Tensor

pytestmark = pytest.mark.unit

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "german-credit"
_level = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8)


def _schema(categories: list[str]) -> Schema:
    return Schema(
        features=[
            Feature(name="colour", kind="categorical", datatype="BYTES", description="c",
                    reason_code="R01", categories=categories),
            Feature(name="size", kind="numeric", datatype="FP32", description="s",
                    reason_code="R02"),
        ],
        target="bad",
        positive_label="1",
    )  # fmt: skip


def _encoder_graph(encoder_categories: list[str], *, extra: str | None = None) -> bytes:
    """colour -> OneHotEncoder(zeros=1) -> onehot output; `extra` adds a second use of the
    string input: "identity" (another consumer), "output" (the input is a graph output) or
    "subgraph" (an If node anywhere)."""
    colour = helper.make_tensor_value_info("colour", TensorProto.STRING, [None, 1])
    size = helper.make_tensor_value_info("size", TensorProto.FLOAT, [None, 1])
    nodes = [
        helper.make_node("OneHotEncoder", ["colour"], ["hot"], domain="ai.onnx.ml",
                         cats_strings=encoder_categories, zeros=1),
        helper.make_node("Identity", ["size"], ["size_out"]),
    ]  # fmt: skip
    outputs = [
        helper.make_tensor_value_info("hot", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("size_out", TensorProto.FLOAT, None),
    ]
    if extra == "identity":
        nodes.append(helper.make_node("Identity", ["colour"], ["colour_copy"]))
        outputs.append(helper.make_tensor_value_info("colour_copy", TensorProto.STRING, None))
    elif extra == "output":
        outputs.append(colour)
    elif extra == "subgraph":
        branch = helper.make_graph(
            [helper.make_node("Identity", ["size"], ["branch_out"])], "branch", [],
            [helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, None)],
        )  # fmt: skip
        condition = helper.make_tensor("yes", TensorProto.BOOL, [], [True])
        nodes += [
            helper.make_node("Constant", [], ["condition"], value=condition),
            helper.make_node("If", ["condition"], ["chosen"], then_branch=branch,
                             else_branch=branch),
        ]  # fmt: skip
        outputs.append(helper.make_tensor_value_info("chosen", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "encoder", [colour, size], outputs)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _run(model: bytes, feed: dict[str, Any]) -> Any:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(["hot"], feed)[0]


@settings(max_examples=60, deadline=None)
@given(
    schema_levels=st.lists(_level, min_size=1, max_size=12, unique=True),
    data=st.data(),
)
def test_one_hot_vectors_are_the_string_graphs_for_every_category(
    schema_levels: list[str], data: st.DataObject
) -> None:
    """The encoder may list the schema's categories in any order, miss some (a category it
    never saw: all zeros) and list others the schema lacks (never firing)."""
    kept = data.draw(st.lists(st.sampled_from(schema_levels), unique=True))
    strangers = data.draw(
        st.lists(_level.filter(lambda v: v not in schema_levels), max_size=4, unique=True)
    )
    assume(kept or strangers)
    encoder_levels = data.draw(st.permutations(kept + strangers))
    model = _encoder_graph(encoder_levels)
    rewritten = coded_categoricals(model, _schema(schema_levels))
    assert rewritten is not None
    coded, names = rewritten
    assert names == {"colour"}
    size = np.zeros((len(schema_levels), 1), dtype=np.float32)
    strings = _run(model, {"colour": np.array(schema_levels, dtype=object).reshape(-1, 1),
                           "size": size})  # fmt: skip
    codes = np.arange(len(schema_levels), dtype=np.int64).reshape(-1, 1)
    assert np.array_equal(_run(coded, {"colour": codes, "size": size}), strings)


def test_categories_the_schema_lacks_get_distinct_codes_that_never_fire() -> None:
    model = onnx.load_from_string(
        coded_categoricals(_encoder_graph(["x", "b", "y", "a"]), _schema(["a", "b"]))[0]  # type: ignore[index]
    )
    (encoder,) = [n for n in model.graph.node if n.op_type == "OneHotEncoder"]
    (codes,) = [list(a.ints) for a in encoder.attribute if a.name == "cats_int64s"]
    assert codes == [-1, 1, -2, 0]
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.INT64


@pytest.mark.parametrize("extra", ["identity", "output", "subgraph"])
def test_other_uses_of_the_string_keep_it_a_string(extra: str) -> None:
    assert coded_categoricals(_encoder_graph(["a", "b"], extra=extra), _schema(["a", "b"])) is None


def test_the_reference_bundle_is_served_with_codes_and_the_same_probabilities() -> None:
    bundle = load_bundle(str(BUNDLE))
    loaded = LoadedBundle(bundle, max_rows=10)
    plan_rows = probe_plan(bundle.schema, bundle.reference)
    codes = category_codes(bundle.schema, plan_rows.columns)
    for variant, model in loaded.variants.items():
        assert model._coded, variant
        plain = ort.InferenceSession(bundle.files[engine.VARIANT_FILES[variant]])
        (expected,) = plain.run([model._output], plan_rows.columns)
        got = model.probability(plan_rows.columns, codes)
        assert got.tobytes() == np.asarray(expected, dtype=np.float32).reshape(-1).tobytes()


def test_a_coded_model_scores_a_batch_without_building_its_string_columns() -> None:
    bundle = load_bundle(str(BUNDLE))
    loaded = LoadedBundle(bundle, max_rows=10_000)
    plan_rows = probe_plan(bundle.schema, bundle.reference)
    features = bundle.schema.features
    rows = len(plan_rows.columns[features[0].name])
    given = [
        Tensor(f.name, f.datatype, [rows], plan_rows.columns[f.name].reshape(-1).tolist())
        for f in features
    ]
    categorical = {f.name for f in features if f.kind == "categorical"}
    for variant, model in loaded.variants.items():
        batch = loaded.validator.validate(given)
        assert isinstance(batch.columns, CategoryColumns)
        lazy = model.probability(batch.columns, batch.codes)
        assert batch.columns.unread == categorical, variant
        eager = model.probability(dict(batch.columns), batch.codes)  # every column built
        assert batch.columns.unread == frozenset()
        assert lazy.tobytes() == eager.tobytes(), variant


def test_a_rewrite_that_scores_differently_is_not_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's check, not the rewrite's correctness, decides: a rewrite whose codes are
    off by one keeps the string graph (and its answers)."""

    def shifted(model_bytes: bytes, schema: Schema) -> tuple[bytes, frozenset[str]] | None:
        result = coded_categoricals(model_bytes, schema)
        assert result is not None
        model = onnx.load_from_string(result[0])
        for node in model.graph.node:
            for attribute in node.attribute:
                if attribute.name == "cats_int64s":
                    attribute.ints[:] = [i + 1 for i in attribute.ints]
        return model.SerializeToString(), result[1]

    monkeypatch.setattr(engine, "coded_categoricals", shifted)
    bundle = load_bundle(str(BUNDLE))
    for model in LoadedBundle(bundle, max_rows=10).variants.values():
        assert model._coded == []
        assert {i.type for i in model.session.get_inputs()} >= {"tensor(string)"}


@pytest.mark.parametrize("broken", [b"not a model", b""])
def test_a_rewrite_onnxruntime_cannot_load_leaves_the_bundle_served_with_strings(
    monkeypatch: pytest.MonkeyPatch, broken: bytes
) -> None:
    monkeypatch.setattr(engine, "coded_categoricals", lambda *_: (broken, frozenset({"purpose"})))
    bundle = load_bundle(str(BUNDLE))
    for model in LoadedBundle(bundle, max_rows=10).variants.values():
        assert model._coded == []
        plan = probe_plan(bundle.schema, bundle.reference)
        assert model.probability(plan.columns, category_codes(bundle.schema, plan.columns)).size


def test_a_string_outside_the_category_list_has_no_code() -> None:
    schema = _schema(["a", "b"])
    columns = {"colour": np.array([["a"], ["zzz"]], dtype=object)}
    assert category_codes(schema, columns).tolist() == [[0], [-1]]
