"""hack/tools.sh is idempotent: once the pinned binaries are cached, a run only relinks ./bin."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.process import BIN, REPO_ROOT

pytestmark = pytest.mark.integration

TOOLS = ("etcd", "kube-apiserver", "helm", "minio", "prometheus", "promtool", "wrk", "redis-server")


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
    for name in ("kube-apiserver v1.", "etcd           3.5.", "helm           v3."):
        assert name in result.stderr


@pytest.mark.parametrize("name", TOOLS)
def test_bin_links_point_at_executables(name: str) -> None:
    path = BIN / name
    assert path.is_symlink(), f"{path} should link into the versioned tool cache"
    assert os.access(path.resolve(), os.X_OK)
