"""The shell commands of README.md and docs/*.md, as the doc tests see them.

Every fenced block tagged `bash`, `sh`, `shell` or `console` holds commands (in `console` blocks
only the lines after a `$ ` prompt, with their `\\` continuations). The line right above a block
(blank lines aside) may carry a marker:

- `<!-- needs: cluster -->`: a Kubernetes cluster (`make dev-cluster`, kind or a real one);
- `<!-- needs: docker -->`: a Docker engine;
- `<!-- needs: minutes -->`: runs for minutes, builds or installs (`make install`, `make tools`,
  `make test`, training) or serves until stopped (`make serve`);
- `<!-- needs: network -->`: downloads from or publishes to the internet;
- `<!-- needs: s3 -->`: an S3-compatible store holding the data or bundles the command names;
- `<!-- docs-test: predictor -->`: run here against a predictor the test starts, serving the
  reference bundle (`localhost:8080` / `localhost:8081` are rewritten to its ports; `curl` fails on
  an HTTP error);
- `<!-- docs-test: predictor-refusal -->`: the same, for a documented refusal: the block must
  succeed and its output must hold the predictor's `"error"` answer.

A block without a marker runs here, from the repository root, and must succeed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SHELLS = {"bash", "sh", "shell", "console"}
NEEDS = {"cluster", "docker", "minutes", "network", "s3"}
FIXTURES = {"predictor", "predictor-refusal"}
MARKER = re.compile(r"^<!--\s*(needs|docs-test):\s*([a-z0-9-]+)\s*-->$")
FENCE = re.compile(r"^```([A-Za-z0-9_-]*)\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    marker: tuple[str, str] | None
    """("needs", reason) or ("docs-test", fixture), or None: runs here."""
    commands: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def script(self) -> str:
        return "\n".join(self.commands) + "\n"


def console_commands(body: list[str]) -> list[str]:
    commands: list[str] = []
    continuing = False
    for line in body:
        if line.startswith("$ "):
            commands.append(line[2:])
            continuing = line.rstrip().endswith("\\")
        elif continuing:
            commands[-1] += "\n" + line
            continuing = line.rstrip().endswith("\\")
    return commands


def blocks(path: Path) -> list[Block]:
    """The shell blocks of one Markdown file, with the marker above each."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        language = opening.group(1)
        if language in SHELLS:
            body = lines[index + 1 : end]
            above = index - 1
            while above >= 0 and not lines[above].strip():
                above -= 1
            marked = MARKER.match(lines[above].strip()) if above >= 0 else None
            commands = console_commands(body) if language == "console" else body
            found.append(
                Block(
                    path,
                    index + 1,
                    language,
                    (marked.group(1), marked.group(2)) if marked else None,
                    tuple(commands),
                )
            )
        index = end + 1
    return found


def marker_problem(block: Block) -> str | None:
    if block.marker is None:
        return None
    kind, value = block.marker
    if kind == "needs" and value not in NEEDS:
        return f"{block.where}: unknown `needs: {value}` (known: {', '.join(sorted(NEEDS))})"
    if kind == "docs-test" and value not in FIXTURES:
        return f"{block.where}: unknown `docs-test: {value}` (known: {', '.join(sorted(FIXTURES))})"
    return None
