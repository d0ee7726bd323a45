from __future__ import annotations

from pathlib import Path

import pytest

from creditmodel.core.storage import LocalStore, S3Store, StorageError, open_store, redact

pytestmark = pytest.mark.unit


def test_uris_pick_the_store() -> None:
    s3 = open_store("s3://bucket/a/b/")
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix) == ("bucket", "a/b")
    assert isinstance(open_store("/tmp/x"), LocalStore)
    assert open_store("file:///tmp/x").root == Path("/tmp/x")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("uri", "message"), [("s3:///key", "needs a bucket"), ("gs://b/k", "unsupported scheme 'gs'")]
)
def test_bad_uris_are_explained(uri: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        open_store(uri)


def test_local_store_round_trip_and_listing(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    store.write_bytes("a/b.txt", b"x")
    store.write_bytes("c.txt", b"y")
    assert store.read_bytes("a/b.txt") == b"x"
    assert store.list_names() == ["a/b.txt", "c.txt"]
    store.delete("c.txt")
    assert not store.exists("c.txt")


@pytest.mark.parametrize("name", ["../escape", "/abs", ""])
def test_object_names_cannot_escape_the_store(tmp_path: Path, name: str) -> None:
    with pytest.raises(StorageError, match="invalid object name"):
        open_store(str(tmp_path)).write_bytes(name, b"x")


def test_missing_local_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"nope\.txt does not exist"):
        open_store(str(tmp_path)).read_bytes("nope.txt")


def test_local_files_are_readable_by_other_users(tmp_path: Path) -> None:
    open_store(str(tmp_path)).write_bytes("model.onnx", b"x")
    assert (tmp_path / "model.onnx").stat().st_mode & 0o044 == 0o044


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("https://user:secret@minio.example:9000", "https://***@minio.example:9000"),
        ("http://AKIA123@host/bucket/key", "http://***@host/bucket/key"),
        ("s3://bucket/prefix/v1", "s3://bucket/prefix/v1"),
        ("/data/applicants.csv", "/data/applicants.csv"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F20260101"
            "&X-Amz-Signature=ab12&X-Amz-Security-Token=tok&x-id=GetObject",
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=***"
            "&X-Amz-Signature=***&X-Amz-Security-Token=***&x-id=GetObject",
        ),
        (
            "http://h/k?AWSAccessKeyId=AKIA&Signature=s%2Bg&Expires=1&token=t&sig=x",
            "http://h/k?AWSAccessKeyId=***&Signature=***&Expires=1&token=***&sig=***",
        ),
        (
            "cannot list s3://b: S3 endpoint unreachable (http://u:p@w@127.0.0.1:1/b?list-type=2);"
            " and 'https://x:y@other/' too",
            "cannot list s3://b: S3 endpoint unreachable (http://***@127.0.0.1:1/b?list-type=2);"
            " and 'https://***@other/' too",
        ),
        ('{"uri": "https://u:p@h", "e": "a@b"}', '{"uri": "https://***@h", "e": "a@b"}'),
    ],
)
def test_redact_removes_credentials_from_urls(text: str, redacted: str) -> None:
    assert redact(text) == redacted
    assert redact(redacted) == redacted


def test_storage_errors_never_carry_endpoint_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://minio:s3cr3t@127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with pytest.raises(StorageError) as caught:
        open_store("s3://bucket/models").list_names()
    assert "S3 endpoint unreachable (http://***@127.0.0.1:1" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)
    # An endpoint botocore refuses outright is echoed in its own message; that is redacted too.
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://minio:s3cr3t@127.0.0.1:1/?X-Amz-Signature=abc")
    with pytest.raises(StorageError) as caught:
        open_store("s3://bucket/models").list_names()
    assert "s3cr3t" not in str(caught.value)
    assert "abc" not in str(caught.value)


def test_unsupported_scheme_error_is_redacted() -> None:
    with pytest.raises(StorageError) as caught:
        open_store("https://user:s3cr3t@host/bundle")
    assert "s3cr3t" not in str(caught.value)
    assert "https://***@host/bundle" in str(caught.value)


def test_a_local_path_too_long_is_a_storage_error(tmp_path: Path) -> None:
    """Every later stat of the root (exists, listing, the writability probe) raised a bare
    OSError out of the CLI for a name the filesystem cannot hold."""
    with pytest.raises(StorageError, match="File name too long"):
        open_store(str(tmp_path / ("é" * 200) / "bundle"))


def test_a_file_uri_naming_another_host_is_refused() -> None:
    with pytest.raises(StorageError, match="a file URI names no other host"):
        open_store("file://nas/models/german")
    assert open_store("file://localhost/tmp/x").root == Path("/tmp/x")  # type: ignore[attr-defined]
