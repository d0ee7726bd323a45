"""Read training data (CSV or Parquet) from a local path or `s3://bucket/key`.

Problems with the file itself (missing, unreadable, empty, not CSV/Parquet) are `BadInputError`;
problems reaching S3 (bucket, credentials, endpoint) stay `StorageError` from the shared contract.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import re
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from creditmodel.core import bundle
from creditmodel.core.storage import check_writable, open_store, redact
from creditmodel.training import features
from creditmodel.training.errors import BadInputError

PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class Dataset:
    uri: str
    frame: pd.DataFrame
    sha256: str
    size: int


FEATURE_SPEC_SUFFIX = ".features.json"
_DATA_SUFFIX = re.compile(r"\.(csv|parquet|pq)$", re.IGNORECASE)


def feature_spec_beside(uri: str) -> str | None:
    """`<data stem>.features.json` next to the data, if one was published with it, so that a
    training Job (the operator's) gets descriptions, reason codes and audit-only columns without
    an extra argument. Storage errors propagate: a spec that might exist must not be ignored."""
    candidate = _DATA_SUFFIX.sub("", uri) + FEATURE_SPEC_SUFFIX
    parsed = urlparse(candidate)
    if parsed.scheme == "s3":
        parent, _, name = parsed.path.strip("/").rpartition("/")
        if not parsed.netloc or not name:
            return None
        return candidate if open_store(f"s3://{parsed.netloc}/{parent}").exists(name) else None
    if parsed.scheme not in ("", "file"):
        return None
    try:
        return (
            candidate
            if Path(parsed.path if parsed.scheme == "file" else candidate).is_file()
            else None
        )
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return None  # the spec's name is longer than the data's: no such file can exist
        raise BadInputError(
            f"feature spec {redact(candidate)}: cannot be checked for ({exc.strerror})"
        ) from None


def read_bytes(uri: str) -> bytes:
    parsed = urlparse(uri)
    where = redact(uri)
    if parsed.scheme == "s3":
        key = parsed.path.strip("/")
        if not parsed.netloc or not key:
            raise BadInputError(f"data URI {where!r}: an S3 data URI needs s3://bucket/key")
        parent, _, name = key.rpartition("/")
        store = open_store(f"s3://{parsed.netloc}/{parent}")
        return store.read_bytes(name)
    if parsed.scheme not in ("", "file"):
        raise BadInputError(
            f"data URI {where!r}: unsupported scheme {parsed.scheme!r} (use a path or s3://)"
        )
    if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
        # file://host/x was read as the local /x, whatever the host
        raise BadInputError(f"data URI {where!r}: a file URI names no other host (file:///path)")
    path = Path(parsed.path if parsed.scheme == "file" else uri)
    try:
        if not path.is_dir() and path.exists() and not path.is_file():
            # a FIFO or a device: reading it waited for a writer that never came
            raise BadInputError(f"data file {where}: is not a regular file")
        return path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"data file {where}: does not exist") from None
    except IsADirectoryError:
        raise BadInputError(
            f"data file {where}: is a directory, not a CSV or Parquet file"
        ) from None
    except OSError as exc:
        raise BadInputError(f"data file {where}: cannot be read ({exc.strerror})") from None


def parse(
    uri: str, raw: bytes, *, categorical: Collection[str] = (), target: str | None = None
) -> pd.DataFrame:
    """The file as a frame. In a CSV, the columns in `categorical` and every feature column of
    true/false words keep their text as written: pandas read "007" as 7 and "true" as True, so
    the bundle learned categories "7" and "True" that a client sending the data's own spelling
    was refused for. The target keeps pandas' reading (its label is matched as before)."""
    where = redact(uri)
    if not raw.strip():
        raise BadInputError(f"data file {where}: is empty")
    suffix = Path(urlparse(uri).path).suffix.lower()
    if raw.startswith(PARQUET_MAGIC) or suffix in (".parquet", ".pq"):
        _check_header(where, _parquet_columns(raw))
        try:
            return pd.read_parquet(io.BytesIO(raw))
        except Exception as exc:  # pyarrow raises many types for a corrupt file
            raise BadInputError(f"data file {where}: not a readable Parquet file ({exc})") from None
    try:
        # index_col=False: pandas took the first field of rows one longer than the header for
        # an index, which shifted every column under the wrong name (and a trailing comma on
        # each row too); rows longer than the header are refused instead.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = _read_csv(raw, set(categorical))
            words = {c for c in frame.columns if c != target and _holds_booleans(frame[c])}
            if words:
                frame = _read_csv(raw, set(categorical) | words)
    except pd.errors.ParserWarning:
        raise BadInputError(
            f"data file {where}: rows hold more fields than the header names"
            f" ({len(_csv_header(raw))}); every column needs a name"
        ) from None
    except UnicodeDecodeError as exc:
        raise BadInputError(
            f"data file {where}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BadInputError(f"data file {where}: not a readable CSV file ({exc})") from None
    # pandas renames a repeated header name (`x`, `x.1`), which would surface later as a
    # puzzling feature name; the header as written names the real problem.
    _check_header(where, _csv_header(raw))
    nul = raw.find(b"\x00")
    if nul >= 0:  # pandas' parser ends a value there: "re\0nt" became the category "re"
        raise BadInputError(f"data file {where}: a NUL byte at byte {nul}; CSV text holds none")
    return frame


def _read_csv(raw: bytes, text: set[str]) -> pd.DataFrame:
    return pd.read_csv(
        io.BytesIO(raw),
        skipinitialspace=True,
        index_col=False,
        dtype=dict.fromkeys(text, str),  # a name the file lacks is ignored
    )


def _holds_booleans(column: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(column):
        return True
    return pd.api.types.is_object_dtype(column) and any(isinstance(v, bool) for v in column)


def _check_header(where: str, names: list[str]) -> None:
    problem = features.duplicate_columns([name for name in names if name])
    if problem:
        raise BadInputError(f"data file {where}: {problem}")


def _csv_header(raw: bytes) -> list[str]:
    """The first non-blank record, parsed the way pandas parsed it (comma, double quotes,
    leading spaces skipped); only as much of the file is decoded as the header needs."""
    text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline="")
    try:
        return next((row for row in csv.reader(text, skipinitialspace=True) if row), [])
    except (UnicodeDecodeError, csv.Error):
        return []


def _parquet_columns(raw: bytes) -> list[str]:
    """Column names from the Parquet footer (pandas cannot even load duplicated ones); empty
    when the footer is unreadable, which reading the file then reports."""
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(io.BytesIO(raw)).names)
    except Exception:  # a corrupt file: pd.read_parquet explains it
        return []


def load(uri: str, *, categorical: Collection[str] = (), target: str | None = None) -> Dataset:
    raw = read_bytes(uri)
    frame = parse(uri, raw, categorical=categorical, target=target)
    return Dataset(uri=uri, frame=frame, sha256=hashlib.sha256(raw).hexdigest(), size=len(raw))


def check_output(uri: str) -> None:
    """Fail before training, not after, when the output cannot take a bundle."""
    scheme = urlparse(uri).scheme
    if scheme not in ("", "file", "s3"):  # bad input, as for --data, not a storage failure
        raise BadInputError(
            f"output URI {redact(uri)!r}: unsupported scheme {scheme!r} (use a path or s3://)"
        )
    store = open_store(uri)
    store.list_names()  # surfaces a missing bucket, bad credentials or a dead endpoint now
    if store.exists(bundle.MANIFEST):
        raise bundle.BundleError(
            f"{redact(uri)}: a bundle is already published here; bundles are immutable"
        )
    check_writable(store)  # probes with a hidden directory or object, removed again
