"""Every shell command in README.md and docs/*.md either runs here and succeeds, or is marked as
needing what this machine does not give a test (tests/docs/commands.py has the convention)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.commands import Block, blocks, marker_problem
from tests.predictor.server import PredictorServer, predictor_server
from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.integration

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
ALL = [block for page in PAGES for block in blocks(page)]
HERE = [block for block in ALL if block.marker is None]
PREDICTOR = [block for block in ALL if block.marker == ("docs-test", "predictor")]
REFUSALS = [block for block in ALL if block.marker == ("docs-test", "predictor-refusal")]
TIMEOUT = 300  # seconds per block; the slowest runnable blocks import kserve a few times


def run(
    block: Block,
    env: dict[str, str] | None = None,
    script: str | None = None,
    expect: str | None = None,
) -> str | None:
    """Run a block as one bash script (`set -euo pipefail`, traced); None or what went wrong.
    `expect`: text its output must contain."""
    text = script if script is not None else block.script()
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-x", "-c", text],
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{block.where}: still running after {TIMEOUT}s (mark it `needs: minutes`?)"
    if done.returncode == 0:
        if expect is None or expect in done.stdout:
            return None
        return f"{block.where}: the output lacks {expect!r}:\n{done.stdout[-3000:]}"
    return (
        f"{block.where}: exit {done.returncode}; mark the block if it needs a cluster, Docker,"
        f" the network or minutes\n{done.stderr[-3000:]}"
    )


def test_the_pages_have_commands() -> None:
    assert len(PAGES) >= 10, PAGES
    assert len(HERE) >= 5
    assert len(PREDICTOR) >= 2
    assert REFUSALS
    assert any(block.marker == ("needs", "cluster") for block in ALL)


def test_every_marker_is_known() -> None:
    problems = [problem for block in ALL if (problem := marker_problem(block))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("block", HERE, ids=[block.where for block in HERE])
def test_unmarked_commands_run_here(block: Block) -> None:
    problem = run(block)
    assert problem is None, problem


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorServer]:
    model = REPO_ROOT / "models" / "german-credit"
    with predictor_server(
        str(model), tmp_path_factory.mktemp("docs-predictor"), model_name="german-credit"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def failing_curl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `curl` first on PATH that fails on an HTTP error, as a reader would notice one."""
    real = shutil.which("curl")
    assert real is not None
    directory = tmp_path_factory.mktemp("bin")
    wrapper = directory / "curl"
    wrapper.write_text(f'#!/bin/sh\nexec {real} --fail-with-body "$@"\n')
    wrapper.chmod(0o755)
    return directory


@pytest.mark.parametrize("block", PREDICTOR, ids=[block.where for block in PREDICTOR])
def test_predictor_commands_run_against_a_predictor(
    block: Block, predictor: PredictorServer, failing_curl: Path
) -> None:
    env = {"PATH": f"{failing_curl}:{os.environ['PATH']}"}
    problem = run(block, env=env, script=on_predictor(block, predictor))
    assert problem is None, problem


def on_predictor(block: Block, predictor: PredictorServer) -> str:
    script = block.script()
    for port, actual in (("8080", predictor.http_port), ("8081", predictor.grpc_port)):
        script = script.replace(f"localhost:{port}", f"127.0.0.1:{actual}")
    return script


@pytest.mark.parametrize("block", REFUSALS, ids=[block.where for block in REFUSALS])
def test_documented_refusals_are_refused(block: Block, predictor: PredictorServer) -> None:
    problem = run(block, script=on_predictor(block, predictor), expect='"error"')
    assert problem is None, problem


def test_an_unmarked_failing_command_is_reported(tmp_path: Path) -> None:
    """The check can fail: an unmarked command that fails is named with its page and line, and
    an unknown marker is refused."""
    page = tmp_path / "page.md"
    page.write_text(
        "Intro.\n\n```bash\ntrue\n```\n\n<!-- needs: cluster -->\n\n```bash\nkubectl get crm\n```\n"
        "\n```console\n$ false \\\n    --flag\nsome output\n```\n\n<!-- needs: moon -->\n```sh\nx\n```\n"
    )
    found = blocks(page)
    assert [b.marker for b in found] == [None, ("needs", "cluster"), None, ("needs", "moon")]
    assert found[2].commands == ("false \\\n    --flag",)
    assert run(found[0]) is None
    problem = run(found[2])
    assert problem is not None
    assert problem.startswith(f"{page}:13: exit 1")
    assert (
        marker_problem(found[3])
        == f"{page}:20: unknown `needs: moon` (known: cluster, docker, minutes, network, s3)"
    )
