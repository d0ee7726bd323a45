"""Reference C: Seldon MLServer with mlserver-sklearn serving the same model as a scikit-learn
pipeline. MLServer's pins conflict with KServe's, so it gets its own virtualenv under
./build/mlserver-venv, created on demand with pinned versions (scikit-learn pinned to the one in
.venv, so the pickled pipeline loads)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import sklearn

from creditmodel.core.bundle import Bundle

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / "build" / "mlserver-venv"
# uvloop < 0.22: MLServer 1.7.1's inference workers call asyncio.get_event_loop() in a fresh
# process, which uvloop 0.22 turned into an error.
PINS = (
    "mlserver==1.7.1",
    "mlserver-sklearn==1.7.1",
    f"scikit-learn=={sklearn.__version__}",
    "uvloop<0.22",
)


def ensure_venv(log: Path) -> Path:
    """The `mlserver` executable, installing it first if needed (a few minutes, once)."""
    executable = VENV / "bin" / "mlserver"
    stamp = VENV / ".pins"
    if executable.exists() and stamp.exists() and stamp.read_text() == "\n".join(PINS):
        return executable
    with log.open("ab") as out:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, stdout=out, stderr=out
        )
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "--quiet", *PINS],
            check=True, stdout=out, stderr=out, timeout=1800,
        )  # fmt: skip
    stamp.write_text("\n".join(PINS))
    return executable


def sklearn_pipeline(bundle: Bundle) -> Any:
    """Refit the bundle's scikit-learn pipeline (same data, features, hyper-parameters, seed)
    through the training library; the bundle itself only holds the ONNX export."""
    from creditmodel.training import cli, features, german_credit, model, reference_bundle

    args = cli.parser().parse_args(reference_bundle.arguments(REPO / "build" / "unused"))
    config = cli.config_from(args)
    prepared = features.prepare(german_credit.load(), config)
    chosen = bundle.manifest.lineage.params["model"]
    pipeline = model.mlp(
        prepared.schema,
        hidden_units=chosen["hidden_units"],
        alpha=chosen["alpha"],
        seed=bundle.manifest.lineage.seed,
        max_iter=chosen.get("epochs", 300),
        rows=len(prepared.labels),
    )
    return pipeline.fit(prepared.inputs, prepared.labels)


def write_model_repository(
    bundle: Bundle, root: Path, http_port: int, grpc_port: int, metrics_port: int
) -> Path:
    folder = root / "german-credit"
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(sklearn_pipeline(bundle), folder / "model.joblib")
    (folder / "model-settings.json").write_text(json.dumps({
        "name": "german-credit",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }))  # fmt: skip
    (root / "settings.json").write_text(json.dumps({
        "http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port,
    }))  # fmt: skip
    return root


def request_body(document: dict[str, Any]) -> dict[str, Any]:
    """Our V2 request in MLServer's pandas form: one column per input, strings marked as str,
    the positive-class probability asked for via predict_proba."""
    inputs = []
    for item in document["inputs"]:
        entry = {**item, "shape": [item["shape"][0]]}
        if item["datatype"] == "BYTES":
            entry["parameters"] = {"content_type": "str"}
        inputs.append(entry)
    return {
        "id": document.get("id", "bench"),
        "parameters": {"content_type": "pd"},
        "inputs": inputs,
        "outputs": [{"name": "predict_proba"}],
    }
