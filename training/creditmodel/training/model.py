"""The scikit-learn models: in-pipeline preprocessing (scaling, one-hot) + MLP champion, and a
logistic-regression baseline, compared by stratified K-fold CV on the same folds.

Single-threaded BLAS while fitting: the fitted weights, and so the model files, then do not depend
on how many cores the machine has.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from joblib.externals.loky import get_reusable_executor
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from creditmodel.core.schema import Schema
from creditmodel.training.config import SearchSpace
from creditmodel.training.errors import BadInputError
from creditmodel.training.progress import Progress

log = logging.getLogger(__name__)


@contextmanager
def deterministic() -> Iterator[None]:
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def preprocessor(schema: Schema) -> ColumnTransformer:
    numeric = [f.name for f in schema.features if f.kind == "numeric"]
    categorical = [f for f in schema.features if f.kind == "categorical"]
    steps: list[tuple[str, object, list[str]]] = []
    if numeric:
        steps.append(("numeric", StandardScaler(), numeric))
    if categorical:
        steps.append(
            (
                "categorical",
                OneHotEncoder(
                    categories=[list(f.categories or []) for f in categorical],
                    handle_unknown="ignore",
                    sparse_output=False,
                    dtype=np.float64,
                ),
                [f.name for f in categorical],
            )
        )
    return ColumnTransformer(steps, sparse_threshold=0.0)


def batch_size(rows: int) -> int:
    """sklearn's 200-row minibatches up to 200,000 rows; larger data gets larger batches (up to
    2,000), so a million-row epoch costs 1,000 optimizer steps instead of 5,000."""
    return min(max(200, rows // 1_000), 2_000)


def mlp(
    schema: Schema, hidden_units: int, alpha: float, seed: int, max_iter: int, rows: int = 0
) -> Pipeline:
    return Pipeline(
        [
            ("preprocess", preprocessor(schema)),
            (
                "classifier",
                MLPClassifier(
                    hidden_layer_sizes=(hidden_units,),
                    alpha=alpha,
                    max_iter=max_iter,
                    batch_size=batch_size(rows),
                    # Early stopping's 10-15 % hold-out costs more than it saves on
                    # German-Credit-sized data; strong L2 (alpha ~1) does the regularising.
                    random_state=seed,
                ),
            ),
        ]
    )


def baseline(schema: Schema) -> Pipeline:
    return Pipeline(
        [
            ("preprocess", preprocessor(schema)),
            ("classifier", LogisticRegression(C=1.0, max_iter=2000)),
        ]
    )


def positive_probability(model: Pipeline, inputs: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(inputs)[:, 1], dtype=np.float64)


def stratified_sample(
    inputs: pd.DataFrame, labels: np.ndarray, rows: int | None, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """At most `rows` rows, keeping the class balance; the full data when it already fits."""
    if rows is None or len(labels) <= rows:
        return inputs, labels
    sample, _, sample_labels, _ = train_test_split(
        inputs, labels, train_size=rows, stratify=labels, random_state=seed
    )
    return sample.reset_index(drop=True), np.asarray(sample_labels)


@dataclass(frozen=True)
class Candidate:
    hidden_units: int
    alpha: float
    cv_auc: float
    fold_aucs: tuple[float, ...]


@dataclass(frozen=True)
class SearchResult:
    best: Candidate
    candidates: tuple[Candidate, ...]
    baseline_cv_auc: float
    baseline_fold_aucs: tuple[float, ...]
    # Out-of-fold probabilities of the best MLP and of the baseline, on the search rows: honest
    # predictions for calibration and fairness (no row is scored by a model that saw it).
    oof_probability: np.ndarray
    baseline_oof_probability: np.ndarray
    labels: np.ndarray
    rows: int


def check_cv_rows(labels: np.ndarray, folds: int) -> None:
    minority = int(min(labels.sum(), len(labels) - labels.sum()))
    # Each fold needs both classes in its training and its validation part.
    needed = max(folds, 2) * 2
    if minority < needed:
        raise BadInputError(
            f"too few rows for {folds}-fold cross-validation: {len(labels)} rows, the minority class"
            f" has {minority}; need at least {needed} rows of each class"
        )


def _fold_probability(
    schema: Schema,
    params: tuple[int, float] | None,
    inputs: pd.DataFrame,
    labels: np.ndarray,
    train: np.ndarray,
    valid: np.ndarray,
    seed: int,
    max_iter: int,
) -> np.ndarray:
    """Fit on one fold's training part and score its validation part; `params` None = the LR
    baseline. Runs in a worker process, single-threaded, so results do not depend on `jobs`."""
    with deterministic():
        estimator = baseline(schema) if params is None else mlp(schema, *params, seed, max_iter)
        estimator.fit(inputs.iloc[train], labels[train])
        return positive_probability(estimator, inputs.iloc[valid])


def _fit_task(index: int, *args: Any) -> tuple[int, np.ndarray]:
    """`_fold_probability` tagged with its task index: fits finish in any order."""
    return index, _fold_probability(*args)


def describe(params: tuple[int, float] | None) -> str:
    return "baseline LR" if params is None else f"MLP hidden={params[0]} alpha={params[1]:g}"


def search(
    inputs: pd.DataFrame, labels: np.ndarray, schema: Schema, space: SearchSpace, seed: int
) -> SearchResult:
    """Grid over width x alpha by stratified K-fold CV AUC; the LR baseline on the same folds.
    The (model, fold) fits are independent and run in `space.jobs` processes; each is logged as
    it finishes, each model's CV AUC as soon as its last fold is in."""
    inputs, labels = stratified_sample(inputs, labels, space.search_rows, seed)
    check_cv_rows(labels, space.folds)
    folds = list(
        StratifiedKFold(space.folds, shuffle=True, random_state=seed).split(inputs, labels)
    )
    grid: list[tuple[int, float] | None] = [None]
    grid += [(hidden, alpha) for hidden in space.hidden_units for alpha in space.alphas]
    tasks = [(params, train, valid) for params in grid for train, valid in folds]
    processes = min(space.jobs or os.cpu_count() or 1, len(tasks))
    log.info(
        "cross-validation: %d models (the LR baseline and %d MLPs) x %d folds = %d fits on %d rows"
        " in %d process%s",
        len(grid),
        len(grid) - 1,
        len(folds),
        len(tasks),
        len(labels),
        processes,
        "" if processes == 1 else "es",
    )
    scored: list[np.ndarray] = [np.empty(0)] * len(tasks)
    fold_aucs = [[0.0] * len(folds) for _ in grid]
    pending = [len(folds)] * len(grid)
    with (
        warnings.catch_warnings(),
        Progress(log, "cross-validation", len(tasks), "fits") as progress,
    ):
        warnings.simplefilter("ignore", ConvergenceWarning)
        finished = Parallel(n_jobs=processes, return_as="generator_unordered")(
            delayed(_fit_task)(
                index, schema, params, inputs, labels, train, valid, seed, space.max_iter
            )
            for index, (params, train, valid) in enumerate(tasks)
        )
        for index, probability in finished:
            model_index, fold = divmod(index, len(folds))
            scored[index] = probability
            auc = float(roc_auc_score(labels[folds[fold][1]], probability))
            fold_aucs[model_index][fold] = auc
            name = describe(grid[model_index])
            progress.done(f"{name} fold {fold + 1}/{len(folds)}: AUC {auc:.4f}")
            pending[model_index] -= 1
            if not pending[model_index]:
                progress.note(f"{name}: CV AUC {np.mean(fold_aucs[model_index]):.4f}")
    # joblib keeps its worker processes for reuse; a training run needs them no longer, and
    # idle workers outliving a killed Job would hold its log pipes open.
    get_reusable_executor().shutdown(wait=True)
    results: list[tuple[np.ndarray, tuple[float, ...]]] = []
    for model_index in range(len(grid)):
        oof = np.zeros(len(labels))
        for fold, (_, valid) in enumerate(folds):
            oof[valid] = scored[model_index * len(folds) + fold]
        results.append((oof, tuple(fold_aucs[model_index])))
    (base_oof, base_aucs), mlp_results = results[0], results[1:]
    candidates: list[Candidate] = []
    for params, (_, aucs) in zip(grid[1:], mlp_results, strict=True):
        assert params is not None
        candidates.append(Candidate(params[0], params[1], float(np.mean(aucs)), aucs))
    # First best in grid order on ties, so the choice is deterministic.
    best_index = max(range(len(candidates)), key=lambda i: (candidates[i].cv_auc, -i))
    return SearchResult(
        best=candidates[best_index],
        candidates=tuple(candidates),
        baseline_cv_auc=float(np.mean(base_aucs)),
        baseline_fold_aucs=base_aucs,
        oof_probability=mlp_results[best_index][0],
        baseline_oof_probability=base_oof,
        labels=labels,
        rows=len(labels),
    )


def fit_final(
    inputs: pd.DataFrame,
    labels: np.ndarray,
    schema: Schema,
    best: Candidate,
    space: SearchSpace,
    seed: int,
) -> Pipeline:
    inputs, labels = stratified_sample(inputs, labels, space.fit_rows, seed)
    log.info("final fit: %s on %d rows", describe((best.hidden_units, best.alpha)), len(labels))
    with deterministic(), Progress(log, "final fit") as progress:
        final = mlp(schema, best.hidden_units, best.alpha, seed, space.max_iter, len(labels))
        final.fit(inputs, labels)
    log.info("final fit: done in %.1f s", progress.elapsed())
    return final
