"""Real bundles for the predictor tests, trained through the training library API (small grid,
synthetic applicants): a champion and a challenger with the same inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from creditmodel.core.bundle import Bundle, load_bundle
from creditmodel.training import pipeline, synthetic
from creditmodel.training.config import TrainingConfig

MODEL = "demo"


@dataclass(frozen=True)
class TrainedBundle:
    uri: str
    bundle: Bundle
    applicants: pd.DataFrame  # held-out rows, feature columns only

    def rows(self, n: int, start: int = 0) -> dict[str, list[Any]]:
        """n applicants as V2 data lists per input (JSON-ready Python values)."""
        frame = self.applicants.iloc[start : start + n]
        result: dict[str, list[Any]] = {}
        for feature in self.bundle.schema.features:
            values = frame[feature.name].to_numpy()
            result[feature.name] = (
                [str(v) for v in values]
                if feature.kind == "categorical"
                else [float(v) if feature.datatype == "FP32" else int(v) for v in values]
            )
        return result

    def v2_inputs(self, n: int, start: int = 0) -> list[dict[str, Any]]:
        rows = self.rows(n, start)
        return [
            {"name": f.name, "datatype": f.datatype, "shape": [n, 1], "data": rows[f.name]}
            for f in self.bundle.schema.features
        ]

    def feed(self, n: int, start: int = 0) -> dict[str, np.ndarray]:
        """The same rows as a direct onnxruntime feed."""
        rows = self.rows(n, start)
        return {
            f.name: np.asarray(
                rows[f.name], dtype=object if f.kind == "categorical" else np.float32
            ).reshape(n, 1)
            for f in self.bundle.schema.features
        }


def _train(root: Path, version: str, seed: int) -> TrainedBundle:
    output = root / version
    config = TrainingConfig.quick(
        target=synthetic.TARGET,
        positive_label=synthetic.POSITIVE_LABEL,
        model_name=MODEL,
        version=version,
        output=str(output),
        seed=seed,
    )
    pipeline.train(config, synthetic.generate(2_000, seed=seed))
    bundle = load_bundle(str(output))
    names = [f.name for f in bundle.schema.features]
    applicants = synthetic.generate(3_000, seed=seed + 100)[names].reset_index(drop=True)
    return TrainedBundle(uri=str(output), bundle=bundle, applicants=applicants)


@pytest.fixture(scope="session")
def champion(tmp_path_factory: pytest.TempPathFactory) -> TrainedBundle:
    return _train(tmp_path_factory.mktemp("bundles"), "v1", seed=1)


@pytest.fixture(scope="session")
def challenger(tmp_path_factory: pytest.TempPathFactory) -> TrainedBundle:
    return _train(tmp_path_factory.mktemp("bundles"), "v2", seed=2)
