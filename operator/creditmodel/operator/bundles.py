"""Reads a published bundle's manifest (never the model bytes) to learn its version and whether
its gates passed, with the operator's own S3 environment. Blocking boto3 runs in a thread."""

from __future__ import annotations

import asyncio
from pathlib import PurePosixPath
from urllib.parse import urlparse

from creditmodel.core.bundle import BundleError, read_manifest
from creditmodel.core.storage import StorageError, open_store
from creditmodel.operator.rollout import Resolved


def _resolve(uri: str) -> Resolved:
    parsed = urlparse(uri)
    store_path = parsed.path if parsed.scheme == "file" else uri
    if parsed.scheme != "s3" and not open_store(uri).exists("manifest.json"):
        # A path inside the predictor image (e.g. the embedded reference bundle): the operator
        # cannot read it; the predictor verifies it on load, and the name gives the version.
        return Resolved(uri, PurePosixPath(store_path).name or "embedded")
    try:
        manifest = read_manifest(open_store(uri))
    except (BundleError, StorageError) as exc:
        return Resolved(uri, error=str(exc))
    return Resolved(uri, manifest.version, gates_passed=manifest.gates_passed)


async def resolve(uri: str) -> Resolved:
    return await asyncio.to_thread(_resolve, uri)
