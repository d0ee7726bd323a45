"""The training run, end to end: data -> validated inputs -> CV search -> ONNX fp32 + INT8 ->
gates -> bundle files -> atomic publish. The library API test fixtures and the CLI both call:

    from creditmodel.training import pipeline, synthetic
    from creditmodel.training.config import TrainingConfig

    config = TrainingConfig.quick(target="default", positive_label="1", model_name="demo",
                                  output=str(tmp_path / "bundle"))
    result = pipeline.train(config, synthetic.generate(2_000, seed=1))
    # result.uri is a published, verified bundle; result.manifest, result.files, ...

A failed gate raises `GateFailedError` (nothing published) unless `config.enforce_gates` is off,
in which case the bundle is published with the failed gates recorded in its manifest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from creditmodel.core import bundle
from creditmodel.core.bundle import Gate, Lineage, Manifest
from creditmodel.core.reference import Reference
from creditmodel.core.schema import Schema
from creditmodel.training import (
    card,
    cpu_parity,
    data,
    evaluation,
    export,
    features,
    model,
    references,
)
from creditmodel.training.config import TrainingConfig
from creditmodel.training.errors import BadInputError
from creditmodel.training.progress import Progress
from creditmodel.training.provenance import code_version, frame_sha256, library_versions

log = logging.getLogger(__name__)

# Parity and invariance are measured on at most this many rows (a seeded stratified sample).
EVALUATION_ROWS = 100_000
# The cross-CPU check scores this many of them natively and under each emulated CPU.
CPU_CHECK_ROWS = 5_000


@dataclass(frozen=True)
class TrainingResult:
    manifest: Manifest
    files: dict[str, bytes]
    schema: Schema
    reference: Reference
    # Where the bundle was published; None when the config has no output or a gate failed.
    uri: str | None

    @property
    def gates(self) -> list[Gate]:
        return list(self.manifest.gates)

    @property
    def passed(self) -> bool:
        return self.manifest.gates_passed

    def summary(self) -> dict[str, Any]:
        """The JSON document the CLI prints on stdout."""
        return {
            "model_name": self.manifest.model_name,
            "version": self.manifest.version,
            "published": self.uri is not None,
            "uri": self.uri,
            "gates_passed": self.passed,
            "gates": [g.model_dump() for g in self.manifest.gates],
            "metrics": dict(self.manifest.metrics),
            "files": {name: e.sha256 for name, e in self.manifest.files.items()},
            "data": {
                "uri": self.manifest.lineage.data_uri,
                "sha256": self.manifest.lineage.data_sha256,
                "rows": self.manifest.lineage.rows,
            },
        }


class GateFailedError(Exception):
    """The model was trained but failed a quality gate, so nothing was published (exit code 3)."""

    def __init__(self, result: TrainingResult) -> None:
        failed = [gate.name for gate in result.gates if not gate.passed]
        super().__init__(f"gates failed: {', '.join(failed)}; nothing was published")
        self.result = result


def _gate(
    name: str, passed: bool, value: float | None, threshold: float | None, detail: str
) -> Gate:
    return Gate(name=name, passed=bool(passed), value=value, threshold=threshold, detail=detail)


def _fairness_detail(check: evaluation.FairnessCheck, min_group: int) -> str:
    if len(check.gated_groups) >= 2:
        return f"approval-rate ratio over {', '.join(check.gated_groups)}"
    # One group or none is no comparison: say so rather than report a ratio of 1 over it.
    sizes = ", ".join(f"{g.group} ({g.rows})" for g in check.groups[:10])
    return f"not checked: fewer than two groups of >= {min_group} rows ({sizes})"


def build(
    config: TrainingConfig, frame: pd.DataFrame, data_uri: str, data_sha256: str
) -> tuple[Manifest, dict[str, bytes], Schema, Reference]:
    """Everything except publishing, from `frame` alone: no storage I/O (the caller reads the
    data and publishes), though it logs progress, reads the clock for lineage and runs the
    INT8 model under qemu CPU models for the cross-CPU gate."""
    started = time.perf_counter()
    prepared = features.prepare(frame, config)
    schema, inputs, labels = prepared.schema, prepared.inputs, prepared.labels
    log.info(
        "data: %d rows, %d features, positive rate %.3f",
        len(labels),
        len(schema.features),
        labels.mean(),
    )
    model.check_cv_rows(labels, config.search.folds)

    search = model.search(inputs, labels, schema, config.search, config.seed)
    log.info("search: best %s", search.best)
    final = model.fit_final(inputs, labels, schema, search.best, config.search, config.seed)
    fp32 = export.to_onnx(final, schema)

    eval_inputs, eval_labels = model.stratified_sample(inputs, labels, EVALUATION_ROWS, config.seed)
    eval_feed = export.feeds(schema, eval_inputs)
    sklearn_p = model.positive_probability(final, eval_inputs)
    fp32_p = export.predict(fp32, eval_feed)
    onnx_dp = float(np.max(np.abs(fp32_p.astype(np.float64) - sklearn_p)))

    calibration = export.feeds(
        schema, inputs.iloc[export.calibration_rows(len(inputs), config.seed)]
    )
    log.info("export: fp32 ONNX done; quantizing to INT8")
    int8 = export.quantize_within(
        fp32,
        calibration,
        eval_feed,
        eval_labels,
        config.gates.int8_max_auc_drop,
        config.gates.int8_max_abs_dp,
    )
    invariant = export.batch_invariant(int8.model, eval_feed)
    portable = _cpu_parity(config, int8.model, eval_feed)
    log.info(
        "export: onnx |dp| %.2e, int8 AUC drop %.4f, |dp| %.4f, batch-invariant %s",
        onnx_dp,
        int8.auc_drop,
        int8.max_abs_dp,
        invariant,
    )

    # Monitoring reference: what the served (INT8) model produces on the training population.
    all_feed = export.feeds(schema, inputs)
    served_p = export.predict(int8.model, all_feed)
    reference = references.build(
        schema, inputs, served_p, evaluation.points(served_p, config.scoring)
    )

    oof, oof_labels = search.oof_probability, search.labels
    table = evaluation.reliability(oof_labels, oof)
    audit_frame = pd.concat([inputs, prepared.audit], axis=1)
    audit_sample, _ = model.stratified_sample(
        audit_frame, labels, config.search.search_rows, config.seed
    )
    fairness = [
        evaluation.fairness(groups, oof_labels, oof, config.cutoff, config.gates.fairness_min_group)
        for groups in evaluation.audited_columns(audit_sample, config.audit_only).values()
    ]
    metrics = {
        "cv_auc_mlp": search.best.cv_auc,
        "cv_auc_baseline_lr": search.baseline_cv_auc,
        "oof_brier": evaluation.brier(oof_labels, oof),
        "baseline_oof_brier": evaluation.brier(oof_labels, search.baseline_oof_probability),
        "oof_ece": evaluation.expected_calibration_error(table),
        "auc_sklearn": float(roc_auc_score(eval_labels, sklearn_p)),
        "auc_fp32": float(roc_auc_score(eval_labels, fp32_p)),
        "auc_int8": float(roc_auc_score(eval_labels, fp32_p)) - int8.auc_drop,
        "onnx_max_abs_dp": onnx_dp,
        "int8_auc_drop": int8.auc_drop,
        "int8_max_abs_dp": int8.max_abs_dp,
        "rows": float(len(labels)),
        "positive_rate": float(labels.mean()),
    }
    g = config.gates
    margin = search.best.cv_auc - search.baseline_cv_auc
    gates = [
        _gate(
            "mlp_vs_baseline_auc",
            margin >= -g.auc_margin_vs_baseline,
            margin,
            -g.auc_margin_vs_baseline,
            f"CV AUC MLP {search.best.cv_auc:.4f} vs LR {search.baseline_cv_auc:.4f}",
        ),
        _gate(
            "onnx_parity",
            onnx_dp <= g.onnx_max_abs_dp,
            onnx_dp,
            g.onnx_max_abs_dp,
            "max |p_onnx - p_sklearn|",
        ),
        _gate(
            "int8_auc_drop",
            int8.auc_drop <= g.int8_max_auc_drop,
            int8.auc_drop,
            g.int8_max_auc_drop,
            "AUC fp32 - AUC int8",
        ),
        _gate(
            "int8_max_abs_dp",
            int8.max_abs_dp <= g.int8_max_abs_dp,
            int8.max_abs_dp,
            g.int8_max_abs_dp,
            "fp32 layers: " + (", ".join(int8.fp32_layers) or "none"),
        ),
        _gate(
            "int8_batch_invariance",
            invariant,
            None,
            None,
            f"first {min(export.INVARIANCE_ROWS, len(eval_labels))} rows bitwise equal alone and in one batch",
        ),
        *portable.gates,
        _gate(
            "calibration_brier",
            metrics["oof_brier"] <= g.max_brier,
            metrics["oof_brier"],
            g.max_brier,
            "out-of-fold Brier score",
        ),
    ]
    for check in fairness:
        gates.append(
            _gate(
                f"fairness_{check.attribute.split(' ')[0]}",
                check.approval_ratio >= g.min_approval_ratio,
                check.approval_ratio if len(check.gated_groups) >= 2 else None,
                g.min_approval_ratio,
                _fairness_detail(check, g.fairness_min_group),
            )
        )
    version = config.version or _default_version(data_sha256)
    lineage = Lineage(
        data_uri=data_uri,
        data_sha256=data_sha256,
        rows=len(labels),
        code_version=config.code_version or code_version(),
        seed=config.seed,
        params={
            "model": {
                "hidden_units": search.best.hidden_units,
                "alpha": search.best.alpha,
                "epochs": int(final.steps[-1][1].n_iter_),
            },
            "search": config.search.model_dump(),
            "gates": config.gates.model_dump(),
            "cutoff": config.cutoff,
            "scoring": config.scoring.model_dump(),
            "audit_only": list(config.audit_only),
            "exclude": list(config.exclude),
            "onnx": {
                "output": export.OUTPUT,
                "output_shape": "[N]",
                "inputs": "one [N,1] tensor per schema feature: float32 numeric, string categorical",
                "int8_fp32_layers": list(int8.fp32_layers),
                "int8_quantized_layers": list(int8.quantized_layers),
            },
            "cpu_parity": portable.record,
            # Byte-identical model files need the same versions of these, too.
            "libraries": library_versions(),
            "train_seconds": round(time.perf_counter() - started, 3),
        },
    )
    files = {
        bundle.MODEL_FP32: fp32,
        bundle.MODEL_INT8: int8.model,
        bundle.SCHEMA: (schema.model_dump_json(indent=2) + "\n").encode(),
        bundle.REFERENCE: (reference.model_dump_json(indent=2) + "\n").encode(),
    }
    files[bundle.MODEL_CARD] = card.render(
        card.CardInputs(
            config=config,
            version=version,
            schema=schema,
            lineage=lineage,
            search=search,
            metrics=metrics,
            reliability=table,
            fairness=fairness,
            int8=int8,
            cpu_check=portable.card_line,
            gates=gates,
            positive_rate=float(labels.mean()),
        )
    ).encode()
    manifest = Manifest(
        model_name=config.model_name,
        version=version,
        created_at=datetime.now(UTC).replace(microsecond=0),
        lineage=lineage,
        files={name: bundle.file_entry(content) for name, content in files.items()},
        metrics=metrics,
        gates=gates,
    )
    return manifest, files, schema, reference


@dataclass(frozen=True)
class _Portability:
    gates: tuple[Gate, ...]
    card_line: str
    record: dict[str, object] | None = None


def _cpu_parity(config: TrainingConfig, model: bytes, feed: dict[str, np.ndarray]) -> _Portability:
    """The `int8_cpu_parity` gate: the INT8 model natively vs under each qemu CPU model. The card
    line names only the emulated models (the same on every build machine); the gate's detail also
    names this machine's kernels."""
    if not config.cpu_models:
        return _Portability((), "- Other CPUs: not checked (no CPU models were requested).")
    rows = _slice_rows(feed, CPU_CHECK_ROWS)
    models = ", ".join(f"{name} ({cpu_parity.CPU_MODELS[name]})" for name in config.cpu_models)
    threshold = config.gates.cpu_max_abs_dp
    log.info("cross-CPU check: the INT8 model natively and under qemu %s", models)
    try:
        with Progress(log, "cross-CPU check"):
            parity = cpu_parity.check(model, rows, export.OUTPUT, tuple(config.cpu_models))
    except cpu_parity.CpuParityError as exc:
        log.error("cross-CPU check: %s", exc)
        gate = _gate("int8_cpu_parity", False, None, threshold, f"could not run: {exc}")
        return _Portability((gate,), f"- Other CPUs: the check under {models} could not run.")
    log.info("cross-CPU check: %s", parity.record())
    passed = parity.max_abs_dp <= threshold
    gate = _gate("int8_cpu_parity", passed, parity.max_abs_dp, threshold, parity.describe())
    verdict = "the same probabilities" if passed else "DIFFERENT probabilities"
    line = (
        f"- Other CPUs: {verdict} (max |dp| {'<=' if passed else '>'} {threshold:g}) natively and"
        f" under qemu-user CPU models {models}, on {parity.rows} evaluation rows."
    )
    return _Portability((gate,), line, parity.record())


def _slice_rows(feed: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {name: values[:n] for name, values in feed.items()}


def _default_version(data_sha256: str) -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{data_sha256[:12]}"


def train(config: TrainingConfig, frame: pd.DataFrame | None = None) -> TrainingResult:
    """Train, gate and (when `config.output` is set and every gate passes) publish a bundle.
    `frame` overrides `config.data`. Raises BadInputError, GateFailedError, StorageError or
    BundleError; nothing is published unless everything succeeded."""
    from creditmodel.core.storage import redact

    if frame is None:
        if not config.data:
            raise BadInputError("no data: pass a DataFrame or set config.data to a URI")
        declared = [f.name for f in config.features if f.kind == "categorical" or f.categories]
        dataset = data.load(config.data, categorical=declared, target=config.target)
        frame, data_uri, data_sha = dataset.frame, redact(config.data), dataset.sha256
    else:
        try:
            data_sha = frame_sha256(frame)
        except TypeError:  # unhashable cells (lists, dicts): no feature holds them anyway
            raise BadInputError(
                "the data frame holds lists or other unhashable values; a feature holds numbers"
                " or text"
            ) from None
        data_uri = redact(config.data or "memory://dataframe")
    if config.output:
        data.check_output(config.output)
    manifest, files, schema, reference = build(config, frame, data_uri, data_sha)
    result = TrainingResult(
        manifest=manifest, files=files, schema=schema, reference=reference, uri=None
    )
    if not result.passed and config.enforce_gates:
        raise GateFailedError(result)
    if config.output and (result.passed or not config.enforce_gates):
        bundle.publish_bundle(config.output, files, manifest)
        log.info(
            "published %s %s to %s", manifest.model_name, manifest.version, redact(config.output)
        )
        return TrainingResult(
            manifest=manifest, files=files, schema=schema, reference=reference, uri=config.output
        )
    return result
