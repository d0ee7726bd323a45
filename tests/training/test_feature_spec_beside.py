"""A feature spec published beside the data is used without `--features` (how the operator's
training Job gets descriptions, reason codes and audit-only columns)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from creditmodel.core.storage import open_store
from creditmodel.training import cli, data
from creditmodel.training.errors import BadInputError
from tests.support.minio import S3Bucket

pytestmark = pytest.mark.integration

DATA_DIR = Path(data.__file__).parent / "data"


def args(data_uri: str, *extra: str) -> list[str]:
    return [
        "--data",
        data_uri,
        "--target",
        "credit_risk",
        "--positive-label",
        "bad",
        "--model-name",
        "german-credit",
        "--output",
        "/tmp/unused",
        *extra,
    ]


def test_local_spec_beside_the_data_is_picked_up(tmp_path: Path) -> None:
    shutil.copy(DATA_DIR / "german_credit.csv", tmp_path / "german_credit.csv")
    assert data.feature_spec_beside(str(tmp_path / "german_credit.csv")) is None
    shutil.copy(DATA_DIR / "german_credit.features.json", tmp_path / "german_credit.features.json")
    assert data.feature_spec_beside(str(tmp_path / "german_credit.csv")) == str(
        tmp_path / "german_credit.features.json"
    )
    config = cli.config_from(cli.parser().parse_args(args(str(tmp_path / "german_credit.csv"))))
    assert "age" in config.audit_only


def test_spec_beside_s3_data_is_picked_up(s3: S3Bucket) -> None:
    store = open_store(f"{s3.uri}/german-credit")
    store.write_bytes("german.csv", (DATA_DIR / "german_credit.csv").read_bytes())
    assert data.feature_spec_beside(f"{s3.uri}/german-credit/german.csv") is None
    store.write_bytes(
        "german.features.json", (DATA_DIR / "german_credit.features.json").read_bytes()
    )
    config = cli.config_from(cli.parser().parse_args(args(f"{s3.uri}/german-credit/german.csv")))
    assert "age" in config.audit_only


def test_explicit_spec_that_is_missing_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"--features .*nope\.json: .*does not exist"):
        cli.config_from(
            cli.parser().parse_args(
                args(str(DATA_DIR / "german_credit.csv"), "--features", str(tmp_path / "nope.json"))
            )
        )


def test_data_whose_spec_name_would_be_too_long_has_no_spec(tmp_path: Path) -> None:
    """A data file named near the filesystem's limit: the spec's name (`.features.json` for
    `.csv`) cannot exist, so there is none; checking for it raised ENAMETOOLONG out of the CLI."""
    csv = tmp_path / ("x" * 245 + ".csv")
    shutil.copy(DATA_DIR / "german_credit.csv", csv)
    assert data.feature_spec_beside(str(csv)) is None
    config = cli.config_from(cli.parser().parse_args(args(str(csv))))
    assert config.audit_only == []
