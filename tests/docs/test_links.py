"""Every relative link in README.md and docs/*.md reaches a file that exists, and every `#anchor`
a heading (GitHub's slugs) or an explicit `<a id>` of that page; README stays a short front page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.process import REPO_ROOT

pytestmark = pytest.mark.unit

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = page.read_text()
    found = {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.MULTILINE)}
    return found | set(re.findall(r'<a id="([^"]+)"', text))


def broken(page: Path) -> list[str]:
    problems = []
    outside_code = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    outside_code = re.sub(r"`[^`\n]*`", "", outside_code)  # inline code: patterns, not links
    for target in LINK.findall(outside_code):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            problems.append(f"{page.name}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{page.name}: {target} (no such anchor)")
    return problems


def test_links_resolve() -> None:
    problems = [problem for page in PAGES for problem in broken(page)]
    assert not problems, "\n".join(problems)


def test_the_checker_notices_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Two words\n\n[a](page.md#two-words) [b](nope.md) [c](#missing)\n"
    )
    assert broken(page) == ["page.md: nope.md (no such file)", "page.md: #missing (no such anchor)"]


def test_readme_is_a_front_page() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for page in ("getting-started", "reference", "rollouts", "predictor", "troubleshooting"):
        assert f"(docs/{page}.md)" in readme
