"""The `s3` fixture is a real MinIO: prove put/get/list through the project's own storage layer."""

from __future__ import annotations

import pytest

from creditmodel.core.storage import StorageError, open_store
from tests.support.minio import S3Bucket
from tests.support.process import free_port

pytestmark = pytest.mark.integration


def test_put_get_list(s3: S3Bucket) -> None:
    store = open_store(f"{s3.uri}/bundles/v1")
    store.write_bytes("a.txt", b"alpha")
    store.write_bytes("nested/b.bin", bytes(range(256)))

    assert store.read_bytes("a.txt") == b"alpha"
    assert store.read_bytes("nested/b.bin") == bytes(range(256))
    assert store.list_names() == ["a.txt", "nested/b.bin"]
    assert store.exists("a.txt")
    assert not store.exists("missing.txt")
    listed = s3.server.client().list_objects_v2(Bucket=s3.bucket)
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "bundles/v1/a.txt",
        "bundles/v1/nested/b.bin",
    ]


def test_missing_object_is_named(s3: S3Bucket) -> None:
    with pytest.raises(StorageError, match=r"missing\.txt: object does not exist"):
        open_store(s3.uri).read_bytes("missing.txt")


def test_missing_bucket_is_named(s3: S3Bucket) -> None:
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        open_store("s3://no-such-bucket/x").write_bytes("a", b"1")


def test_wrong_credentials_are_reported(s3: S3Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(StorageError, match=r"access denied .*check the S3 credentials"):
        open_store(s3.uri).read_bytes("a")


def test_unreachable_endpoint_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(StorageError, match="S3 endpoint unreachable"):
        open_store("s3://bucket/prefix").read_bytes("a")
