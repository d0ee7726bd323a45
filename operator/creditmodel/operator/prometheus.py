"""Prometheus HTTP API adapter: runs the analysis queries and returns numbers for the pure maths.
Prometheus being down or slow makes a check inconclusive (never passed, never failed)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any

import httpx

from creditmodel.core import metrics as names
from creditmodel.operator import analysis
from creditmodel.operator.model import AnalysisSpec
from creditmodel.operator.rollout import CreditModel
from creditmodel.operator.settings import OperatorSettings


class PrometheusError(Exception):
    """The Prometheus HTTP API could not answer a query."""


class Prometheus:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self.client.aclose()

    async def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        try:
            response = await self.client.get(f"{self.url}/api/v1/query", params=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"{self.url}: {exc.__class__.__name__}: {exc}") from None
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"{self.url}: {body.get('error', response.status_code)}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def scalar(self, expr: str, at: float | None = None) -> float | None:
        samples = await self.query(expr, at)
        return float(samples[0]["value"][1]) if samples else None

    async def buckets(self, expr: str, at: float | None = None) -> dict[float, float]:
        samples = await self.query(expr, at)
        return {
            _bound(s["metric"].get(names.BUCKET_BOUND, "+Inf")): float(s["value"][1])
            for s in samples
        }

    async def measure(
        self, model: str, canary: str, stable: str, spec: AnalysisSpec, scope: Mapping[str, str]
    ) -> analysis.Measurements:
        queries = analysis.Queries.build(model, canary, stable, spec.window_seconds, scope)
        at = time.time()  # one evaluation instant, so the ratios compare the same window
        requests, successes, p99, canary_scores, stable_scores = await asyncio.gather(
            self.scalar(queries.requests, at),
            self.scalar(queries.successes, at),
            self.scalar(queries.p99_latency, at),
            self.buckets(queries.canary_scores, at),
            self.buckets(queries.stable_scores, at),
        )
        return analysis.Measurements(requests, successes, p99, canary_scores, stable_scores)

    async def analyse(
        self, model: str, canary: str, stable: str, spec: AnalysisSpec, scope: Mapping[str, str]
    ) -> analysis.Result:
        try:
            measured = await self.measure(model, canary, stable, spec, scope)
        except PrometheusError as exc:
            return analysis.Result("inconclusive", f"Prometheus unavailable: {exc}")
        return analysis.evaluate(measured, spec)

    async def stable_score_psi(
        self, model: str, stable: str, scope: Mapping[str, str]
    ) -> float | None:
        try:
            value = await self.scalar(
                analysis.Queries.build(model, stable, stable, 60, scope).stable_score_psi
            )
        except PrometheusError:
            return None
        return None if value is None or math.isnan(value) else value


def for_model(
    clients: dict[str, Prometheus], model: CreditModel, config: OperatorSettings
) -> Prometheus | None:
    """The client of the Prometheus the CreditModel's analysis asks (its own URL, else the
    operator's), one per URL kept in `clients`; None without either."""
    url = model.spec.rollout.analysis.prometheus_url or (
        str(config.prometheus_url) if config.prometheus_url else None
    )
    if url is None:
        return None
    client = clients.get(url)
    if client is None:
        client = clients[url] = Prometheus(url, config.prometheus_timeout_seconds)
    return client


def _bound(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf") else float(text)
