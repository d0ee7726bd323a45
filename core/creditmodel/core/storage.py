"""Byte storage behind a URI: a local directory or an `s3://bucket/prefix` on any S3-compatible store.

S3 endpoint and credentials come from the standard AWS environment variables plus `S3_ENDPOINT_URL`
or `AWS_ENDPOINT_URL`, which is how a Kubernetes Job or KServe predictor receives them from a Secret.
Every failure surfaces as `StorageError` with a message a platform engineer can act on.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class StorageError(Exception):
    """The store could not be read or written (missing object or bucket, credentials, network)."""


class Store(Protocol):
    uri: str

    def read_bytes(self, name: str) -> bytes: ...
    def write_bytes(self, name: str, data: bytes) -> None: ...
    def exists(self, name: str) -> bool: ...
    def list_names(self) -> list[str]: ...
    def delete(self, name: str) -> None: ...


def open_store(uri: str) -> Store:
    """A store for `uri`: `s3://bucket/prefix`, `file:///path` or a plain path."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"{uri!r}: an S3 URI needs a bucket (s3://bucket/prefix)")
        return S3Store(uri=uri, bucket=parsed.netloc, prefix=parsed.path.strip("/"))
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else uri
        return LocalStore(uri=uri, root=Path(path))
    raise StorageError(f"{uri!r}: unsupported scheme {parsed.scheme!r} (use a path or s3://)")


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
            raise StorageError(f"{self.uri}: {name} does not exist") from None
        except OSError as exc:
            raise StorageError(f"{self.uri}: cannot read {name}: {exc.strerror}") from None

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
            raise StorageError(f"{self.uri}: cannot write {name}: {exc.strerror}") from None

    def exists(self, name: str) -> bool:
        _check_name(name)
        return (self.root / name).is_file()

    def list_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, name: str) -> None:
        _check_name(name)
        (self.root / name).unlink(missing_ok=True)


def s3_client() -> S3Client:
    """An S3 client configured from the environment, with short timeouts and few retries so that
    an unreachable endpoint fails in seconds, not minutes."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None
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
        region_name=os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1",
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
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        where = f"s3://{self.bucket}/{self._key(name)}" if name else f"s3://{self.bucket}"
        if isinstance(exc, EndpointConnectionError):
            return StorageError(
                f"cannot {action} {where}: S3 endpoint unreachable ({exc.kwargs.get('endpoint_url')});"
                " check S3_ENDPOINT_URL"
            )
        if isinstance(exc, NoCredentialsError):
            return StorageError(
                f"cannot {action} {where}: no S3 credentials (set AWS_ACCESS_KEY_ID and"
                " AWS_SECRET_ACCESS_KEY)"
            )
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                return StorageError(
                    f"cannot {action} {where}: bucket {self.bucket!r} does not exist"
                )
            if code in ("NoSuchKey", "404", "NotFound"):
                return StorageError(f"cannot {action} {where}: object does not exist")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                return StorageError(
                    f"cannot {action} {where}: access denied ({code}); check the S3 credentials"
                )
            return StorageError(f"cannot {action} {where}: {code or exc}")
        return StorageError(f"cannot {action} {where}: {exc}")

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
