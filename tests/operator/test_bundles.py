"""operator.bundles.resolve: a published bundle's manifest is read once per process (bundles are
immutable; a thousand CreditModels on one bundle made a thousand reads), what could not be used is
read again, and lookups of one URI at the same time make one read."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from creditmodel.core import bundle
from creditmodel.operator import bundles
from creditmodel.operator.rollout import Resolved
from tests.core import bundles as fake

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def nothing_kept() -> Iterator[None]:
    bundles._resolved.clear()
    yield
    bundles._resolved.clear()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    read = bundles._resolve

    def counted(uri: str) -> Resolved:
        seen.append(uri)
        return read(uri)

    monkeypatch.setattr(bundles, "_resolve", counted)
    return seen


def published(tmp_path: Path, version: str) -> str:
    uri = str(tmp_path / version)
    files = fake.files()
    bundle.publish_bundle(uri, files, fake.manifest(files, version))
    return uri


def test_a_published_bundle_is_read_once(tmp_path: Path, reads: list[str]) -> None:
    uri = published(tmp_path, "v1")
    assert asyncio.run(bundles.resolve(uri)) == Resolved(uri, "v1")
    shutil.rmtree(uri)  # gone from the store: the answer kept still stands
    assert asyncio.run(bundles.resolve(uri)) == Resolved(uri, "v1")
    assert reads == [uri]


def test_what_could_not_be_used_is_read_again(tmp_path: Path, reads: list[str]) -> None:
    uri = published(tmp_path, "v1")
    manifest = Path(uri) / "manifest.json"
    good = manifest.read_bytes()
    manifest.write_text("{not json")
    assert asyncio.run(bundles.resolve(uri)).error
    manifest.write_bytes(good)
    assert asyncio.run(bundles.resolve(uri)) == Resolved(uri, "v1")
    assert reads == [uri, uri]


def test_lookups_at_the_same_time_make_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = published(tmp_path, "v1")
    started, release = threading.Event(), threading.Event()
    read, calls = bundles._resolve, []

    def slow(uri: str) -> Resolved:
        calls.append(uri)
        started.set()
        release.wait(10)
        return read(uri)

    monkeypatch.setattr(bundles, "_resolve", slow)
    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(bundles._resolve_once, uri) for _ in range(8)]
        started.wait(10)
        release.set()
        assert {a.result(10) for a in answers} == {Resolved(uri, "v1")}
    assert calls == [uri]
    assert bundles._resolving == {}


def test_at_most_the_kept_number_of_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundles, "RESOLVED_KEPT", 2)
    uris = [published(tmp_path, f"v{i}") for i in range(3)]
    for uri in uris:
        asyncio.run(bundles.resolve(uri))
    assert [key[0] for key in bundles._resolved] == uris[1:]
