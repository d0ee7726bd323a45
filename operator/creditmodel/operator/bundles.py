"""Reads from the object store with the operator's own S3 environment: a published bundle's
manifest (never the model bytes), to learn its version and whether its gates passed, and the drift
job's latest report. Blocking boto3 runs in a thread."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import threading
from collections import OrderedDict
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from pydantic import ValidationError

from creditmodel.core.bundle import BundleError, read_manifest
from creditmodel.core.drift import DriftSummary
from creditmodel.core.prediction_log import latest_report_name
from creditmodel.core.storage import S3Store, StorageError, Store, open_store, s3_client
from creditmodel.operator.rollout import DriftReport, Resolved


def _environment() -> tuple[str | None, str | None]:
    endpoint = os.environ.get("S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    return endpoint, os.environ.get("AWS_ACCESS_KEY_ID")


RESOLVED_KEPT = 1024
"""Successful lookups kept (a few hundred bytes each): one per bundle URI in use, and then some."""
_resolved: OrderedDict[tuple[str, str | None, str | None], Resolved] = OrderedDict()
_resolving: dict[tuple[str, str | None, str | None], threading.Lock] = {}
"""A lock per URI being looked up: those asking for it meanwhile wait and find its answer kept,
and a slow store behind one URI holds up no other."""
_locks_lock = threading.Lock()
_client_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _new_client(endpoint: str | None, access_key: str | None) -> Any:
    del endpoint, access_key  # part of the key only: a changed environment gets a new client
    return s3_client()


def _shared_client(endpoint: str | None, access_key: str | None) -> Any:
    with _client_lock:  # lru_cache alone lets threads that miss together each build one
        return _new_client(endpoint, access_key)


def _open(uri: str) -> Store:
    """A store for `uri` on one boto3 client shared by every read (clients are thread-safe):
    building one costs ~0.2 s of CPU and ~10 MB, so a client per read made a thousand
    CreditModels applied at once wait minutes on the operator's CPU."""
    store = open_store(uri)
    if isinstance(store, S3Store):
        store = dataclasses.replace(store, _client=_shared_client(*_environment()))
    return store


def _resolve(uri: str) -> Resolved:
    parsed = urlparse(uri)
    store_path = parsed.path if parsed.scheme == "file" else uri
    if parsed.scheme != "s3" and not open_store(uri).exists("manifest.json"):
        # A path inside the predictor image (e.g. the embedded reference bundle): the operator
        # cannot read it; the predictor verifies it on load, and the name gives the version.
        return Resolved(uri, PurePosixPath(store_path).name or "embedded")
    try:
        manifest = read_manifest(_open(uri))
    except (BundleError, StorageError) as exc:
        return Resolved(uri, error=str(exc))
    return Resolved(uri, manifest.version, gates_passed=manifest.gates_passed)


def _resolve_once(uri: str) -> Resolved:
    """A published bundle is immutable (its files never change under its URI), so its manifest
    is read once per operator process: a thousand CreditModels applied at once on one bundle
    made a thousand reads of the same manifest, a seventh of the operator's py-spy samples. What
    could not be used is not kept: a bundle published, or a store repaired, later is found on the
    next pass."""
    key = (uri, *_environment())
    with _locks_lock:
        lock = _resolving.setdefault(key, threading.Lock())
    with lock:
        found = _resolved.get(key)
        if found is not None:
            return found
        found = _resolve(uri)
        with _locks_lock:
            if found.error is None:
                _resolved[key] = found
                if len(_resolved) > RESOLVED_KEPT:
                    _resolved.popitem(last=False)
            _resolving.pop(key, None)
        return found


async def resolve(uri: str) -> Resolved:
    found = _resolved.get((uri, *_environment()))
    return found if found is not None else await asyncio.to_thread(_resolve_once, uri)


@functools.lru_cache(maxsize=256)
def _cached_store(uri: str, endpoint: str | None, access_key: str | None) -> Store:
    del endpoint, access_key  # part of the key only: a changed environment gets a new client
    return open_store(uri)


def _log_store(log_uri: str) -> Store:
    """One store (and boto3 client, ~0.2 s of CPU to build) per log root, reused by every poll."""
    return _cached_store(log_uri, *_environment())


def _read_drift_report(log_uri: str, model: str) -> DriftReport:
    name = latest_report_name(model)
    where = f"{log_uri.rstrip('/')}/{name}"
    try:
        store = _log_store(log_uri)
        if not store.exists(name):
            return DriftReport()  # no report yet: the CronJob has not run
        data = store.read_bytes(name)
    except StorageError as exc:
        return DriftReport(error=f"cannot read the drift report: {exc}")
    try:
        return DriftReport(DriftSummary.model_validate_json(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in exc.errors()[:3]
        )
        return DriftReport(error=f"{where} is not a drift summary: {problems}")


async def read_drift_report(log_uri: str, model: str) -> DriftReport:
    """The newest summary the drift job left for `model`; absence and failures are values, so a
    store outage never stops the reconcile loop (the next pass tries again)."""
    return await asyncio.to_thread(_read_drift_report, log_uri, model)
