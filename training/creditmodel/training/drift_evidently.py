"""The drift report's deeper view: an Evidently DataDrift report of the window against a
synthetic sample of the bundle's frozen reference (Evidently compares two datasets; the bundle
keeps bins, not rows)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from creditmodel.core.reference import NumericReference, Reference
from creditmodel.core.schema import Schema


def reference_sample(schema: Schema, reference: Reference, rows: int, seed: int) -> pd.DataFrame:
    """A synthetic sample of the frozen reference distribution for Evidently, which compares two
    datasets: categories by their frequencies; numbers uniform within each reference bin (outer bins
    bounded by the schema's valid range, else by one average bin width)."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for feature in schema.features:
        ref = reference.features[feature.name]
        if isinstance(ref, NumericReference):
            edges = np.asarray(ref.bins.edges, dtype=np.float64)
            width = float(np.mean(np.diff(edges))) if edges.size > 1 else 1.0
            low = (
                feature.minimum
                if feature.minimum is not None
                else (edges[0] if edges.size else 0.0) - width
            )
            high = (
                feature.maximum
                if feature.maximum is not None
                else (edges[-1] if edges.size else 0.0) + width
            )
            bounds = np.concatenate(
                [
                    [min(low, edges[0]) if edges.size else low],
                    edges,
                    [max(high, edges[-1]) if edges.size else high],
                ]
            )
            bins = rng.choice(
                len(ref.bins.fractions),
                size=rows,
                p=np.asarray(ref.bins.fractions) / sum(ref.bins.fractions),
            )
            data[feature.name] = rng.uniform(bounds[bins], bounds[bins + 1])
        else:
            categories = list(ref.frequencies)
            weights = np.asarray([ref.frequencies[c] for c in categories])
            data[feature.name] = rng.choice(categories, size=rows, p=weights / weights.sum())
    return pd.DataFrame(data)


def evidently_report(
    schema: Schema, reference: Reference, current: pd.DataFrame, sample: int, seed: int
) -> tuple[str, str, int, float, int]:
    """(html, json, drifted column count, drifted share, rows used) of an Evidently DataDrift report."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if len(current) > sample:
        current = current.sample(n=sample, random_state=seed)
    ref = reference_sample(schema, reference, max(len(current), 1_000), seed)
    definition = DataDefinition(
        numerical_columns=[f.name for f in schema.features if f.kind == "numeric"],
        categorical_columns=[f.name for f in schema.features if f.kind == "categorical"],
    )
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(current.reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    document = json.loads(snapshot.json())
    count = share = None
    for metric in document.get("metrics", []):
        if str(metric.get("metric_name", "")).startswith("DriftedColumnsCount"):
            count, share = metric["value"]["count"], metric["value"]["share"]
    html = snapshot.get_html_str(as_iframe=False)
    return html, json.dumps(document, indent=1), int(count or 0), float(share or 0.0), len(current)
