"""A real Prometheus server scraping given targets, queried through its HTTP API."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.process import ManagedProcess, free_port, tool


@dataclass(frozen=True)
class PrometheusServer:
    url: str

    def _get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} failed: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; returns the vector's samples."""
        return list(self._get("/api/v1/query", query=expr)["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/targets")["activeTargets"])

    def wait_for_targets_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = self.targets()
            if targets and all(t["health"] == "up" for t in targets):
                return
            time.sleep(0.2)
        raise TimeoutError(f"targets not up: {self.targets()}")

    def wait_for(self, expr: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Poll an instant query until it returns samples."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.2)
        raise TimeoutError(f"no samples for {expr!r} after {timeout}s")


def scrape_config(
    targets: Sequence[str], interval: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One static job; `labels` are attached to every target (as service discovery would add
    `namespace`, `pod`, ...)."""
    static: dict[str, Any] = {"targets": list(targets)}
    if labels:
        static["labels"] = dict(labels)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": "creditmodel",
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "static_configs": [static],
            }
        ],
    }


@contextlib.contextmanager
def prometheus_server(
    workdir: Path,
    targets: Sequence[str],
    interval: str = "1s",
    labels: Mapping[str, str] | None = None,
) -> Iterator[PrometheusServer]:
    binary = tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(scrape_config(targets, interval, labels)))
    port = free_port()
    process = ManagedProcess(
        "prometheus",
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1h",
        ],
        workdir,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        process.wait_ready(
            lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200,
            timeout=60,
            what="ready (/-/ready)",
        )
        yield PrometheusServer(url=url)
    finally:
        process.stop()
