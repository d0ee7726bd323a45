"""The GitHub workflow users' CI runs: it parses, and every make target it calls exists."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.unit

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yaml"


def make_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z0-9_-]+):", text, re.MULTILINE))


def test_workflow_calls_only_existing_make_targets() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    assert {"lint", "test", "chart", "images", "e2e"} <= set(jobs)
    called = set()
    for job in jobs.values():
        for step in job["steps"]:
            for command in re.findall(r"\bmake ([a-z0-9 -]+)", step.get("run", "")):
                called |= {word for word in command.split() if not word.startswith("-")}
    assert called, "the workflow calls no make target"
    missing = called - make_targets()
    assert not missing, f"make targets the workflow calls but the Makefile lacks: {missing}"


def test_images_are_built_for_every_component() -> None:
    images = yaml.safe_load(WORKFLOW.read_text())["jobs"]["images"]
    components = images["strategy"]["matrix"]["component"]
    assert sorted(components) == ["operator", "predictor", "training"]
    for component in components:
        assert (REPO_ROOT / component / "Dockerfile").is_file()
