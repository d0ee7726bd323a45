"""The graph the predictor serves scores alike on every x86-64 CPU (coded_inputs.py): the
training gate checks the bundle's own graph under qemu; this checks the rewritten one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from creditmodel.core.bundle import load_bundle
from creditmodel.predictor import engine
from creditmodel.predictor.coded_inputs import coded_categoricals
from tests.support.process import tool

pytestmark = pytest.mark.integration

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "german-credit"


def test_the_coded_graph_scores_identically_on_every_cpu() -> None:
    """The graph the predictor serves, not only the bundle's: the reference bundle's INT8 model
    with codes, on German Credit's 1,000 applicants, natively and under qemu's AVX2 and SSE4.2
    CPU models, scores within the pipeline's own parity bound of the native run."""
    from creditmodel.training import cpu_parity, german_credit

    tool(cpu_parity.QEMU)
    bundle = load_bundle(str(BUNDLE))
    rewritten = coded_categoricals(bundle.files[engine.VARIANT_FILES["int8"]], bundle.schema)
    assert rewritten is not None
    frame = german_credit.load()
    feed: dict[str, Any] = {}
    for feature in bundle.schema.features:
        values = frame[feature.name].tolist()
        if feature.kind == "categorical":
            position = {c: i for i, c in enumerate(feature.categories or ())}
            feed[feature.name] = np.array([[position[str(v)]] for v in values], dtype=np.int64)
        else:
            feed[feature.name] = np.array(values, dtype=np.float32).reshape(-1, 1)
    parity = cpu_parity.check(rewritten[0], feed, "probability")
    assert [run.cpu_model for run in parity.runs] == ["Haswell", "Nehalem"]
    assert parity.max_abs_dp <= 1e-6, parity.record()
