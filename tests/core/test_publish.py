"""Publishing is all or nothing: a publish that fails midway leaves no files behind (and never a
manifest), in a fresh directory, in an existing one, and on S3 (see test_bundle_s3.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from creditmodel.core import bundle, storage
from creditmodel.core.storage import LocalStore, StorageError
from tests.core.bundles import files, manifest
from tests.support.process import unavailable

pytestmark = pytest.mark.unit


def _fail_on_write(monkeypatch: pytest.MonkeyPatch, cls: type, nth: int) -> list[str]:
    """Make the `nth` write_bytes call of `cls` raise, as a full disk or a dropped connection
    would; the names of every write attempted are recorded."""
    attempted: list[str] = []
    original = cls.write_bytes

    def write(self: object, name: str, data: bytes) -> None:
        attempted.append(name)
        if len(attempted) == nth:
            raise StorageError(f"cannot write {name}: injected failure")
        original(self, name, data)

    monkeypatch.setattr(cls, "write_bytes", write)
    return attempted


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _publish(uri: Path | str) -> None:
    contents = files()
    bundle.publish_bundle(str(uri), contents, manifest(contents))


@pytest.mark.parametrize("nth", [1, 3, 6])
def test_a_failed_write_into_a_new_directory_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nth: int
) -> None:
    output = tmp_path / "models" / "demo" / "v1"
    attempted = _fail_on_write(monkeypatch, LocalStore, nth)
    with pytest.raises(StorageError, match="injected failure"):
        _publish(output)
    assert len(attempted) == nth
    assert _tree(tmp_path) == [], "a failed publish left files or directories behind"


def test_a_failed_write_into_an_existing_directory_removes_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "bundle"
    output.mkdir()
    (output / "README").write_text("not ours")
    _fail_on_write(monkeypatch, LocalStore, 3)
    with pytest.raises(StorageError, match="injected failure"):
        _publish(output)
    assert _tree(output) == ["README"]


def test_a_failed_manifest_write_removes_the_model_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "bundle"
    output.mkdir()
    _fail_on_write(monkeypatch, LocalStore, len(files()) + 1)
    with pytest.raises(StorageError, match=r"manifest\.json: injected failure"):
        _publish(output)
    assert _tree(output) == []


def test_a_read_back_mismatch_removes_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = LocalStore.read_bytes

    def corrupt(self: LocalStore, name: str) -> bytes:
        data = original(self, name)
        return data + b"!" if name == bundle.MODEL_CARD else data

    monkeypatch.setattr(LocalStore, "read_bytes", corrupt)
    with pytest.raises(bundle.BundleError, match=r"model_card\.md: read-back differs"):
        _publish(tmp_path / "bundle")
    assert _tree(tmp_path) == []


def test_a_new_directory_appears_complete_in_one_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file lands in a hidden staging directory beside the output, renamed into place
    once the manifest is in it: a reader sees the whole bundle or no directory at all."""
    output = tmp_path / "bundle"
    seen: list[bool] = []
    original = LocalStore.write_bytes

    def write(self: LocalStore, name: str, data: bytes) -> None:
        seen.append(output.exists())
        original(self, name, data)

    monkeypatch.setattr(LocalStore, "write_bytes", write)
    _publish(output)
    assert seen == [False] * (len(files()) + 1)
    assert _tree(tmp_path) == [
        "bundle",
        *(f"bundle/{n}" for n in sorted([*files(), "manifest.json"])),
    ]
    assert bundle.load_bundle(str(output)).version == "v1"
    assert (output.stat().st_mode & 0o777) == 0o777 & ~storage._UMASK


def test_debris_of_a_crashed_publish_is_published_over(tmp_path: Path) -> None:
    output = tmp_path / "bundle"
    output.mkdir()
    (output / bundle.MODEL_FP32).write_bytes(b"half a model")
    _publish(output)
    assert bundle.load_bundle(str(output)).files[bundle.MODEL_FP32] == files()[bundle.MODEL_FP32]


NOBODY = 65534


@pytest.fixture
def read_only_dir() -> Iterator[Path]:
    """A directory no one but root may write into, under a parent anyone may enter (pytest's
    own temporary directories are its user's alone)."""
    with tempfile.TemporaryDirectory() as top:
        Path(top).chmod(0o755)
        path = Path(top) / "read-only"
        path.mkdir()
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)


# --- the write probe that runs before training ----------------------------------------------------


def test_probe_accepts_a_new_directory_and_leaves_nothing(tmp_path: Path) -> None:
    storage.check_writable(storage.open_store(str(tmp_path / "a" / "b")))
    assert _tree(tmp_path) == []


def test_probe_accepts_an_existing_directory_and_leaves_nothing(tmp_path: Path) -> None:
    storage.check_writable(storage.open_store(str(tmp_path)))
    assert _tree(tmp_path) == []


def test_probe_refuses_a_file_where_a_directory_is_expected(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(StorageError, match=r"taken: exists and is not a directory"):
        storage.check_writable(storage.open_store(str(tmp_path / "taken")))
    with pytest.raises(StorageError, match=r"taken is a file, not a directory"):
        storage.check_writable(storage.open_store(str(tmp_path / "taken" / "bundle")))


def test_probe_refuses_a_read_only_directory(read_only_dir: Path) -> None:
    """Root writes anywhere, and tests here may run as root (CI does): then the probe runs in a
    child process as `nobody`, the way a training Job runs as a user of its own."""
    target = str(read_only_dir / "bundle")
    refused = r"bundle: cannot write into .*: Permission denied"
    if os.geteuid() != 0:
        with pytest.raises(StorageError, match=refused):
            storage.check_writable(storage.open_store(target))
        return
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        unavailable("setpriv (util-linux) not found: cannot probe as a user other than root")
        raise AssertionError("unreachable")
    probe = (
        "import sys\n"
        "from creditmodel.core import storage\n"
        "try:\n"
        f"    storage.check_writable(storage.open_store({target!r}))\n"
        "except storage.StorageError as error:\n"
        "    sys.exit(str(error))\n"
    )
    nobody = ["--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
    importable = subprocess.run(
        [setpriv, *nobody, "--", sys.executable, "-c", "import creditmodel.core.storage"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if importable.returncode != 0:  # e.g. a checkout under a home directory only root may read
        unavailable(f"nobody cannot run this checkout's Python: {importable.stderr[-300:]}")
    done = subprocess.run(
        [setpriv, *nobody, "--", sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert re.search(refused, done.stderr.strip()), done.stderr


def test_probe_reports_a_directory_it_cannot_write_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a read-only directory answers to anyone but root (tests here may run as root)."""

    def refuse(*args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(storage.tempfile, "mkdtemp", refuse)
    with pytest.raises(StorageError, match=r"bundle: cannot write into .*: Permission denied"):
        storage.check_writable(storage.open_store(str(tmp_path / "bundle")))
