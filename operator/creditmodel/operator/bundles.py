"""Reads from the object store with the operator's own S3 environment: a published bundle's
manifest (never the model bytes), to learn its version and whether its gates passed, and the drift
job's latest report. Blocking boto3 runs in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from pathlib import PurePosixPath
from urllib.parse import urlparse

from pydantic import ValidationError

from creditmodel.core.bundle import BundleError, read_manifest
from creditmodel.core.drift import DriftSummary
from creditmodel.core.prediction_log import latest_report_name
from creditmodel.core.storage import StorageError, Store, open_store, s3_environment
from creditmodel.operator.rollout import DriftReport, Resolved

RESOLVED_KEPT = 1024
"""Successful lookups kept (a few hundred bytes each): one per bundle URI in use, and then some."""
_resolved: OrderedDict[tuple[str, str | None, str | None, str | None], Resolved] = OrderedDict()
_resolving: dict[tuple[str, str | None, str | None, str | None], threading.Lock] = {}
"""A lock per URI being looked up: those asking for it meanwhile wait and find its answer kept,
and a slow store behind one URI holds up no other."""
_locks_lock = threading.Lock()


def _open(uri: str) -> Store:
    """A store for `uri` on the process's one boto3 client (core.storage.shared_s3_client): a
    client per read made a thousand CreditModels applied at once wait minutes on the CPU."""
    return open_store(uri, shared_client=True)


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
    key = (uri, *s3_environment())
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
    found = _resolved.get((uri, *s3_environment()))
    return found if found is not None else await asyncio.to_thread(_resolve_once, uri)


def _read_drift_report(log_uri: str, model: str) -> DriftReport:
    name = latest_report_name(model)
    where = f"{log_uri.rstrip('/')}/{name}"
    try:
        store = _open(log_uri)  # the process's one S3 client, reused by every poll
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
