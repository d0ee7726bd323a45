"""Bundles trained on the fly (the real pipeline, small grid) for the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from creditmodel.training import pipeline, synthetic
from creditmodel.training.config import TrainingConfig


@pytest.fixture(scope="session")
def synthetic_bundle(tmp_path_factory: pytest.TempPathFactory) -> pipeline.TrainingResult:
    output = tmp_path_factory.mktemp("bundle") / "demo"
    config = TrainingConfig.quick(
        target=synthetic.TARGET,
        positive_label=synthetic.POSITIVE_LABEL,
        model_name="demo",
        version="v1",
        output=str(output),
    )
    return pipeline.train(config, synthetic.generate(2_000, seed=1))


def quick_config(output: Path | None, **overrides: object) -> TrainingConfig:
    values: dict[str, object] = {
        "target": synthetic.TARGET,
        "positive_label": synthetic.POSITIVE_LABEL,
        "model_name": "demo",
        "version": "v1",
        "output": None if output is None else str(output),
    }
    values.update(overrides)
    return TrainingConfig.quick(**values)
