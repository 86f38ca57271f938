"""Checks that nothing of an old README was lost when it was split into README.md and topic pages:
every non-blank line (prose, table row, command) of OLD appears in README.md, docs/*.md or a node help
page (web/docs/*.md), compared after normalising whitespace, heading marks and Markdown links
(`[text](url)` counts as `text`). Prints the lines not found; exit status 1 when there are any.

    python scripts/check_docs_moved.py OLD_README.md        # or: --rev GIT_REV (git show REV:README.md)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def norm(line: str) -> str:
    line = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", line)  # links and images: their text
    line = re.sub(r"^#+\s*", "", line.strip())
    line = re.sub(r"^\|?\s*-+\s*(\|\s*-+\s*)*\|?$", "", line)  # table separators
    return re.sub(r"\s+", " ", line).strip()


def targets() -> str:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "web" / "docs").glob("*.md"))]
    text = "\n".join(norm(l) for f in files for l in f.read_text(encoding="utf-8").splitlines())
    return text


# The old node reference ("## Nodes") was rewritten into the nodes' help pages (web/docs/<node id>.md, in
# the front end's table layout), so its lines are not there word for word: for them, every code span
# (`...`: names, defaults, values) must appear in a help page; tests/test_node_docs.py checks that each
# page lists exactly its node's inputs and outputs.
REWRITTEN = {"Nodes": ROOT / "web" / "docs"}
# Lines corrected on the way (old text, why).
CORRECTED = {"fine-tunes of them) and on Flux.1 and SD3 / SD3.5; other DiTs (HiDream, Qwen-Image, Lumina 2, Wan, …)":
             "the limitations list the 2026 families as guided now (docs/limitations.md, issue 30)",
             "cross-attention) and on Flux.1 dev / schnell and SD3 / SD3.5 (DiT joint attention).":
             "the family list gained the 2026 families (Flux.2, Chroma, Qwen-Image, Z-Image; issue 30)",
             "## PoS Guidance on Flux.1 and SD3 / SD3.5 (DiT joint attention)":
             "the DiT page's title names the 2026 families too (docs/flux_sd3.md, issue 30)",
             "| Nodes | PoS Relations from Prompt and PoS Relation (token positions in the DiT's text sequence), PoS Guidance, "
             "PoS Attention Capture, PoS Attention Maps, PoS Seed Search. |":
             "the same row with PoS Layout from Relations and PoS Train LoRA's scope (docs/flux_sd3.md, issue 30)",
             "| Refused | Every other model, with a message naming what is supported: `PoS Guidance works on SD1.x, SD2.x, "
             "SDXL (UNet cross-attention), Flux.1 dev / schnell and SD3 / SD3.5 medium / large (joint attention); this "
             "model is AuraFlow (MMDiT), which it cannot guide.` (HiDream, Qwen-Image, Lumina 2, Wan, AuraFlow, Chroma, "
             "PixArt, ...). Text encoders other than SD1/SD2/SDXL CLIP, Flux's CLIP-L + T5 and SD3's CLIP-L + CLIP-G + "
             "T5 get a similar message from the relation nodes. |":
             "the message names the 2026 families now; Qwen-Image and Chroma left the refused list (docs/flux_sd3.md)",
             "(`nodes/families/`: `unet.py`, `flux.py`, `sd3.py`, chosen once from the MODEL by `family_of`): where the":
             "the same sentence with the four new family files (docs/flux_sd3.md)",
             "### Limitations on Flux and SD3": "now 'Limitations on the DiT families' (docs/flux_sd3.md)",
             "`[PoS spatial] 9 nodes: ...`. The pack imports in well under a second with no network access.":
             "the pack registers 10 nodes (the old README said 9)",
             "from the start. Either way the `LATENT` output is what a KSampler with `best_seed` makes; host tests":
             "the same latent up to floating-point rounding (batched candidates), as docs/tests.md now says",
             "| `sr4g_benchmark` | SR4G test_unseen prompts generated with the base model, with the LoRA and with PSG, "
             "scored by PoS Score |": "the benchmark workflow gained the PoS LoRA as a fourth way (issue 22)",
             "generates each with the base model, the base model with the LoRA, and with PoS Guidance, then scores":
             "the same: a fourth way, the PoS LoRA (docs/sr4g.md)",
             "and saves a LoRA; `sr4g_benchmark` runs end to end (LoRA trained in the graph, base / LoRA / PSG, three":
             "the same: four ways and four PoS Scores now (docs/sr4g.md)",
             "partly, relations, on which the effect is measured (guidance: 39 % -> 78.5 % relations on held-out":
             "the retrained checkpoint's figures (37.0 % -> 75.5 %, measured this round) in docs/limitations.md",
             "cases); it is synthetic and tiny, so its figures are not a claim about SD or Flux.":
             "the same sentence, reworded around the new figures (docs/limitations.md)",
             "| family | scale | guided_fraction | loss_scale (`-1`) | blocks (`auto`) | softmax |":
             "the DiT defaults table gained a max_step column (docs/flux_sd3.md, issue 21)",
             "| Flux.1 dev | 20 | 0.5 (14 of 28; Learn-to-Steer: 25 of 50) | 1000 | double 11, 12, 14, 17, 18 | text |":
             "the same row with max_step 0.3 (docs/flux_sd3.md)",
             "| Flux.1 schnell (4 steps) | 20 | 0.25 (step 0 only, as Learn-to-Steer) | 1000 | double 11, 12, 14, 17, 18 "
             "| text |": "the same row with max_step 0.3 (docs/flux_sd3.md)",
             "| SD3 / SD3.5 | 20 | 0.5 (20 of 40) | 1000 | per variant (above) | text |":
             "the same row with max_step 0.3 (docs/flux_sd3.md)",
             "(Manager clones the pack into `custom_nodes/` and pip-installs `requirements.txt` line by line. The":
             "the Install paragraph now covers ComfyUI 0.33's Manager package and its cm-cli (issue 28)",
             "host tests do both: a plain clone + pip install that then starts ComfyUI offline, and, where":
             "the same paragraph, rewritten for both ComfyUI versions (README, Install)",
             "`COMFYUI_MANAGER_PATH` names a ComfyUI-Manager checkout, Manager's own `cm-cli.py install <git url>`":
             "the same paragraph: the checkout path is kept for 0.3.64 (README, Install)",
             "against the pack served on loopback, after which ComfyUI loads it.)":
             "the same paragraph (README, Install)",
             "**Custom Nodes → pos-spatial** are nine workflows. Pick **pos_psg_sd15** (or **pos_psg_flux_dev** /":
             "the count was stale (eleven workflows); counts are now checked by tests/test_doc_counts.py",
             "- Host tier: runs where `COMFYUI_PATH` names a ComfyUI checkout (tested with 0.3.64), otherwise skips":
             "tested with 0.3.64 and 0.33.0 now (docs/tests.md, issue 28)",
             "`$COMFYUI_PATH` (or clones ComfyUI v0.3.64, the version the tests run against, into":
             "the demo clones the newest tested version, v0.33.0, now (docs/demo.md, issue 28)"}


def sections(old: str) -> list[tuple[str, str]]:
    """(top-level section title, line) for every line of a README ('' before the first '## ')."""
    out, title, fence = [], "", False
    for line in old.splitlines():
        if line.startswith("```"):
            fence = not fence
        if not fence and line.startswith("## "):
            title = line[3:].strip()
        out.append((title, line))
    return out


def missing(old: str) -> list[str]:
    have = targets()
    pages = {t: "\n".join(f.read_text(encoding="utf-8") for f in sorted(d.glob("*.md"))) for t, d in REWRITTEN.items()}
    out = []
    for title, line in sections(old):
        n = norm(line)
        if not n or n in have or line.strip() in CORRECTED:
            continue
        if title in pages and line.strip() != f"## {title}":
            spans = re.findall(r"`([^`]+)`", line)
            if all(s in pages[title] for s in spans):
                continue
        out.append(line)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", nargs="?")
    ap.add_argument("--rev", help="read the old README from this git revision")
    args = ap.parse_args()
    old = (subprocess.run(["git", "show", f"{args.rev}:README.md"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout if args.rev else Path(args.old).read_text(encoding="utf-8"))
    lost = missing(old)
    for line in lost:
        print(line)
    print(f"{len(lost)} line(s) of the old README not found", file=sys.stderr)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
