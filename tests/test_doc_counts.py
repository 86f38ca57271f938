"""The pack's counts in its front page and help pages (nodes, workflows, help pages) come from the tree:
any "<number> nodes / workflows / help pages" there must equal what the pack ships (host-free)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from workflow_format import shipped_workflows

ROOT = Path(__file__).resolve().parents[1]
WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                    "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
COUNTED = re.compile(r"\b(\d+|" + "|".join(WORDS) + r")\s+(nodes|workflows|help pages)\b", re.IGNORECASE)


def node_ids() -> set[str]:
    """node_id="..." of every io.Schema in nodes/ (read with ast: no ComfyUI needed)."""
    ids = set()
    for f in (ROOT / "nodes").rglob("*.py"):
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, ast.keyword) and n.arg == "node_id" and isinstance(n.value, ast.Constant):
                ids.add(n.value.value)
    return ids


def actual() -> dict[str, int]:
    return {"nodes": len(node_ids()), "workflows": len(shipped_workflows((1000,))),
            "help pages": len(list((ROOT / "web" / "docs").glob("*.md")))}


def claims(text: str) -> list[tuple[str, int]]:
    out = []
    for m in COUNTED.finditer(text):
        n = m.group(1).lower()
        out.append((m.group(2).lower(), int(n) if n.isdigit() else WORDS[n]))
    return out


def test_counts_in_readme_and_help_pages_are_the_packs():
    want = actual()
    assert want["nodes"] == want["help pages"], f"{want['nodes']} nodes but {want['help pages']} help pages"
    for page in [ROOT / "README.md", ROOT / "docs" / "nodes.md", *sorted((ROOT / "web" / "docs").glob("*.md"))]:
        for what, n in claims(page.read_text(encoding="utf-8")):
            assert n == want[what], f"{page.relative_to(ROOT)} says {n} {what}; the pack has {want[what]}"


def test_the_log_line_counts_the_registered_nodes():
    """README's log line `[PoS spatial] N nodes` is the len(NODES) the pack logs: every node file's NODES."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"\[PoS spatial\] (\d+) nodes", text)
    assert m and int(m.group(1)) == len(node_ids()), (m and m.group(0), len(node_ids()))


def test_claims_are_read():
    assert claims("has 12 nodes, eleven workflows and twelve help pages") == [
        ("nodes", 12), ("workflows", 11), ("help pages", 12)]
