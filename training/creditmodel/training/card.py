"""`model_card.md`: what a risk officer or model validator reads before approving a model.
Built only from the run's results (no clock, no host), so the same run gives the same card."""

from __future__ import annotations

from dataclasses import dataclass

from creditmodel.core.bundle import Gate, Lineage
from creditmodel.core.schema import Schema
from creditmodel.training.config import TrainingConfig
from creditmodel.training.evaluation import FairnessCheck, ReliabilityBin
from creditmodel.training.export import Int8Model
from creditmodel.training.model import SearchResult


@dataclass(frozen=True)
class CardInputs:
    config: TrainingConfig
    version: str
    schema: Schema
    lineage: Lineage
    search: SearchResult
    metrics: dict[str, float]
    reliability: list[ReliabilityBin]
    fairness: list[FairnessCheck]
    int8: Int8Model
    cpu_check: str
    gates: list[Gate]
    positive_rate: float


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def render(c: CardInputs) -> str:
    cfg, m, best = c.config, c.metrics, c.search.best
    lines = [
        f"# Model card: {cfg.model_name} {c.version}",
        "",
        "## Model",
        "",
        f"Probability that an applicant's credit outcome is `{c.schema.positive_label}` (target"
        f" `{c.schema.target}`). scikit-learn preprocessing (standard scaling of numeric features,"
        f" one-hot encoding of categorical ones) and an MLP with one hidden layer of"
        f" {best.hidden_units} ReLU units (L2 alpha {best.alpha:g}), chosen by {cfg.search.folds}-fold"
        " stratified cross-validation; exported to ONNX with the preprocessing in the graph.",
        "",
        "- `model.onnx`: fp32. `model.int8.onnx`: static INT8 (calibrated once, so a row scores the"
        " same alone or in any batch).",
        "- Inputs: one tensor per feature below, shape `[N,1]` (FP32 numeric, string/BYTES"
        " categorical). Output: `probability`, FP32 `[N]`.",
        f"- Points: {cfg.scoring.base_score:g} at {cfg.scoring.base_odds:g}:1 good:bad odds,"
        f" {cfg.scoring.points_to_double_odds:g} points to double the odds.",
        f"- Approval cut-off for the fairness audit: probability of default below {cfg.cutoff:g}.",
        "",
        "## Intended use",
        "",
        "Ranking retail credit applicants by risk and explaining adverse decisions with reason"
        " codes, with a human credit decision process around it. Not for applicants unlike the"
        " training population, and not as the sole basis of a decision.",
        "",
        "## Data",
        "",
        f"- Source: `{c.lineage.data_uri}` (sha256 `{c.lineage.data_sha256}`)",
        f"- Rows: {c.lineage.rows:,}; positive (`{c.schema.positive_label}`) rate {c.positive_rate:.1%}",
        f"- Cross-validation and baseline on {c.search.rows:,} rows"
        + (" (stratified sample)" if c.search.rows < c.lineage.rows else ""),
    ]
    if cfg.audit_only:
        lines.append(
            f"- Audit-only (used for the fairness audit, never as model inputs): {', '.join(cfg.audit_only)}"
        )
    if cfg.exclude:
        lines.append(f"- Excluded columns: {', '.join(cfg.exclude)}")
    lines += ["", "### Features", ""]
    lines += _table(
        ["code", "feature", "kind", "description", "valid values"],
        [
            [
                f.reason_code,
                f"`{f.name}`",
                f.kind,
                f.description,
                ", ".join(f.categories)
                if f.categories
                else f"[{'' if f.minimum is None else f'{f.minimum:g}'}, {'' if f.maximum is None else f'{f.maximum:g}'}]",
            ]
            for f in c.schema.features
        ],
    )
    lines += ["", "## Metrics", "", "Cross-validated AUC (same folds for every model):", ""]
    lines += _table(
        ["model", "CV AUC", "folds"],
        [
            [
                "logistic regression (baseline)",
                f"{c.search.baseline_cv_auc:.4f}",
                " ".join(f"{a:.3f}" for a in c.search.baseline_fold_aucs),
            ]
        ]
        + [
            [
                f"MLP {k.hidden_units} units, alpha {k.alpha:g}"
                + (" (chosen)" if k == best else ""),
                f"{k.cv_auc:.4f}",
                " ".join(f"{a:.3f}" for a in k.fold_aucs),
            ]
            for k in c.search.candidates
        ],
    )
    lines += [
        "",
        f"Out-of-fold Brier score {m['oof_brier']:.4f} (baseline LR {m['baseline_oof_brier']:.4f});"
        f" expected calibration error {m['oof_ece']:.4f}.",
        "",
        "### Reliability (out-of-fold)",
        "",
    ]
    lines += _table(
        ["predicted", "rows", "mean predicted", "observed"],
        [
            [
                f"{r.lower:.1f}-{r.upper:.1f}",
                str(r.rows),
                f"{r.mean_predicted:.3f}",
                f"{r.observed_rate:.3f}",
            ]
            for r in c.reliability
        ],
    )
    lines += [
        "",
        "### Export and quantization",
        "",
        "Measured on the evaluation rows, which the final model was fitted on: these AUCs are"
        " in-sample and only compare the three implementations; the cross-validated AUC above is"
        " the estimate of performance on new applicants.",
        "",
        f"- fp32 ONNX vs scikit-learn: max |dp| {m['onnx_max_abs_dp']:.2e}",
        f"- AUC fp32 {m['auc_fp32']:.4f}, INT8 {m['auc_int8']:.4f} (drop {m['int8_auc_drop']:.4f});"
        f" max |dp| INT8 vs fp32 {m['int8_max_abs_dp']:.4f}",
        f"- Quantized layers: {', '.join(c.int8.quantized_layers) or 'none'}",
        "- Layers kept in fp32 to stay within the parity bounds: "
        + (", ".join(c.int8.fp32_layers) if c.int8.fp32_layers else "none"),
        "- Arithmetic: uint8 activations x per-channel uint8 weights, which onnxruntime's integer"
        " kernels compute exactly on every x86-64 instruction set (AVX-512 VNNI, AVX-512, AVX2,"
        " SSE4.1), so the score does not depend on the node's CPU.",
        c.cpu_check,
        "",
        "## Fairness",
        "",
        f"Approval rate (probability of default < {cfg.cutoff:g}, out-of-fold) by group; the"
        f" ratio is lowest / highest over groups with at least {cfg.gates.fairness_min_group} rows"
        f" (four-fifths rule: gate at {cfg.gates.min_approval_ratio:g}).",
    ]
    if not c.fairness:
        lines += ["", "No age or sensitive attribute was found in the data; nothing audited."]
    for check in c.fairness:
        lines += ["", f"**{check.attribute}**: approval ratio {check.approval_ratio:.3f}", ""]
        lines += _table(
            ["group", "rows", "approval rate", "observed default rate"],
            [
                [
                    g.group + ("" if g.group in check.gated_groups else " (too small to gate)"),
                    str(g.rows),
                    f"{g.approval_rate:.3f}",
                    f"{g.default_rate:.3f}",
                ]
                for g in check.groups
            ],
        )
    lines += ["", "## Gates", ""]
    lines += _table(
        ["gate", "result", "value", "threshold", "detail"],
        [
            [
                g.name,
                "pass" if g.passed else "FAIL",
                "" if g.value is None else f"{g.value:.6g}",
                "" if g.threshold is None else f"{g.threshold:g}",
                g.detail,
            ]
            for g in c.gates
        ],
    )
    lines += [
        "",
        "## Limitations",
        "",
        "- Trained on historical decisions: any bias in who was granted credit, and so who could be"
        " observed to default, is in the labels.",
        "- Fairness is audited on approval rates only, on out-of-fold predictions; small groups"
        " are reported but not gated.",
        "- Probabilities are calibrated to the training population's default rate; re-calibrate"
        " before use on a population with a different base rate.",
        "- Monitor score and feature PSI against `reference.json`; retrain when it exceeds 0.25.",
        "",
        "## Lineage",
        "",
        f"- Data: `{c.lineage.data_uri}`, sha256 `{c.lineage.data_sha256}`, {c.lineage.rows:,} rows",
        f"- Seed: {c.lineage.seed}",
        # The code version (git commit) is in manifest.json only: the card, like the model
        # files, must not change when unrelated code is committed.
        "- Code version, library versions and every parameter: `manifest.json` (`lineage`).",
        "",
    ]
    return "\n".join(lines)
