"""hack/tools.sh is idempotent: once the pinned binaries are cached, a run only relinks ./bin."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.process import BIN, REPO_ROOT

pytestmark = pytest.mark.integration

TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kserve-manager",
    "kwok",
    "helm",
    "minio",
    "prometheus",
    "promtool",
    "wrk",
    "redis-server",
)


def test_second_run_builds_nothing_and_reports_versions() -> None:
    result = subprocess.run(
        ["bash", "hack/tools.sh"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "building" not in result.stderr
    assert "installing Debian package" not in result.stderr
    for name in (
        "kube-apiserver v1.",
        "etcd           3.5.",
        "helm           v3.",
        "kwok           v0.",
    ):
        assert name in result.stderr


def test_stack_env_names_the_third_party_crds_in_the_module_cache() -> None:
    """The CRDs and config come from the Go module cache, never from the repository."""
    env = dict(line.split("=", 1) for line in (BIN / "stack.env").read_text().splitlines())
    dirs = {key: Path(value) for key, value in env.items() if key.endswith("_DIR")}
    assert set(dirs) >= {"KSERVE_CRD_DIR", "KSERVE_WEBHOOK_DIR", "GATEWAY_API_CRD_DIR"}
    for key, path in dirs.items():
        assert path.is_dir(), key
        assert REPO_ROOT not in path.parents, f"{key} points into the repository: {path}"
    assert (dirs["KSERVE_CRD_DIR"] / "serving.kserve.io_inferenceservices.yaml").is_file()


@pytest.mark.parametrize("name", TOOLS)
def test_bin_links_point_at_executables(name: str) -> None:
    path = BIN / name
    assert path.is_symlink(), f"{path} should link into the versioned tool cache"
    assert os.access(path.resolve(), os.X_OK)
