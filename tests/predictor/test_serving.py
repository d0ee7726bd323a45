"""The model server's own life cycle: what KServe's ModelServer does that serving.py changes."""

from __future__ import annotations

import signal

import pytest

from creditmodel.predictor.model import CreditScoringModel
from creditmodel.predictor.serving import CreditModelServer
from creditmodel.predictor.settings import PredictorSettings
from tests.predictor.conftest import TrainedBundle

pytestmark = pytest.mark.unit


async def test_the_model_stays_registered_until_the_servers_have_stopped(
    champion: TrainedBundle,
) -> None:
    """KServe's stop unloads every model at once, while the gRPC server still answers the calls
    in flight for its grace period: those calls were answered NOT_FOUND for the very model being
    served (2 of 50 in flight at a SIGTERM). The models go once the servers have stopped."""
    server = CreditModelServer(http_port=0, grpc_port=0, enable_grpc=False)
    model = CreditScoringModel(PredictorSettings(model_name="stopping", model_dir=champion.uri))
    model.load()
    server.register_model(model)
    registered_while_stopping: list[bool] = []

    class GrpcServer:
        async def stop(self, sig: int) -> None:
            registered_while_stopping.append(
                server.registered_models.get_model("stopping") is not None
            )

    server._grpc_server = GrpcServer()
    server.stop(signal.SIGTERM)
    assert server.registered_models.get_model("stopping") is not None
    assert server.stopping is not None
    await server.stopping
    assert registered_while_stopping == [True]
    assert server.registered_models.get_model("stopping") is None
