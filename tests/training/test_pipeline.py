"""The library API end to end on synthetic data: a real bundle that the shared reader accepts,
whose models honour the inference contract, byte-identical on a rebuild."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from creditmodel.core import bundle
from creditmodel.training import export, pipeline, synthetic
from tests.training.conftest import quick_config

pytestmark = pytest.mark.unit


def test_published_bundle_loads_and_verifies(synthetic_bundle: pipeline.TrainingResult) -> None:
    assert synthetic_bundle.uri is not None
    loaded = bundle.load_bundle(synthetic_bundle.uri)
    assert loaded.manifest == synthetic_bundle.manifest
    assert set(loaded.files) == set(bundle.REQUIRED_FILES)
    assert [f.name for f in loaded.schema.features] == [
        c for c in synthetic.generate(1).columns if c != synthetic.TARGET
    ]
    assert loaded.manifest.gates_passed
    assert loaded.manifest.lineage.params["onnx"]["output"] == "probability"


def test_models_take_one_named_input_per_feature_and_output_probability(
    synthetic_bundle: pipeline.TrainingResult,
) -> None:
    schema = synthetic_bundle.schema
    for name in (bundle.MODEL_FP32, bundle.MODEL_INT8):
        session = ort.InferenceSession(synthetic_bundle.files[name])
        inputs = {i.name: i for i in session.get_inputs()}
        assert list(inputs) == [f.name for f in schema.features]
        for feature in schema.features:
            expected = "tensor(float)" if feature.kind == "numeric" else "tensor(string)"
            assert inputs[feature.name].type == expected
            assert inputs[feature.name].shape[1] == 1
        (output,) = session.get_outputs()
        assert (output.name, output.type, len(output.shape)) == ("probability", "tensor(float)", 1)


def test_int8_scores_rows_identically_alone_and_in_a_batch_of_1000(
    synthetic_bundle: pipeline.TrainingResult,
) -> None:
    frame = synthetic.generate(1_000, seed=99, drift=0.5)
    feed = export.feeds(synthetic_bundle.schema, frame.astype({"age": float}))
    session = ort.InferenceSession(synthetic_bundle.files[bundle.MODEL_INT8])
    batch = session.run(["probability"], feed)[0]
    alone = np.concatenate(
        [
            session.run(["probability"], {k: v[i : i + 1] for k, v in feed.items()})[0]
            for i in range(1_000)
        ]
    )
    assert batch.shape == (1_000,)
    assert np.array_equal(batch.view(np.uint32), alone.view(np.uint32))
    assert batch.min() > 0.0
    assert batch.max() < 1.0


def test_same_data_seed_and_code_give_byte_identical_files(
    tmp_path: Path, synthetic_bundle: pipeline.TrainingResult
) -> None:
    again = pipeline.train(quick_config(tmp_path / "again"), synthetic.generate(2_000, seed=1))
    for name in (
        bundle.MODEL_FP32,
        bundle.MODEL_INT8,
        bundle.SCHEMA,
        bundle.REFERENCE,
        bundle.MODEL_CARD,
    ):
        assert again.files[name] == synthetic_bundle.files[name], name


def test_another_seed_gives_another_model(
    tmp_path: Path, synthetic_bundle: pipeline.TrainingResult
) -> None:
    other = pipeline.train(quick_config(None, seed=2), synthetic.generate(2_000, seed=1))
    assert other.files[bundle.MODEL_FP32] != synthetic_bundle.files[bundle.MODEL_FP32]
    assert other.uri is None


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_bytes_do_not_depend_on_the_string_hash_seed(
    tmp_path: Path, synthetic_bundle: pipeline.TrainingResult, hash_seed: str
) -> None:
    """skl2onnx builds parts of the graph from sets; another PYTHONHASHSEED must not reorder them."""
    script = (
        "import sys; from creditmodel.training import pipeline, synthetic;"
        "from tests.training.conftest import quick_config;"
        "r = pipeline.train(quick_config(None), synthetic.generate(2_000, seed=1));"
        "sys.stdout.buffer.write(r.files['model.onnx'] + b'@@SPLIT@@' + r.files['model.int8.onnx'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        check=True,
        timeout=300,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    fp32, int8 = out.split(b"@@SPLIT@@")
    for model in (fp32, int8):
        domains = [o.domain for o in onnx.load_from_string(model).opset_import]
        assert domains == sorted(domains)
    assert fp32 == synthetic_bundle.files[bundle.MODEL_FP32]
    assert int8 == synthetic_bundle.files[bundle.MODEL_INT8]


def test_a_fairness_audit_over_one_group_says_not_checked() -> None:
    """One group of enough rows is no comparison: the gate reported a ratio of 1 over it."""
    frame = synthetic.generate(600, seed=4).assign(nationality="x")
    result = pipeline.train(quick_config(None, audit_only=["nationality"]), frame)
    gate = next(g for g in result.manifest.gates if g.name == "fairness_nationality")
    assert (gate.passed, gate.value) == (True, None)
    assert gate.detail == "not checked: fewer than two groups of >= 30 rows (x (600))"
    age = next(g for g in result.manifest.gates if g.name == "fairness_age")
    assert age.value is not None
    assert age.detail.startswith("approval-rate ratio over ")
