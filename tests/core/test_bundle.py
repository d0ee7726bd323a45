from __future__ import annotations

import json
from pathlib import Path

import pytest

from creditmodel.core import bundle
from creditmodel.core.storage import LocalStore, open_store
from tests.core.bundles import REFERENCE, SCHEMA, files, manifest

pytestmark = pytest.mark.unit


def publish(path: Path) -> dict[str, bytes]:
    contents = files()
    bundle.publish_bundle(str(path), contents, manifest(contents))
    return contents


def test_round_trip_verifies_and_parses(tmp_path: Path) -> None:
    contents = publish(tmp_path / "b")
    loaded = bundle.load_bundle(str(tmp_path / "b"))
    assert loaded.version == "v1"
    assert loaded.schema == SCHEMA
    assert loaded.reference == REFERENCE
    assert loaded.files == contents
    assert loaded.manifest.gates_passed


def test_manifest_is_written_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    original = LocalStore.write_bytes

    def record(self: LocalStore, name: str, data: bytes) -> None:
        order.append(name)
        original(self, name, data)

    monkeypatch.setattr(LocalStore, "write_bytes", record)
    publish(tmp_path / "b")
    assert order[-1] == bundle.MANIFEST
    assert sorted(order[:-1]) == sorted(files())


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    publish(tmp_path / "b")
    (tmp_path / "b" / bundle.MODEL_INT8).write_bytes(b"int8-model-bytez")
    with pytest.raises(bundle.BundleError, match=r"model\.int8\.onnx: checksum mismatch"):
        bundle.load_bundle(str(tmp_path / "b"))


def test_unfinished_upload_is_not_a_bundle(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "b"))
    for name, data in files().items():
        store.write_bytes(name, data)
    with pytest.raises(bundle.BundleError, match=r"no manifest\.json; not a published bundle"):
        bundle.load_bundle(str(tmp_path / "b"))


def test_bundles_are_immutable(tmp_path: Path) -> None:
    publish(tmp_path / "b")
    with pytest.raises(bundle.BundleError, match="already published"):
        publish(tmp_path / "b")


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    publish(tmp_path / "b")
    path = tmp_path / "b" / bundle.MANIFEST
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "format_version": 2}))
    with pytest.raises(bundle.BundleError, match="format_version 2 is not supported"):
        bundle.load_bundle(str(tmp_path / "b"))


def test_invalid_manifest_names_the_field(tmp_path: Path) -> None:
    publish(tmp_path / "b")
    path = tmp_path / "b" / bundle.MANIFEST
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "model_name": "Not A DNS Name"}))
    with pytest.raises(bundle.BundleError, match="model_name: String should match pattern"):
        bundle.load_bundle(str(tmp_path / "b"))


def test_manifest_must_list_required_files(tmp_path: Path) -> None:
    contents = files()
    del contents[bundle.MODEL_CARD]
    bundle.publish_bundle(str(tmp_path / "b"), contents, manifest(contents))
    with pytest.raises(bundle.BundleError, match=r"does not list model_card\.md"):
        bundle.load_bundle(str(tmp_path / "b"))


def test_reference_must_cover_the_schema(tmp_path: Path) -> None:
    contents = files()
    contents[bundle.REFERENCE] = (
        REFERENCE.model_copy(update={"features": {"age": REFERENCE.features["age"]}})
        .model_dump_json()
        .encode()
    )
    bundle.publish_bundle(str(tmp_path / "b"), contents, manifest(contents))
    with pytest.raises(bundle.BundleError, match=r"disagree on features \['housing'\]"):
        bundle.load_bundle(str(tmp_path / "b"))


def test_publish_refuses_a_manifest_that_does_not_match(tmp_path: Path) -> None:
    contents = files()
    wrong = manifest({**contents, bundle.MODEL_FP32: b"other"})
    with pytest.raises(bundle.BundleError, match="manifest entry does not match"):
        bundle.publish_bundle(str(tmp_path / "b"), contents, wrong)
    assert not (tmp_path / "b" / bundle.MANIFEST).exists()
