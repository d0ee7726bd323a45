"""Training against a real MinIO: data read from and bundles published to S3 the way a Job does
(endpoint and keys from the environment), and each S3 failure a clear storage error, exit code 4,
reported before any training time is spent, with nothing published."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from creditmodel.core import bundle
from creditmodel.training import synthetic
from tests.support.minio import S3Bucket
from tests.support.process import free_port
from tests.training.test_cli import base_args, run_failing_midway, train

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_data(s3: S3Bucket) -> str:
    body = io.BytesIO()
    synthetic.generate(1_500, seed=5).to_parquet(body)
    s3.server.client().put_object(
        Bucket=s3.bucket, Key="data/applicants.parquet", Body=body.getvalue()
    )
    return f"{s3.uri}/data/applicants.parquet"


def test_reads_data_from_s3_and_publishes_to_s3(s3: S3Bucket, s3_data: str) -> None:
    output = f"{s3.uri}/models/demo/v1"
    code, summary, stderr = train(*base_args(s3_data, output), "--version", "v1")
    assert code == 0, stderr
    assert summary["uri"] == output
    loaded = bundle.load_bundle(output)
    assert loaded.manifest.lineage.data_uri == s3_data
    keys = {
        o["Key"]
        for o in s3.server.client().list_objects_v2(Bucket=s3.bucket, Prefix="models/")["Contents"]
    }
    assert keys == {f"models/demo/v1/{name}" for name in [*bundle.REQUIRED_FILES, bundle.MANIFEST]}


def test_output_bucket_missing(s3: S3Bucket, tmp_path: Path) -> None:
    data = tmp_path / "a.csv"
    synthetic.generate(300, seed=1).to_csv(data, index=False)
    code, summary, stderr = train(*base_args(data, "s3://no-such-bucket/models/demo"))
    assert code == 4
    assert "bucket 'no-such-bucket' does not exist" in summary["error"]
    assert "search:" not in stderr, "storage must be checked before training"
    assert "Traceback" not in stderr


def test_data_bucket_missing(s3: S3Bucket) -> None:
    code, summary, _ = train(*base_args("s3://no-such-bucket/a.csv", f"{s3.uri}/m"))
    assert code == 4
    assert "bucket 'no-such-bucket' does not exist" in summary["error"]


def test_data_object_missing(s3: S3Bucket) -> None:
    code, summary, _ = train(*base_args(f"{s3.uri}/missing.csv", f"{s3.uri}/m"))
    assert code == 4
    assert "missing.csv: object does not exist" in summary["error"]


def test_wrong_credentials(s3: S3Bucket, s3_data: str) -> None:
    code, summary, stderr = train(
        *base_args(s3_data, f"{s3.uri}/m"), env={"AWS_SECRET_ACCESS_KEY": "wrong"}
    )
    assert code == 4
    assert "access denied" in summary["error"]
    assert "check the S3 credentials" in summary["error"]
    assert "Traceback" not in stderr


def test_endpoint_down(s3: S3Bucket, tmp_path: Path) -> None:
    data = tmp_path / "a.csv"
    synthetic.generate(300, seed=1).to_csv(data, index=False)
    dead = f"http://127.0.0.1:{free_port()}"
    code, summary, _ = train(*base_args(data, f"{s3.uri}/m"), env={"S3_ENDPOINT_URL": dead})
    assert code == 4
    assert "S3 endpoint unreachable" in summary["error"]
    assert dead in summary["error"]
    assert s3.server.client().list_objects_v2(Bucket=s3.bucket).get("KeyCount", 0) == 0


def test_an_upload_failing_midway_exits_4_and_leaves_no_object(s3: S3Bucket, s3_data: str) -> None:
    output = f"{s3.uri}/models/demo/v1"
    code, summary, stderr = run_failing_midway("S3Store", base_args(s3_data, output), s3.env())
    assert code == 4, stderr
    assert "No space left on device" in summary["error"]
    listing = s3.server.client().list_objects_v2(Bucket=s3.bucket, Prefix="models/")
    assert listing.get("KeyCount", 0) == 0
