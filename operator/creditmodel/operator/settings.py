"""Operator settings from the environment (prefix CREDITMODEL_OPERATOR_), typed and validated at
start-up so a misconfigured Deployment fails at once with the variable's name."""

from __future__ import annotations

from pydantic import Field, HttpUrl
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITMODEL_OPERATOR_", extra="ignore")

    prometheus_url: HttpUrl | None = None
    """Prometheus HTTP API used for canary analysis when a CreditModel names none."""
    resync_seconds: float = Field(default=30.0, gt=0)
    """Upper bound between two reconciliations of one CreditModel (children drift, Job progress)."""
    prometheus_timeout_seconds: float = Field(default=10.0, gt=0)
    peering_name: str = "creditmodel-operator"
    workers: int = Field(default=20, ge=1, le=1000)
    """Concurrent reconciliations (kopf's batching of object events)."""
