"""The prediction-log contract at the core level: the bundle digest and reading decision records
of every log format."""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from creditmodel.core import bundle
from creditmodel.core import prediction_log as plog
from tests.core.bundles import files, manifest

pytestmark = pytest.mark.unit

REASONS = ("R02: Housing", "R01: Age in years", "", "")
V1_ROW = {
    plog.TIMESTAMP: "2026-11-20T09:30:00Z",
    plog.REQUEST_ID: "req-1",
    plog.MODEL: "german-credit",
    plog.VERSION: "v1",
    plog.VARIANT: "int8",
    plog.PROBABILITY: 0.25,
    plog.SCORE: 568,
    plog.input_column("age"): 30,
    plog.input_column("housing"): "rent",
}
DIGEST = "sha256:" + "ab" * 32
V2_ROW = {
    **V1_ROW,
    plog.LOG_FORMAT: 2,
    plog.BUNDLE_DIGEST: DIGEST,
    **dict(zip(plog.REASON_CODE_COLUMNS, REASONS, strict=True)),
}


def test_the_digest_is_the_sha256sum_listing_of_the_bundle_files(tmp_path: Path) -> None:
    contents = files()
    bundle.publish_bundle(str(tmp_path), contents, manifest(contents))
    loaded = bundle.load_bundle(str(tmp_path))
    # What `sha256sum <files, sorted> | sha256sum` computes, from the bytes on disk.
    listing = "".join(
        f"{hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()}  {name}\n"
        for name in sorted(contents)
    )
    expected = "sha256:" + hashlib.sha256(listing.encode()).hexdigest()
    assert plog.bundle_digest(loaded.manifest.files) == expected
    assert plog.bundle_digest(dict(reversed(loaded.manifest.files.items()))) == expected


def test_the_digest_ignores_manifest_formatting_and_follows_every_file_byte() -> None:
    contents = files()
    published = manifest(contents)
    reparsed = bundle.Manifest.model_validate(json.loads(published.to_json()))  # any JSON layout
    digest = plog.bundle_digest(published.files)
    assert plog.bundle_digest(reparsed.files) == digest
    assert digest.startswith("sha256:")
    assert len(digest) == len("sha256:") + 64
    for name in contents:
        changed = {**contents, name: contents[name] + b" "}
        assert plog.bundle_digest(manifest(changed).files) != digest, name
    with pytest.raises(ValueError, match="newline"):
        plog.bundle_digest({"a\nb": bundle.file_entry(b"")})
    with pytest.raises(ValueError, match="needs the manifest's files"):
        plog.bundle_digest({})


def test_a_format_2_row_carries_the_decision_record() -> None:
    record = plog.decision_record(V2_ROW)
    assert record.log_format == plog.FORMAT_VERSION == 2
    assert (record.request_id, record.version, record.variant) == ("req-1", "v1", "int8")
    assert (record.probability, record.score) == (0.25, 568)
    assert record.bundle_digest == DIGEST
    assert record.reason_codes == REASONS
    assert record.inputs == {"age": 30, "housing": "rent"}


def test_a_format_1_row_is_still_read_without_the_new_fields() -> None:
    record = plog.decision_record(V1_ROW)
    assert record.log_format == 1
    assert record.bundle_digest is None
    assert record.reason_codes is None
    assert (record.probability, record.score) == (0.25, 568)


def test_unknown_columns_are_ignored_and_pandas_gaps_are_not_data() -> None:
    future = {**V2_ROW, plog.LOG_FORMAT: 3, "explanation_uri": "s3://x", "new_metric": 1.5}
    record = plog.decision_record(future)
    assert record.log_format == 3
    assert record.reason_codes == REASONS
    assert "explanation_uri" not in record.inputs
    # pandas fills the columns a mixed window's older parts lack with NaN (floats)
    gaps = {
        **V1_ROW,
        plog.LOG_FORMAT: math.nan,
        plog.BUNDLE_DIGEST: math.nan,
        **dict.fromkeys(plog.REASON_CODE_COLUMNS, math.nan),
    }
    record = plog.decision_record(gaps)
    assert (record.log_format, record.bundle_digest, record.reason_codes) == (1, None, None)
    # a request that did not ask for reason codes logs null codes, not four empty slots
    unasked = {**V2_ROW, **dict.fromkeys(plog.REASON_CODE_COLUMNS)}
    assert plog.decision_record(unasked).reason_codes is None


def test_parts_of_both_formats_read_through_parquet() -> None:
    def part(row: dict[str, object]) -> bytes:
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist([row]), sink)
        return sink.getvalue()

    records = [
        plog.decision_record(row)
        for data in (part(V1_ROW), part(V2_ROW))
        for row in pq.read_table(io.BytesIO(data)).to_pylist()
    ]
    assert [r.log_format for r in records] == [1, 2]
    assert [r.reason_codes for r in records] == [None, REASONS]
    assert [r.bundle_digest for r in records] == [None, DIGEST]


def test_the_decision_columns_are_new_in_format_2() -> None:
    assert not set(plog.DECISION_COLUMNS) & set(plog.METADATA_COLUMNS)
    assert len(plog.REASON_CODE_COLUMNS) == plog.REASON_CODES_PER_ROW == 4
