"""Every relative link and image in README.md and docs/*.md leads to a file that exists, and to a heading
that exists when it names one: pages are moved and renamed, and a dead link is found here, not by a reader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.services import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target), the target up to a space or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def slug(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The fragments of a page's headings (repeats get -1, -2, ... as on GitHub), code blocks left out."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    """The relative targets a page links to or shows, outside code blocks."""
    text = FENCE.sub("", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page):
    dead = []
    for target in links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            dead.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            dead.append(f"{target}: no heading #{fragment} in {file.relative_to(ROOT)}")
    assert not dead, f"{page.relative_to(ROOT)} has dead links:\n" + "\n".join(dead)


def test_the_pages_are_found_and_link_to_each_other():
    assert len(PAGES) > 2, "README.md and the pages under docs/"
    readme_targets = {t.partition("#")[0] for t in links(ROOT / "README.md")}
    missing = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in readme_targets]
    assert not missing, f"README.md links to no docs/ page named {missing}"


def test_the_slug_is_githubs():
    assert slug("The dose: one treatment for every pair") == "the-dose-one-treatment-for-every-pair"
    assert slug("`lbfgs-onepass` on real paintings") == "lbfgs-onepass-on-real-paintings"
    assert slug("1. The store is the source of truth") == "1-the-store-is-the-source-of-truth"


def test_the_readme_stays_a_front_door():
    # The README says what atelier answers, how to start and where to read on; details belong to docs/.
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= 220, f"README.md has {lines} lines: move the details into the docs/ page of their concern"
