from __future__ import annotations

from pathlib import Path

import pytest

from creditmodel.core.storage import LocalStore, S3Store, StorageError, open_store

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
