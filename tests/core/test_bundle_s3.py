from __future__ import annotations

import pytest

from creditmodel.core import bundle
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
