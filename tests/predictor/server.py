"""A real `creditmodel-predictor` process for tests and benchmarks."""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.process import ManagedProcess, free_port

SCRIPT = Path(sys.executable).with_name("creditmodel-predictor")


@dataclass(frozen=True)
class PredictorServer:
    process: ManagedProcess
    model_name: str
    http_port: int
    grpc_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def infer_url(self) -> str:
        return f"{self.url}/v2/models/{self.model_name}/infer"

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total


def _ready(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
        return bool(json.loads(response.read()).get("ready"))


@contextlib.contextmanager
def predictor_server(
    model_dir: str,
    log_dir: Path,
    *,
    model_name: str = "demo",
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    name: str = "predictor",
    timeout: float = 60.0,
) -> Iterator[PredictorServer]:
    http_port, grpc_port = free_port(), free_port()
    argv = [
        SCRIPT,
        "--model_name", model_name,
        "--model_dir", model_dir,
        "--http_port", str(http_port),
        "--grpc_port", str(grpc_port),
        *extra,
    ]  # fmt: skip
    process = ManagedProcess(name, argv, log_dir, env)
    try:
        process.wait_ready(lambda: _ready(f"http://127.0.0.1:{http_port}"), timeout, "ready")
        yield PredictorServer(process, model_name, http_port, grpc_port)
    finally:
        process.stop()
