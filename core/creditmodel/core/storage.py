"""Byte storage behind a URI: a local directory or an `s3://bucket/prefix` on any S3-compatible store.

S3 endpoint and credentials come from the standard AWS environment variables plus `S3_ENDPOINT_URL`
or `AWS_ENDPOINT_URL`, which is how a Kubernetes Job or KServe predictor receives them from a Secret.
Every failure surfaces as `StorageError` with a message a platform engineer can act on.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


log = logging.getLogger(__name__)

# `scheme://userinfo@`: everything between `://` and the last `@` before the path is credentials.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s\"'<>\\`]*@")
# Query parameters that carry a secret: presigned-URL signatures and credentials, tokens, keys.
_SECRET_PARAM = re.compile(
    r"([?&;](?:[^=&#\s\"'<>`]*(?:signature|token|secret|password|passw|credential|accesskey"
    r"|access_key|apikey|api_key)[^=&#\s\"'<>`]*|sig|key|auth|pwd)=)[^&#\s\"'<>`]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` (a URI, or a message quoting URIs) with the credentials of every URL replaced by
    `***`: the userinfo (`https://user:secret@host` -> `https://***@host`) and secret query
    parameters (X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token, AWSAccessKeyId,
    Signature, token, ...). Every URI that is logged or put in an error message goes through it."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


class StorageError(Exception):
    """The store could not be read or written (missing object or bucket, credentials, network)."""


class Store(Protocol):
    uri: str

    def read_bytes(self, name: str) -> bytes: ...
    def write_bytes(self, name: str, data: bytes) -> None: ...
    def exists(self, name: str) -> bool: ...
    def list_names(self) -> list[str]: ...
    def delete(self, name: str) -> None: ...


def open_store(uri: str, shared_client: bool = False) -> Store:
    """A store for `uri`: `s3://bucket/prefix`, `file:///path` or a plain path. With
    `shared_client`, an S3 store uses the process's `shared_s3_client` instead of its own."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"{redact(uri)!r}: an S3 URI needs a bucket (s3://bucket/prefix)")
        client = shared_s3_client() if shared_client else None
        return S3Store(uri=uri, bucket=parsed.netloc, prefix=parsed.path.strip("/"), _client=client)
    if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
        raise StorageError(f"{redact(uri)!r}: a file URI names no other host (file:///path)")
    if parsed.scheme in ("", "file"):
        root = Path(parsed.path if parsed.scheme == "file" else uri)
        try:
            root.exists()  # a name too long, or a parent that cannot be searched, is known now
        except OSError as exc:
            raise StorageError(f"{redact(uri)}: {exc.strerror}") from None
        return LocalStore(uri=uri, root=root)
    raise StorageError(
        f"{redact(uri)!r}: unsupported scheme {parsed.scheme!r} (use a path or s3://)"
    )


def check_writable(store: Store) -> None:
    """Fail now, before hours of training, when a bundle cannot be written to `store`: a local
    directory that cannot be created or written into, or an S3 prefix that refuses a put."""
    if isinstance(store, LocalStore | S3Store):
        store.check_writable()


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# Read once: os.umask can only be read by setting it, which would race with other threads later.
_UMASK = _read_umask()


def _check_name(name: str) -> None:
    if not name or name.startswith("/") or ".." in Path(name).parts:
        raise StorageError(f"invalid object name {name!r}")


@dataclass
class LocalStore:
    uri: str
    root: Path

    def read_bytes(self, name: str) -> bytes:
        _check_name(name)
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"{redact(self.uri)}: {name} does not exist") from None
        except OSError as exc:
            raise StorageError(f"{redact(self.uri)}: cannot read {name}: {exc.strerror}") from None

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write via a temp file and rename, so readers never see a partial file."""
        _check_name(name)
        target = self.root / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                # mkstemp creates 0600; published files are readable by others (the umask decides).
                os.chmod(tmp, 0o666 & ~_UMASK)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(f"{redact(self.uri)}: cannot write {name}: {exc.strerror}") from None

    def exists(self, name: str) -> bool:
        _check_name(name)
        return (self.root / name).is_file()

    def list_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = (p.relative_to(self.root) for p in self.root.rglob("*") if p.is_file())
        # Hidden files and directories are temp files and staging areas, not objects.
        return sorted(str(n) for n in names if not any(part.startswith(".") for part in n.parts))

    def delete(self, name: str) -> None:
        _check_name(name)
        try:
            (self.root / name).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(
                f"{redact(self.uri)}: cannot delete {name}: {exc.strerror}"
            ) from None

    def _first_existing(self) -> Path:
        """The root, or its nearest ancestor that exists: where a publish creates directories."""
        for candidate in (self.root, *self.root.absolute().parents):
            if candidate.exists():
                return candidate
        return Path("/")

    def check_writable(self) -> None:
        """Probe, with a hidden directory and file removed again, that a bundle can be written
        where `publish` will write it: into the root when it exists, else beside it."""
        base = self._first_existing()
        if not base.is_dir():
            if base == self.root:
                raise StorageError(f"{redact(self.uri)}: exists and is not a directory")
            raise StorageError(f"{redact(self.uri)}: {base} is a file, not a directory")
        try:
            probe = tempfile.mkdtemp(dir=base, prefix=".creditmodel-probe-")
            try:
                Path(probe, "probe").write_bytes(b"")
            finally:
                shutil.rmtree(probe, ignore_errors=True)
        except OSError as exc:
            raise StorageError(
                f"{redact(self.uri)}: cannot write into {base}: {exc.strerror}"
            ) from None

    @contextlib.contextmanager
    def staged(self) -> Iterator[LocalStore]:
        """For a root that does not exist yet: a hidden staging directory beside it to fill,
        renamed to the root in one step when the block finishes (readers see every file or no
        directory), removed with every directory created for it when the block raises."""
        if self.root.exists():
            raise StorageError(f"{redact(self.uri)}: exists; a staged write needs a new directory")
        parent = self.root.absolute().parent
        created = [p for p in (parent, *parent.parents) if not p.exists()]
        try:
            parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{self.root.name}.staging-"))
            # mkdtemp creates 0700; a published bundle is readable by others (the umask decides).
            os.chmod(staging, 0o777 & ~_UMASK)
        except OSError as exc:
            _remove_empty(created)
            raise StorageError(
                f"{redact(self.uri)}: cannot create {parent}: {exc.strerror}"
            ) from None
        try:
            yield LocalStore(uri=self.uri, root=staging)
            try:
                os.rename(staging, self.root)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise StorageError(
                        f"{redact(self.uri)}: appeared while the bundle was being written; not replaced"
                    ) from None
                raise StorageError(
                    f"{redact(self.uri)}: cannot move the staged bundle into place: {exc.strerror}"
                ) from None
            _fsync_dir(parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            _remove_empty(created)
            raise


def _remove_empty(directories: list[Path]) -> None:
    """Remove directories created for a write that failed (deepest first), if still empty."""
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (best effort: some filesystems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def s3_environment() -> tuple[str | None, str | None, str | None]:
    """What an S3 client is built from: the endpoint, the access key and the region."""
    return (
        os.environ.get("S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None,
        os.environ.get("AWS_ACCESS_KEY_ID"),
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    )


_SHARED_KEPT = 4
_shared_clients: dict[tuple[str | None, str | None, str | None], Any] = {}
_shared_lock = threading.Lock()


def shared_s3_client() -> S3Client:
    """One client per S3 environment for the whole process (boto3's clients are thread-safe):
    building one costs about 0.2 s of CPU and 10 MB, which a long-running process that opens a
    store per read (the operator resolving a thousand bundles) cannot pay each time. A changed
    environment gets its own."""
    key = s3_environment()
    with _shared_lock:  # threads that miss together would each build one
        client = _shared_clients.get(key)
        if client is None:
            if len(_shared_clients) >= _SHARED_KEPT:
                _shared_clients.pop(next(iter(_shared_clients)))
            client = _shared_clients[key] = s3_client()
    return client


def s3_client() -> S3Client:
    """An S3 client configured from the environment, with short timeouts and few retries so that
    an unreachable endpoint fails in seconds, not minutes."""
    import boto3
    from botocore.config import Config

    endpoint, _, region = s3_environment()
    config = Config(
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    # A fresh session reads the environment now; boto3's default session caches credentials.
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region or "us-east-1",
        config=config,
    )


@dataclass
class S3Store:
    uri: str
    bucket: str
    prefix: str
    _client: Any = field(default=None, repr=False)

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = s3_client()
        return self._client  # type: ignore[no-any-return]

    def _key(self, name: str) -> str:
        _check_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _error(self, action: str, name: str, exc: Exception) -> StorageError:
        where = f"s3://{self.bucket}/{self._key(name)}" if name else f"s3://{self.bucket}"
        return StorageError(redact(self._explain(action, where, exc)))

    def _explain(self, action: str, where: str, exc: Exception) -> str:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        failed = f"cannot {action} {where}"
        if isinstance(exc, EndpointConnectionError):
            endpoint = exc.kwargs.get("endpoint_url")
            return f"{failed}: S3 endpoint unreachable ({endpoint}); check S3_ENDPOINT_URL"
        if isinstance(exc, NoCredentialsError):
            return f"{failed}: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                return f"{failed}: bucket {self.bucket!r} does not exist"
            if code in ("NoSuchKey", "404", "NotFound"):
                return f"{failed}: object does not exist"
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                return f"{failed}: access denied ({code}); check the S3 credentials"
            return f"{failed}: {code or exc}"
        return f"{failed}: {exc}"

    def read_bytes(self, name: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(name))
            return response["Body"].read()
        except Exception as exc:
            raise self._error("read", name, exc) from None

    def write_bytes(self, name: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)
        except Exception as exc:
            raise self._error("write", name, exc) from None

    def exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error("check", name, exc) from None
        except Exception as exc:
            raise self._error("check", name, exc) from None
        return True

    def list_names(self) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        names: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
                names.extend(obj["Key"][len(base) :] for obj in page.get("Contents", []))
        except Exception as exc:
            raise self._error("list", "", exc) from None
        return sorted(names)

    def delete(self, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except Exception as exc:
            raise self._error("delete", name, exc) from None

    def check_writable(self) -> None:
        """Put and delete a hidden probe object under the prefix. Credentials that may put but
        not delete still publish (the probe is then left behind, with a warning)."""
        name = f".creditmodel-write-probe-{uuid.uuid4().hex}"
        self.write_bytes(name, b"")
        try:
            self.delete(name)
        except StorageError as exc:
            log.warning("write probe left behind: %s", exc)
