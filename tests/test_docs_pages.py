"""The README is a front page a newcomer reads in minutes, and the topic pages under docs/ hold the rest.

Host-free: the README's length, that it links every topic page, that every relative link and anchor in
README.md, docs/*.md and the nodes' help pages (web/docs/*.md) resolves, and that nothing of the
README as it was before the split (git revision SPLIT_FROM) was lost (scripts/check_docs_moved.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPLIT_FROM = "d04380a"  # the last commit with the one-page README (1,319 lines)
sys.path.insert(0, str(ROOT / "scripts"))

import check_docs_moved  # noqa: E402


def pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "web" / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    out, fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            out.add(slug(line.lstrip("#")))
    return out


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= 250, f"README.md has {n} lines; move details to a docs/ page"


def test_readme_links_every_topic_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in (ROOT / "docs").glob("*.md"):
        assert f"](docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^(https?:|mailto:)", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name} links {target}, which does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name} links {target}: no such heading"


def test_nothing_of_the_one_page_readme_was_lost():
    r = subprocess.run(["git", "show", f"{SPLIT_FROM}:README.md"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"git revision {SPLIT_FROM} is not in this checkout: {r.stderr.strip()[:200]}")
    lost = check_docs_moved.missing(r.stdout)
    assert not lost, f"{len(lost)} line(s) of the old README are in no page:\n" + "\n".join(lost[:20])
