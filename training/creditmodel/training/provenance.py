"""Where a bundle came from, for its manifest's lineage: the code version (package plus git commit,
or what the image says), the training libraries' versions, and a digest of the training frame that
does not depend on how the data was read."""

from __future__ import annotations

import hashlib
import os
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd


def code_version() -> str:
    """Package version plus the git commit when running from a checkout (images set
    CREDITMODEL_CODE_VERSION instead)."""
    if os.environ.get("CREDITMODEL_CODE_VERSION"):
        return os.environ["CREDITMODEL_CODE_VERSION"]
    try:
        version = metadata.version("creditmodel")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}" if commit else version


def library_versions() -> dict[str, str]:
    names = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas")
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def frame_sha256(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
