"""Any schema, any transport: bundles with generated schemas (0-50 numeric and 0-50 categorical
features, at least one; one feature alone; categories with many unicode levels) are trained by the
real pipeline, served by a real predictor, and scored over REST JSON, the REST binary-data
extension, gRPC typed contents and gRPC raw_input_contents, with shapes [N] and [N, 1]. Every
answer carries onnxruntime's probability for the bundle's INT8 model, and the same score and reason
codes whichever way the rows came in, including one row per call with many calls in flight at once
(the gRPC server scores the calls it finds together).

Feature names are ASCII identifiers by the bundle contract (they name ONNX inputs and metric
labels); category values are free unicode text."""

from __future__ import annotations

import json
import string
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton_http
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from creditmodel.core.bundle import load_bundle
from creditmodel.training import pipeline
from creditmodel.training.config import FeatureSpec, SearchSpace, TrainingConfig
from tests.predictor.server import predictor_server
from tests.predictor.test_grpc import as_numpy, infer_request

pytestmark = pytest.mark.integration

MODEL = "anyschema"
TARGET = "outcome"
ROWS = 240
ASKED = 5


@dataclass(frozen=True)
class SchemaShape:
    numeric: tuple[str, ...]
    categorical: tuple[tuple[str, tuple[str, ...]], ...]


_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True).filter(lambda n: n != TARGET)
# Printable unicode, no surrogates or control characters; no leading/trailing blanks to strip.
_level = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=10
).filter(lambda v: v == v.strip() and v != "")


@st.composite
def schema_shapes(draw: st.DrawFn) -> SchemaShape:
    n_numeric = draw(st.integers(0, 50))
    n_categorical = draw(st.integers(0 if n_numeric else 1, 50))
    names = draw(
        st.lists(
            _names,
            min_size=n_numeric + n_categorical,
            max_size=n_numeric + n_categorical,
            unique_by=str.lower,
        )
    )
    categorical = tuple(
        (name, tuple(draw(st.lists(_level, min_size=2, max_size=40, unique=True))))
        for name in names[n_numeric:]
    )
    return SchemaShape(numeric=tuple(names[:n_numeric]), categorical=categorical)


def _frame(shape: SchemaShape, seed: int) -> pd.DataFrame:
    """Rows where every category occurs and the outcome depends on every feature."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    logit = np.zeros(ROWS)
    for name in shape.numeric:
        values = rng.normal(rng.uniform(-50, 50), rng.uniform(0.5, 20), ROWS).round(3)
        columns[name] = values
        logit += rng.normal() * (values - values.mean()) / (values.std() + 1e-9)
    for name, levels in shape.categorical:
        codes = np.concatenate([np.arange(len(levels)), rng.integers(0, len(levels), ROWS)])
        codes = codes[:ROWS] if len(levels) <= ROWS else np.arange(ROWS) % len(levels)
        rng.shuffle(codes)
        columns[name] = np.asarray(levels, dtype=object)[codes]
        logit += rng.normal(size=len(levels))[codes]
    outcome = rng.random(ROWS) < 1 / (1 + np.exp(-logit))
    outcome[:2] = [True, False]  # both classes, whatever the draw
    columns[TARGET] = np.where(outcome, "1", "0")
    return pd.DataFrame(columns)


def _train(shape: SchemaShape, root: Path) -> tuple[str, pd.DataFrame]:
    frame = _frame(shape, seed=len(shape.numeric) * 101 + len(shape.categorical))
    specs = [FeatureSpec(name=n, kind="numeric") for n in shape.numeric] + [
        FeatureSpec(name=n, kind="categorical", categories=list(levels))
        for n, levels in shape.categorical
    ]
    output = root / "bundle"
    config = TrainingConfig.quick(
        target=TARGET,
        positive_label="1",
        model_name=MODEL,
        version="v1",
        output=str(output),
        features=specs,
        enforce_gates=False,  # random data: only the serving path is under test here
        search=SearchSpace(hidden_units=[4], alphas=[1.0], folds=2, max_iter=60, search_rows=100),
    )
    pipeline.train(config, frame)
    return str(output), frame.drop(columns=[TARGET])


def _expected(bundle_dir: str, applicants: pd.DataFrame) -> np.ndarray:
    import onnxruntime as ort

    schema = load_bundle(bundle_dir).schema
    feed = {
        f.name: applicants[f.name]
        .to_numpy(dtype=object if f.kind == "categorical" else np.float32)
        .reshape(-1, 1)
        for f in schema.features
    }
    session = ort.InferenceSession(f"{bundle_dir}/model.int8.onnx")
    return np.asarray(session.run(["probability"], feed)[0], dtype=np.float32)


def _specs(bundle_dir: str, applicants: pd.DataFrame, nested: bool) -> list[dict[str, Any]]:
    schema = load_bundle(bundle_dir).schema
    specs = []
    for f in schema.features:
        values = applicants[f.name].tolist()
        data = [str(v) for v in values] if f.kind == "categorical" else [float(v) for v in values]
        n = len(data)
        specs.append(
            {
                "name": f.name,
                "datatype": f.datatype,
                "shape": [n, 1] if nested else [n],
                "data": [[v] for v in data] if nested else data,
            }
        )
    return specs


def _flat(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**s, "data": [v[0] if isinstance(v, list) else v for v in s["data"]]} for s in specs]


def _rest_json(url: str, specs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    body = json.dumps({"id": "any-1", "inputs": specs}).encode()
    request = urllib.request.Request(url, body, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        document = json.loads(response.read())
    return {o["name"]: np.asarray(o["data"]).reshape(-1) for o in document["outputs"]}


def _rest_binary(port: int, specs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    client = triton_http.InferenceServerClient(f"127.0.0.1:{port}")
    inputs = []
    for spec in _flat(specs):
        item = triton_http.InferInput(spec["name"], spec["shape"], spec["datatype"])
        dtype = object if spec["datatype"] == "BYTES" else np.float32
        values = np.asarray(spec["data"], dtype=dtype).reshape(spec["shape"])
        item.set_data_from_numpy(values, binary_data=True)
        inputs.append(item)
    outputs = [
        triton_http.InferRequestedOutput(n, binary_data=True)
        for n in ("probability", "score", "reason_codes")
    ]
    result = client.infer(MODEL, inputs, outputs=outputs)
    return {
        n: np.asarray(result.as_numpy(n)).reshape(-1)
        for n in ("probability", "score", "reason_codes")
    }


def _grpc(target: str, specs: list[dict[str, Any]], raw: bool) -> dict[str, np.ndarray]:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(infer_request(_flat(specs), raw=raw, model=MODEL), timeout=30)
    return as_numpy(response)


COPIES = 6


def _grpc_rows_at_once(target: str, specs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Every row as its own single-row call, COPIES of each, all in flight at once (the server
    scores the calls one wake-up finds together): the rows' outputs, in row order, once every
    copy of a row is checked to carry its first copy's answer."""
    flat = _flat(specs)
    rows = len(flat[0]["data"])
    one_row = [[{**s, "shape": [1], "data": [s["data"][row]]} for s in flat] for row in range(rows)]
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        futures = [
            stub.ModelInfer.future(
                infer_request(one_row[row], raw=copy % 2 == 1, model=MODEL), timeout=60
            )
            for copy in range(COPIES)
            for row in range(rows)
        ]
        answers = [as_numpy(future.result()) for future in futures]
    firsts = answers[:rows]
    for index, answer in enumerate(answers):
        first = firsts[index % rows]
        for name, values in answer.items():
            assert _text(values) == _text(first[name]), (index, name)
    return {name: np.concatenate([a[name] for a in firsts]) for name in firsts[0]}


def _text(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]


def _check_every_transport(shape: SchemaShape, root: Path) -> None:
    bundle_dir, applicants = _train(shape, root)
    asked = applicants.iloc[:ASKED]
    want = _expected(bundle_dir, asked)
    (root / "logs").mkdir()
    with predictor_server(bundle_dir, root / "logs", model_name=MODEL) as server:
        answers = {}
        for nested in (False, True):
            specs = _specs(bundle_dir, asked, nested)
            label = "[N,1]" if nested else "[N]"
            answers[f"rest-json {label}"] = _rest_json(server.infer_url, specs)
            answers[f"rest-binary {label}"] = _rest_binary(server.http_port, specs)
            answers[f"grpc-typed {label}"] = _grpc(server.grpc_target, specs, raw=False)
            answers[f"grpc-raw {label}"] = _grpc(server.grpc_target, specs, raw=True)
        answers["grpc single rows at once"] = _grpc_rows_at_once(
            server.grpc_target, _specs(bundle_dir, asked, nested=False)
        )
    first = answers["rest-json [N]"]
    for how, outputs in answers.items():
        np.testing.assert_allclose(
            outputs["probability"].astype(np.float32), want, rtol=0, atol=1e-6, err_msg=how
        )
        np.testing.assert_array_equal(outputs["score"].astype(int), first["score"], err_msg=how)
        assert _text(outputs["reason_codes"]) == _text(first["reason_codes"]), how
    assert len(first["reason_codes"]) == ASKED * 4


ALPHABET = string.ascii_lowercase


@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    database=None,
    # Each example trains a bundle and starts a server: shrinking would take many minutes.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(shape=schema_shapes())
@example(shape=SchemaShape(numeric=("x",), categorical=()))
@example(shape=SchemaShape(numeric=(), categorical=(("only", ("a", "b", "ü€", "中文")),)))
@example(shape=SchemaShape(numeric=("a", "b", "c"), categorical=()))
@example(
    shape=SchemaShape(
        numeric=(),
        categorical=tuple(
            (f"c{i}", tuple(f"{ALPHABET[i]}{j}" for j in range(30))) for i in range(4)
        ),
    )
)
def test_every_schema_scores_the_same_over_every_transport(
    shape: SchemaShape, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _check_every_transport(shape, tmp_path_factory.mktemp("any"))
