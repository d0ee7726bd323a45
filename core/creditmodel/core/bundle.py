"""Model bundle, format version 1: immutable files plus `manifest.json`, written last as the
commit marker. A reader verifies every checksum before any byte is used, so a half-uploaded or
tampered bundle is refused instead of served.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from creditmodel.core.errors import first_error
from creditmodel.core.points import PointsScaling
from creditmodel.core.reference import Reference
from creditmodel.core.schema import Schema
from creditmodel.core.storage import LocalStore, StorageError, Store, open_store, redact

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_Model = TypeVar("_Model", bound=BaseModel)
MANIFEST = "manifest.json"
MODEL_FP32 = "model.onnx"
MODEL_INT8 = "model.int8.onnx"
SCHEMA = "schema.json"
REFERENCE = "reference.json"
MODEL_CARD = "model_card.md"
REQUIRED_FILES = (MODEL_FP32, MODEL_INT8, SCHEMA, REFERENCE, MODEL_CARD)


class BundleError(Exception):
    """The bundle is missing, incomplete, corrupt or of an unknown format."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, Field(ge=0)]


class Lineage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_uri: str
    data_sha256: str
    rows: int
    code_version: str
    seed: int
    params: dict[str, Any] = {}


class Gate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    detail: str = ""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = 1
    model_name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    created_at: datetime
    lineage: Lineage
    files: dict[str, FileEntry]
    metrics: dict[str, float] = {}
    gates: list[Gate] = []

    @property
    def gates_passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    def to_json(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(data: bytes) -> FileEntry:
    return FileEntry(sha256=sha256_hex(data), size=len(data))


@dataclass(frozen=True)
class Bundle:
    """A verified bundle held in memory (model files are small: tens of kilobytes)."""

    uri: str
    manifest: Manifest
    schema: Schema
    reference: Reference
    files: dict[str, bytes]

    @property
    def version(self) -> str:
        return self.manifest.version


def read_manifest(store: Store) -> Manifest:
    """The manifest alone (the operator needs no model bytes)."""
    where = redact(store.uri)
    if not store.exists(MANIFEST):
        raise BundleError(
            f"{where}: no {MANIFEST}; not a published bundle (missing, or an upload that never"
            " finished)"
        )
    raw = store.read_bytes(MANIFEST)
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where}/{MANIFEST}: not valid JSON ({exc})") from None
    if isinstance(document, dict) and document.get("format_version") not in (None, FORMAT_VERSION):
        raise BundleError(
            f"{where}/{MANIFEST}: bundle format_version {document['format_version']!r} is not"
            f" supported (this reader knows {FORMAT_VERSION})"
        )
    try:
        return Manifest.model_validate(document)
    except ValidationError as exc:
        raise BundleError(f"{where}/{MANIFEST}: {first_error(exc)}") from None


def load_bundle(uri: str, *, store: Store | None = None) -> Bundle:
    """Read and verify a bundle: every required file listed, present, and matching its checksum."""
    store = store or open_store(uri)
    where = redact(uri)
    try:
        manifest = read_manifest(store)
        missing = [name for name in REQUIRED_FILES if name not in manifest.files]
        if missing:
            raise BundleError(f"{where}: manifest does not list {', '.join(missing)}")
        files: dict[str, bytes] = {}
        for name, entry in sorted(manifest.files.items()):
            data = store.read_bytes(name)
            if len(data) != entry.size or sha256_hex(data) != entry.sha256:
                raise BundleError(
                    f"{where}/{name}: checksum mismatch (manifest sha256 {entry.sha256[:12]}…,"
                    f" {entry.size} bytes; found {sha256_hex(data)[:12]}…, {len(data)} bytes)"
                )
            files[name] = data
    except StorageError as exc:
        raise BundleError(str(exc)) from None
    schema = _parse(Schema, files[SCHEMA], f"{where}/{SCHEMA}")
    reference = _parse(Reference, files[REFERENCE], f"{where}/{REFERENCE}")
    unknown = set(reference.features) ^ {feature.name for feature in schema.features}
    if unknown:
        raise BundleError(
            f"{where}: {REFERENCE} and {SCHEMA} disagree on features {sorted(unknown)}"
        )
    return Bundle(uri=uri, manifest=manifest, schema=schema, reference=reference, files=files)


def publish_bundle(uri: str, files: dict[str, bytes], manifest: Manifest) -> None:
    """Publish all or nothing: refuse to overwrite, upload every file, read each back and verify
    it, then write the manifest, the commit marker, last. A new local directory is filled under a
    hidden name and renamed into place in one step; anywhere else (an existing directory, S3) a
    failure deletes again whatever this call wrote. A crash (no chance to clean up) before the
    manifest leaves no readable bundle."""
    where = redact(uri)
    store = open_store(uri)
    if store.exists(MANIFEST):
        raise BundleError(f"{where}: a bundle is already published here; bundles are immutable")
    if set(files) != set(manifest.files):
        raise BundleError("manifest.files must list exactly the files being published")
    for name, data in sorted(files.items()):
        if manifest.files[name] != file_entry(data):
            raise BundleError(f"{name}: manifest entry does not match the file")
    if isinstance(store, LocalStore) and not store.root.exists():
        with store.staged() as staging:
            _write(staging, where, files, manifest)
        return
    attempted: list[str] = []
    try:
        _write(store, where, files, manifest, attempted)
    except BaseException:
        _remove(store, where, attempted)
        raise


def _write(
    store: Store,
    where: str,
    files: dict[str, bytes],
    manifest: Manifest,
    attempted: list[str] | None = None,
) -> None:
    """Every file, each read back and compared, then the manifest; `attempted` collects each
    name before its write starts (a failed put may still have landed)."""
    attempted = [] if attempted is None else attempted
    for name, data in sorted(files.items()):
        attempted.append(name)
        store.write_bytes(name, data)
    for name, data in sorted(files.items()):
        if store.read_bytes(name) != data:
            raise BundleError(f"{where}/{name}: read-back differs from what was written")
    attempted.append(MANIFEST)
    store.write_bytes(MANIFEST, manifest.to_json())


def _remove(store: Store, where: str, names: list[str]) -> None:
    """Best-effort removal of a failed publish: the manifest first, so that no reader ever finds
    one whose files are gone."""
    left: list[str] = []
    for name in sorted(names, key=lambda n: n != MANIFEST):
        try:
            store.delete(name)
        except Exception as exc:  # cleanup must never hide the failure that caused it
            log.warning("%s", redact(str(exc)))
            left.append(name)
    if left:
        log.warning("%s: a failed publish left %s behind (no manifest)", where, ", ".join(left))


def _parse(model: type[_Model], raw: bytes, where: str) -> _Model:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise BundleError(f"{where}: {first_error(exc)}") from None


def bundle_scaling(bundle: Bundle) -> PointsScaling:
    """The points scaling the bundle was trained with (manifest lineage params `scoring`): what
    the predictor scores with unless told otherwise, and what its reference scores were binned
    under."""
    params = bundle.manifest.lineage.params.get("scoring")
    return PointsScaling.model_validate(params) if isinstance(params, dict) else PointsScaling()
