"""The cross-CPU check: a model runs natively and under qemu-user CPU models (AVX2 and SSE4.2
kernels), and the INT8 quantization the pipeline uses scores identically on all of them, while
the usual u8s8 quantization does not (the check must catch it, or it proves nothing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from creditmodel.training import cpu_parity, export, pipeline, synthetic
from tests.support.process import tool
from tests.training.conftest import quick_config

ROWS = 1_000
WIDTH = 16


def _qemu() -> None:
    tool(cpu_parity.QEMU)


def _dense_model() -> bytes:
    """x [N,16] -> MatMul (all weights positive and large) -> y [N,8]: with inputs calibrated to
    [0, 1], uint8 activations reach 255 and int8 weights 127, so u8s8 pair sums (2*255*127) pass
    the int16 limit that AVX2's vpmaddubsw saturates at."""
    rng = np.random.default_rng(7)
    weights = rng.uniform(0.5, 1.0, size=(WIDTH, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["probability"], name="dense")],
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, WIDTH])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor("w", TensorProto.FLOAT, [WIDTH, 8], weights.ravel().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _rows() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.uniform(0.0, 1.0, size=(ROWS, WIDTH)).astype(np.float32)
    x[: ROWS // 2] = np.maximum(x[: ROWS // 2], 0.95)  # many rows near the top of the range
    return {"x": x}


def _u8s8(model: bytes, feed: dict[str, np.ndarray], tmp_path: Path) -> bytes:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = iter([feed])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    source, target = tmp_path / "fp32.onnx", tmp_path / "u8s8.onnx"
    source.write_bytes(model)
    quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        extra_options={"WeightSymmetric": True},
    )
    return target.read_bytes()


@pytest.mark.unit
def test_native_kernels_reads_the_best_family_from_the_flags() -> None:
    assert cpu_parity.native_kernels("flags\t: fpu sse4_1 avx2 avx512bw avx512_vnni\n") == (
        "AVX-512 VNNI"
    )
    assert cpu_parity.native_kernels("flags\t: fpu sse4_1 avx2\n") == "AVX2"
    assert cpu_parity.native_kernels("processor: 0\n") == "unknown"


@pytest.mark.unit
def test_unknown_cpu_model_is_refused_before_anything_runs() -> None:
    with pytest.raises(cpu_parity.CpuParityError, match="unknown CPU model"):
        cpu_parity.check(b"", {}, "probability", ("Pentium",))


@pytest.mark.unit
def test_missing_qemu_is_an_error_that_says_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cpu_parity, "QEMU", "qemu-x86_64-that-does-not-exist")
    with pytest.raises(cpu_parity.CpuParityError, match="install qemu-user"):
        cpu_parity.check(b"", {}, "probability", ("Haswell",))


@pytest.mark.integration
def test_u8s8_quantization_differs_across_cpus_and_the_check_catches_it(tmp_path: Path) -> None:
    _qemu()
    feed = _rows()
    parity = cpu_parity.check(_u8s8(_dense_model(), feed, tmp_path), feed, "probability")
    # Saturating kernels (AVX2, AVX-512 core) and exact ones (VNNI, SSE4.1) are on opposite sides
    # of every host: whatever this CPU is, one emulated model disagrees with it.
    assert parity.max_abs_dp > 1e-3, parity.record()


@pytest.mark.integration
def test_the_pipeline_quantization_scores_identically_on_every_cpu() -> None:
    _qemu()
    feed = _rows()
    quantized = export.quantize(_dense_model(), feed, [])
    parity = cpu_parity.check(quantized, feed, "probability")
    assert [run.cpu_model for run in parity.runs] == ["Haswell", "Nehalem"]
    assert parity.max_abs_dp <= 1e-6, parity.record()


@pytest.mark.integration
def test_the_cpu_gate_runs_in_training_and_is_recorded(tmp_path: Path) -> None:
    _qemu()
    config = quick_config(tmp_path / "bundle", cpu_models=("Haswell", "Nehalem"))
    result = pipeline.train(config, synthetic.generate(1_500, seed=3))
    gate = next(g for g in result.gates if g.name == "int8_cpu_parity")
    assert gate.passed, gate
    assert gate.value is not None
    assert gate.value <= 1e-6
    assert "Haswell (AVX2, no AVX-512), Nehalem (SSE4.2, no AVX)" in gate.detail
    record = result.manifest.lineage.params["cpu_parity"]
    assert record["native_kernels"] == cpu_parity.native_kernels()
    assert {run["cpu_model"] for run in record["runs"]} == {"Haswell", "Nehalem"}
    card = result.files["model_card.md"].decode()
    assert "Other CPUs: the same probabilities" in card
    assert f"native {cpu_parity.native_kernels()}" not in card  # no build-host detail in the card


@pytest.mark.unit
def test_without_cpu_models_the_card_says_not_checked() -> None:
    config = quick_config(None)
    assert config.cpu_models == ()
    result = pipeline.train(config, synthetic.generate(800, seed=4))
    assert "int8_cpu_parity" not in {g.name for g in result.gates}
    assert "Other CPUs: not checked" in result.files["model_card.md"].decode()


@pytest.mark.unit
def test_a_check_that_cannot_run_fails_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_parity, "QEMU", "qemu-x86_64-that-does-not-exist")
    config = quick_config(None, cpu_models=("Nehalem",), enforce_gates=False)
    result = pipeline.train(config, synthetic.generate(800, seed=4))
    gate = next(g for g in result.gates if g.name == "int8_cpu_parity")
    assert not gate.passed
    assert "could not run" in gate.detail
    assert "qemu-user" in gate.detail


@pytest.mark.unit
def test_quantized_graph_keeps_uint8_weights() -> None:
    """The exactness argument rests on uint8 weights: fail loudly if someone switches back."""
    feed = _rows()
    quantized = onnx.load_from_string(export.quantize(_dense_model(), feed, []))
    weights = [t for t in quantized.graph.initializer if t.name.startswith("w")]
    quantized_weights = [t for t in weights if t.data_type in (TensorProto.UINT8, TensorProto.INT8)]
    assert quantized_weights
    assert all(t.data_type == TensorProto.UINT8 for t in quantized_weights)
