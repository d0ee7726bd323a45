from __future__ import annotations

import pytest

from creditmodel.core import bundle
from creditmodel.core.storage import S3Store, StorageError, check_writable, open_store
from tests.core.bundles import files, manifest
from tests.support.minio import S3Bucket

pytestmark = pytest.mark.integration


def test_publish_and_load_through_minio(s3: S3Bucket) -> None:
    contents = files()
    uri = f"{s3.uri}/german-credit/v1"
    bundle.publish_bundle(uri, contents, manifest(contents))
    loaded = bundle.load_bundle(uri)
    assert loaded.files == contents


def test_tampered_object_is_refused(s3: S3Bucket) -> None:
    contents = files()
    uri = f"{s3.uri}/german-credit/v1"
    bundle.publish_bundle(uri, contents, manifest(contents))
    s3.server.client().put_object(Bucket=s3.bucket, Key="german-credit/v1/model.onnx", Body=b"evil")
    with pytest.raises(bundle.BundleError, match=r"model\.onnx: checksum mismatch"):
        bundle.load_bundle(uri)


def _keys(s3: S3Bucket, prefix: str = "") -> list[str]:
    listing = s3.server.client().list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


@pytest.mark.parametrize("nth", [3, len(files()) + 1])
def test_a_failed_upload_removes_what_it_uploaded(
    s3: S3Bucket, monkeypatch: pytest.MonkeyPatch, nth: int
) -> None:
    """The 3rd upload (or the manifest's) fails the way a dropped connection does: the objects
    already uploaded are deleted again, so the prefix holds no files without a manifest."""
    attempted: list[str] = []
    original = S3Store.write_bytes

    def write(self: S3Store, name: str, data: bytes) -> None:
        attempted.append(name)
        if len(attempted) == nth:
            raise StorageError(f"cannot write {name}: injected failure")
        original(self, name, data)

    monkeypatch.setattr(S3Store, "write_bytes", write)
    contents = files()
    uri = f"{s3.uri}/german-credit/v1"
    with pytest.raises(StorageError, match="injected failure"):
        bundle.publish_bundle(uri, contents, manifest(contents))
    assert len(attempted) == nth
    assert _keys(s3) == []
    monkeypatch.setattr(S3Store, "write_bytes", original)
    bundle.publish_bundle(uri, contents, manifest(contents))  # the retry publishes cleanly
    assert bundle.load_bundle(uri).files == contents


def test_a_read_back_mismatch_on_s3_removes_the_upload(
    s3: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = S3Store.read_bytes

    def corrupt(self: S3Store, name: str) -> bytes:
        data = original(self, name)
        return b"" if name == bundle.MODEL_INT8 else data

    monkeypatch.setattr(S3Store, "read_bytes", corrupt)
    contents = files()
    with pytest.raises(bundle.BundleError, match=r"model\.int8\.onnx: read-back differs"):
        bundle.publish_bundle(f"{s3.uri}/german-credit/v1", contents, manifest(contents))
    assert _keys(s3) == []


def test_write_probe_leaves_no_object(s3: S3Bucket) -> None:
    store = open_store(f"{s3.uri}/models/demo/v1")
    check_writable(store)
    assert _keys(s3) == []


def test_write_probe_reports_a_missing_bucket(s3: S3Bucket) -> None:
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        check_writable(open_store("s3://no-such-bucket/models"))
