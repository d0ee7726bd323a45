"""grpc_dispatch: the calls one wake-up of the core delivers, each answered as if it were alone.

In process, with the answers recorded instead of sent: single-row ModelInfers of one wake-up are
scored together (fewer model runs than calls) yet every call gets exactly the answer it gets
alone, whatever mix of variants, outputs, raw or typed contents and refusals the wake-up holds
(hypothesis); a refused call never refuses its neighbours; a failed model run fails only its
batch, each call under its own id; every other call runs KServe's servicer on the event loop.
Over the wire: many concurrent calls on a real server, each equal to its answer alone; a call
without a request message and a stop with calls in flight."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kserve.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerNotReady,
    UnsupportedProtocol,
)
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from creditmodel.predictor.grpc_core import Incoming, Status
from creditmodel.predictor.grpc_dispatch import GrpcDispatch, rpc_status
from creditmodel.predictor.grpc_fast import FastInferenceServicer, RefusedRpcError
from creditmodel.predictor.service import ScoringService
from tests.predictor.conftest import TrainedBundle
from tests.predictor.server import PredictorServer, predictor_server
from tests.predictor.test_grpc import (  # noqa: F401 (servicers: the fixture)
    Context,
    Servicers,
    as_numpy,
    infer_request,
    servicers,
)

INFER = "/inference.GRPCInferenceService/ModelInfer"
OUTPUTS = ((), ("score",), ("reason_codes", "probability"), ("probability",))


@dataclass
class Answers:
    """The `answer` grpc_dispatch is given: what each call (a token here) was answered."""

    given: dict[Any, bytes | Status] = field(default_factory=dict)

    def __call__(self, call: Any, outcome: bytes | Status) -> None:
        assert call not in self.given, f"{call} answered twice"
        self.given[call] = outcome


@dataclass
class Plane:
    servicer: FastInferenceServicer
    service: ScoringService
    loop: asyncio.AbstractEventLoop  # never run: the batched path does not use it

    def dispatch(self, answers: Answers) -> GrpcDispatch:
        return GrpcDispatch(self.servicer, self.loop, answers)


@pytest.fixture(scope="module")
def plane(servicers: Servicers) -> Iterator[Plane]:  # noqa: F811 (the imported fixture)
    loop = asyncio.new_event_loop()
    assert servicers.model.service is not None
    yield Plane(servicers.fast, servicers.model.service, loop)
    loop.close()


def incoming(token: Any, request: Any, method: str = INFER, **metadata: str) -> Incoming:
    body = request if isinstance(request, bytes) else request.SerializeToString()
    return Incoming(token, method, tuple(metadata.items()), body)


def deliver_alone(plane: Plane, call: Incoming) -> bytes | Status:
    answers = Answers()
    plane.dispatch(answers).deliver([call], 0.0)
    return answers.given[call.call]


@contextlib.contextmanager
def counted_runs(service: ScoringService) -> Iterator[list[int]]:
    """The size of every execute_batch the service is asked for, while in the block."""
    sizes: list[int] = []
    real = service.execute_batch

    def spy(jobs: Any) -> Any:
        sizes.append(len(jobs))
        return real(jobs)

    with mock.patch.object(service, "execute_batch", spy):
        yield sizes


@dataclass(frozen=True)
class CallSpec:
    start: int
    raw: bool
    variant: str | None
    outputs: tuple[str, ...]
    refused: bool


calls_specs = st.lists(
    st.builds(
        CallSpec,
        start=st.integers(0, 40),
        raw=st.booleans(),
        variant=st.sampled_from((None, "int8", "fp32")),
        outputs=st.sampled_from(OUTPUTS),
        refused=st.booleans(),
    ),
    min_size=1,
    max_size=24,
)


def spec_request(champion: TrainedBundle, spec: CallSpec, index: int) -> pb.ModelInferRequest:
    inputs = champion.v2_inputs(1, spec.start)
    if spec.refused:
        inputs = inputs[1:]  # a missing input, whatever the schema
    parameters = {"variant": spec.variant} if spec.variant else None
    return infer_request(
        inputs,
        raw=spec.raw,
        request_id=f"call-{index}",
        parameters=parameters,
        outputs=spec.outputs,
    )


@pytest.mark.unit
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=calls_specs)
def test_a_wake_up_answers_every_call_as_it_is_answered_alone(
    plane: Plane, champion: TrainedBundle, specs: list[CallSpec]
) -> None:
    calls = [incoming(i, spec_request(champion, s, i)) for i, s in enumerate(specs)]
    alone = {call.call: deliver_alone(plane, call) for call in calls}
    answers = Answers()
    with counted_runs(plane.service) as runs:
        plane.dispatch(answers).deliver(calls, 0.0)
    assert answers.given == alone
    accepted = [s for s in specs if not s.refused]
    assert sum(runs) == len(accepted)
    # one run per (variant asked for, outputs) at most: calls asking alike share it; calls that
    # leave the variant to the A/B split join the run of the variant the split picks
    asked = {(s.variant, s.outputs) for s in accepted}
    assert len(runs) <= len(asked) + len(OUTPUTS)
    for spec, call in zip(specs, calls, strict=True):
        outcome = answers.given[call.call]
        if spec.refused:
            assert isinstance(outcome, Status)
            assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
        else:
            assert pb.ModelInferResponse.FromString(outcome).id == f"call-{call.call}"


@pytest.mark.unit
async def test_a_call_alone_is_answered_as_kserves_servicer_answers_it(
    plane: Plane, champion: TrainedBundle
) -> None:
    for index, spec in enumerate(
        (
            CallSpec(3, raw=False, variant=None, outputs=(), refused=False),
            CallSpec(4, raw=True, variant="fp32", outputs=("score",), refused=False),
            CallSpec(5, raw=False, variant=None, outputs=(), refused=True),
        )
    ):
        request = spec_request(champion, spec, index)
        got = deliver_alone(plane, incoming(index, request))
        try:
            want: bytes | Status = (
                await plane.servicer.ModelInfer(request, Context())
            ).SerializeToString()
        except Exception as error:
            want = rpc_status(error)
        if isinstance(want, bytes):
            assert isinstance(got, bytes)
            assert pb.ModelInferResponse.FromString(got) == pb.ModelInferResponse.FromString(want)
        else:
            assert got == want


@pytest.mark.unit
def test_calls_asking_alike_share_one_run_each_under_its_own_id(
    plane: Plane, champion: TrainedBundle
) -> None:
    calls = [
        incoming(
            i,
            infer_request(champion.v2_inputs(1, i), request_id="", parameters={"variant": "int8"}),
            **{"x-request-id": f"m{i}"},
        )
        for i in range(6)
    ]
    answers = Answers()
    with counted_runs(plane.service) as runs:
        plane.dispatch(answers).deliver(calls, 0.0)
    assert runs == [6]
    responses = [pb.ModelInferResponse.FromString(answers.given[i]) for i in range(6)]  # type: ignore[arg-type]
    assert [r.id for r in responses] == [f"m{i}" for i in range(6)]
    alone = [deliver_alone(plane, call) for call in calls]
    assert [pb.ModelInferResponse.FromString(a) for a in alone] == responses  # type: ignore[arg-type]


@pytest.mark.unit
def test_a_failed_run_fails_its_batch_each_under_its_own_id_and_the_next_wake_up_serves(
    plane: Plane, champion: TrainedBundle
) -> None:
    calls = [
        incoming(i, infer_request(champion.v2_inputs(1, i), request_id=f"r{i}")) for i in range(4)
    ]
    answers = Answers()
    dispatch = plane.dispatch(answers)
    failing = mock.patch.object(plane.service, "execute_batch", side_effect=RuntimeError("boom"))
    with failing:
        dispatch.deliver(calls, 0.0)
    for index in range(4):
        outcome = answers.given[index]
        assert isinstance(outcome, Status)
        assert outcome.code == grpc.StatusCode.INTERNAL
        assert f"'r{index}'" in outcome.message
        assert "boom" not in outcome.message
    again = Answers()
    plane.dispatch(again).deliver(calls, 0.0)
    assert all(isinstance(outcome, bytes) for outcome in again.given.values())


@pytest.mark.unit
async def test_every_other_call_runs_kserves_servicer_on_the_loop(
    plane: Plane, champion: TrainedBundle
) -> None:
    big = infer_request(champion.v2_inputs(300), request_id="big")  # over inline_rows
    calls = [
        incoming("live", pb.ServerLiveRequest(), "/inference.GRPCInferenceService/ServerLive"),
        incoming("big", big),
        incoming("nobody", infer_request(champion.v2_inputs(1), model="nope")),
        incoming(
            "unload",
            pb.RepositoryModelUnloadRequest(model_name="demo"),
            "/inference.GRPCInferenceService/RepositoryModelUnload",
        ),
        incoming("method", b"", "/inference.GRPCInferenceService/Nope"),
        incoming("garbage", b"\xff\xff\xff\xff", INFER),
    ]
    answers = Answers()
    GrpcDispatch(plane.servicer, asyncio.get_running_loop(), answers).deliver(calls, 0.0)
    deadline = time.monotonic() + 30
    while len(answers.given) < len(calls) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # the answers come from tasks on this loop
    assert pb.ServerLiveResponse.FromString(answers.given["live"]).live  # type: ignore[arg-type]
    assert len(pb.ModelInferResponse.FromString(answers.given["big"]).outputs) == 3  # type: ignore[arg-type]
    assert answers.given["nobody"] == Status(
        grpc.StatusCode.NOT_FOUND, "Model with name nope does not exist."
    )
    refused = {key: answers.given[key] for key in ("unload", "method", "garbage")}
    assert {key: status.code for key, status in refused.items()} == {  # type: ignore[union-attr]
        "unload": grpc.StatusCode.UNIMPLEMENTED,
        "method": grpc.StatusCode.UNIMPLEMENTED,
        "garbage": grpc.StatusCode.INVALID_ARGUMENT,
    }
    assert refused["garbage"] == Status(
        grpc.StatusCode.INVALID_ARGUMENT, "ModelInfer: the request is not a valid protobuf message"
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInput("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (InferenceError("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (UnsupportedProtocol("v9"), grpc.StatusCode.INVALID_ARGUMENT),
        (ModelNotFound("m"), grpc.StatusCode.NOT_FOUND),
        (ModelNotReady("m"), grpc.StatusCode.UNAVAILABLE),
        (ServerNotReady(), grpc.StatusCode.UNAVAILABLE),
        (NotImplementedError("no"), grpc.StatusCode.UNIMPLEMENTED),
        (RefusedRpcError(grpc.StatusCode.NOT_FOUND, "v2"), grpc.StatusCode.NOT_FOUND),
        (RuntimeError("secret detail"), grpc.StatusCode.INTERNAL),
    ],
)
def test_exceptions_map_to_kserves_status_codes_with_bounded_messages(
    error: BaseException, code: grpc.StatusCode
) -> None:
    status = rpc_status(error)
    assert status.code == code
    assert "secret" not in status.message
    assert len(status.message) <= 1024
    long = rpc_status(InvalidInput("x" * 100_000))
    assert len(long.message) <= 1024
    name = rpc_status(ModelNotFound("n" * 100_000))
    assert len(name.message) <= 300


# --- over the wire --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(
    champion: TrainedBundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PredictorServer]:
    with predictor_server(champion.uri, tmp_path_factory.mktemp("dispatch-logs")) as running:
        yield running


@pytest.mark.integration
def test_many_concurrent_calls_each_get_their_own_answer(
    server: PredictorServer, champion: TrainedBundle
) -> None:
    """400 single-row calls in flight at once, REST requests for the same rows beside them (the
    gRPC thread and the event loop score on one service at the same time): every answer is the
    answer its row gets alone."""
    requests = [
        infer_request(champion.v2_inputs(1, i % 40), request_id=f"c{i}", raw=i % 3 == 0)
        for i in range(400)
    ]
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        alone = [stub.ModelInfer(request, timeout=30) for request in requests[:40]]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            over_rest = [pool.submit(rest_answer, server, champion, i % 40) for i in range(120)]
            futures = [stub.ModelInfer.future(request, timeout=60) for request in requests]
            together = [future.result() for future in futures]
            rest_answers = [future.result() for future in over_rest]
    for index, response in enumerate(together):
        assert response.id == f"c{index}"
        want = alone[index % 40]
        assert response.parameters == want.parameters
        assert [o.name for o in response.outputs] == [o.name for o in want.outputs]
        assert as_values(response) == as_values(want), index
    for index, (variant, values) in enumerate(rest_answers):
        want = alone[index % 40]
        assert variant == want.parameters["variant"].string_param
        assert values == as_values(want), index


def rest_answer(
    server: PredictorServer, champion: TrainedBundle, row: int
) -> tuple[str, dict[str, Any]]:
    """The REST answer for one row: its variant and its outputs as as_values gives them."""
    body = json.dumps({"inputs": champion.v2_inputs(1, row)}).encode()
    request = urllib.request.Request(server.infer_url, body, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        document = json.loads(response.read())
    values = {}
    for output in document["outputs"]:
        data = np.asarray(output["data"]).reshape(-1)
        if output["name"] == "probability":
            data = data.astype(np.float32)
        values[output["name"]] = data.tolist()
    return document["parameters"]["variant"], values


def as_values(response: pb.ModelInferResponse) -> dict[str, Any]:
    return {name: values.tolist() for name, values in as_numpy(response).items()}


@pytest.mark.integration
def test_a_call_without_a_request_message_is_invalid_argument(server: PredictorServer) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        no_message = channel.stream_unary(INFER)
        with pytest.raises(grpc.RpcError) as caught:
            no_message(iter(()), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "ModelInfer: no request message"
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live


@pytest.mark.integration
def test_a_stop_answers_the_calls_in_flight_then_exits(
    champion: TrainedBundle, tmp_path: Path
) -> None:
    with predictor_server(champion.uri, tmp_path) as running:
        with grpc.insecure_channel(running.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            big = infer_request(champion.v2_inputs(2000), request_id="inflight")
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                pending = [pool.submit(stub.ModelInfer, big, timeout=60) for _ in range(8)]
                time.sleep(0.05)
                os.kill(running.process.proc.pid, signal.SIGTERM)
                answered = 0
                for future in pending:
                    with contextlib.suppress(grpc.RpcError):
                        answered += future.result().id == "inflight"
        assert running.process.proc.wait(30) == 0
    assert answered >= 1
