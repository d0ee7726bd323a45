"""The prediction log as a decision record, through a real predictor process: every logged row,
replayed through the bundle it names (same inputs, same variant, reason codes computed the way
the predictor computes them), gives exactly the probability, score and reason codes that were
logged and returned to the client."""

from __future__ import annotations

import hashlib
import io
import json
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from creditmodel.core import prediction_log as plog
from creditmodel.core.bundle import bundle_scaling, load_bundle
from creditmodel.core.points import PointsScaling
from creditmodel.core.storage import open_store
from creditmodel.predictor.engine import LoadedBundle
from creditmodel.predictor.validation import Tensor
from tests.predictor.conftest import TrainedBundle
from tests.predictor.server import PredictorServer, predictor_server

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Answer:
    """What the client was told for one request."""

    variant: str
    probability: list[float]
    score: list[int]
    reason_codes: list[tuple[str, ...]] | None


def infer(server: PredictorServer, body: dict[str, Any]) -> Answer:
    request = urllib.request.Request(
        server.infer_url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        document = json.loads(response.read())
    outputs = {o["name"]: o["data"] for o in document["outputs"]}
    reasons = outputs.get("reason_codes")
    return Answer(
        variant=document["parameters"]["variant"],
        probability=outputs["probability"],
        score=outputs["score"],
        reason_codes=(
            [tuple(reasons[i : i + 4]) for i in range(0, len(reasons), 4)] if reasons else None
        ),
    )


def read_log(uri: str) -> list[dict[str, Any]]:
    store = open_store(uri)
    rows: list[dict[str, Any]] = []
    for name in store.list_names():
        if name.endswith(".parquet"):
            rows.extend(pq.read_table(io.BytesIO(store.read_bytes(name))).to_pylist())
    return rows


def wait_logged(server: PredictorServer, rows: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while server.metric("creditmodel_prediction_log_written_rows_total", model="demo") < rows:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {rows} rows reached the prediction log")
        time.sleep(0.2)


def sha256sum_digest(directory: Path, names: Sequence[str]) -> str:
    """The documented recipe, from the bytes on disk: `sha256sum <files> | sha256sum`."""
    listing = "".join(
        f"{hashlib.sha256((directory / n).read_bytes()).hexdigest()}  {n}\n" for n in sorted(names)
    )
    return "sha256:" + hashlib.sha256(listing.encode()).hexdigest()


def replay(served: LoadedBundle, rows: Sequence[plog.DecisionRecord], alone: bool) -> Iterator[Any]:
    """Score logged rows with their own variant, as one batch or each row alone."""
    groups = [[row] for row in rows] if alone else [list(rows)]
    for group in groups:
        tensors = [
            Tensor(f.name, f.datatype, [len(group), 1], [row.inputs[f.name] for row in group])
            for f in served.bundle.schema.features
        ]
        yield from _rows(
            served.variants[group[0].variant].score(served.validator.validate(tensors))
        )


def _rows(scored: Any) -> Iterator[tuple[float, int, tuple[str, ...]]]:
    for p, s, r in zip(scored.probability, scored.score, scored.reasons, strict=True):
        yield float(p), int(s), tuple(str(code) for code in r)


def replay_problems(
    raw_rows: Sequence[Mapping[str, Any]], answers: Mapping[str, Answer], served: LoadedBundle
) -> list[str]:
    """Every way the log fails to reproduce what each applicant was told (empty = none)."""
    problems: list[str] = []
    by_request: dict[str, list[plog.DecisionRecord]] = defaultdict(list)
    for raw in raw_rows:
        record = plog.decision_record(raw)
        by_request[record.request_id].append(record)
    if set(by_request) != set(answers):
        problems.append(f"logged requests {sorted(by_request)} != sent {sorted(answers)}")
    for request_id, records in by_request.items():
        answer = answers[request_id]
        given: Sequence[tuple[str, ...] | None] = answer.reason_codes or [None] * len(records)
        told = list(
            zip(
                answer.probability,
                answer.score,
                given,
                strict=True,
            )
        )
        for alone in (False, True):
            replayed = list(replay(served, records, alone))
            for i, (record, (p, s, reasons), (told_p, told_s, told_r)) in enumerate(
                zip(records, replayed, told, strict=True)
            ):
                where = f"{request_id}[{i}]{' alone' if alone else ''}"
                if record.variant != answer.variant:
                    problems.append(f"{where}: variant {record.variant} != {answer.variant}")
                if (record.probability, record.score) != (p, s):
                    problems.append(f"{where}: logged {record.probability, record.score} != {p, s}")
                if (np.float32(told_p), told_s) != (np.float32(p), s):
                    problems.append(f"{where}: told {told_p, told_s} != replayed {p, s}")
                if record.reason_codes != told_r:
                    problems.append(
                        f"{where}: logged reasons {record.reason_codes} != told {told_r}"
                    )
                if told_r is not None and reasons != told_r:
                    problems.append(f"{where}: replayed reasons {reasons} != told {told_r}")
    return problems


@pytest.mark.parametrize("storage", ["directory", "s3"])
def test_logged_rows_replay_to_the_same_decision(
    storage: str, champion: TrainedBundle, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if storage == "s3":
        s3 = request.getfixturevalue("s3")
        env, log_uri = {**s3.env()}, f"{s3.uri}/predictions"
    else:
        env, log_uri = {}, str(tmp_path / "predictions")
    env |= {
        "CREDITMODEL_PREDICTION_LOG_URI": log_uri,
        "CREDITMODEL_PREDICTION_LOG_FLUSH_INTERVAL_SECONDS": "0.2",
    }
    no_reasons = [{"name": "probability"}, {"name": "score"}]
    bodies: dict[str, dict[str, Any]] = {
        "int8-batch": {"inputs": champion.v2_inputs(60)},
        "fp32-batch": {"inputs": champion.v2_inputs(60, 60), "parameters": {"variant": "fp32"}},
        "int8-single": {"inputs": champion.v2_inputs(1, 120), "parameters": {"variant": "int8"}},
        "fp32-single": {"inputs": champion.v2_inputs(1, 121), "parameters": {"variant": "fp32"}},
        "no-reasons": {"inputs": champion.v2_inputs(5, 122), "outputs": no_reasons},
    }
    with predictor_server(champion.uri, tmp_path, env=env) as server:
        answers = {rid: infer(server, {"id": rid, **body}) for rid, body in bodies.items()}
        wait_logged(server, 127)
    rows = read_log(log_uri)
    assert len(rows) == 127

    # The digest names the bundle served: the bundle's own files, hashed again from disk.
    bundle = load_bundle(champion.uri)
    digest = sha256sum_digest(Path(champion.uri), list(bundle.manifest.files))
    assert plog.bundle_digest(bundle.manifest.files) == digest
    records = [plog.decision_record(row) for row in rows]
    assert {(r.log_format, r.bundle_digest, r.version) for r in records} == {
        (plog.FORMAT_VERSION, digest, bundle.version)
    }
    assert {r.variant for r in records} == {"int8", "fp32"}
    assert answers["fp32-batch"].variant == "fp32"
    assert answers["no-reasons"].reason_codes is None
    assert all(r.reason_codes is None for r in records if r.request_id == "no-reasons")
    assert sum(r.reason_codes is not None and r.reason_codes[0] != "" for r in records) > 60

    # The bundle and the log alone: the scaling comes from the logged rows.
    assert {json.dumps(r.points_scaling, sort_keys=True) for r in records} == {
        json.dumps(bundle_scaling(bundle).model_dump(), sort_keys=True)
    }
    served = LoadedBundle(
        bundle, max_rows=1_000, scaling=PointsScaling(**records[0].points_scaling)
    )
    assert replay_problems(rows, answers, served) == []

    # The check has teeth: a log that drops the reason codes cannot reproduce the decision.
    stripped = [{k: v for k, v in row.items() if k not in plog.REASON_CODE_COLUMNS} for row in rows]
    problems = replay_problems(stripped, answers, served)
    assert len(problems) == 2 * 122, problems[:3]  # each row replayed in its batch and alone
    assert all("logged reasons None != told" in p for p in problems)


def test_scores_under_the_predictors_own_scaling_replay_from_the_log(
    champion: TrainedBundle, tmp_path: Path
) -> None:
    """Points flags set the scaling apart from the bundle's: the logged scaling reproduces the
    score; the bundle's own would not."""
    log_uri = str(tmp_path / "predictions")
    env = {
        "CREDITMODEL_PREDICTION_LOG_URI": log_uri,
        "CREDITMODEL_PREDICTION_LOG_FLUSH_INTERVAL_SECONDS": "0.2",
    }
    flags = ["--base_score", "500", "--base_odds", "30", "--points_to_double_odds", "40"]
    with predictor_server(champion.uri, tmp_path, env=env, extra=flags) as server:
        answers = {"custom": infer(server, {"id": "custom", "inputs": champion.v2_inputs(20)})}
        wait_logged(server, 20)
    rows = read_log(log_uri)
    records = [plog.decision_record(row) for row in rows]
    scaling = records[0].points_scaling
    assert scaling == {"base_score": 500.0, "base_odds": 30.0, "points_to_double_odds": 40.0}
    bundle = load_bundle(champion.uri)
    logged = LoadedBundle(bundle, max_rows=100, scaling=PointsScaling(**scaling))
    assert replay_problems(rows, answers, logged) == []
    assert replay_problems(rows, answers, LoadedBundle(bundle, max_rows=100))  # bundle's differs
