"""Summaries of a bench run: `evaluate`'s summary.md / summary.json / chart.png per config, and the
configs side by side (OUT/summary.md, OUT/chart.png)."""

from __future__ import annotations

import json
import os

from .. import evaluate


def summaries(rows: list[dict], order: list[str] | None = None) -> dict[str, dict]:
    """config -> `evaluate.summarize` of its scored images, plus unit counts (configs in `order`)."""
    out = {}
    present = {r["config"] for r in rows}
    for config in [c for c in (order or sorted(present)) if c in present]:
        mine = [r for r in rows if r["config"] == config]
        ok = [r for r in mine if r["status"] == "ok"]
        per_image = [json.loads(r["relations"]) for r in ok]
        s = evaluate.summarize(per_image, [r["prompt_id"] for r in ok]) if ok else {"n": 0}
        s["units"], s["failed"] = len(mine), len(mine) - len(ok)
        out[config] = s
    return out


def _table_values(summary: dict) -> dict[str, str]:
    if not summary.get("n"):
        return {"images": "0"}
    lines = evaluate.summary_table(summary).splitlines()[2:]
    return {cells[1].strip(): cells[2].strip() for cells in (l.split("|") for l in lines)}


def side_by_side(sums: dict[str, dict]) -> str:
    """One Markdown table: a metric a row, a config a column."""
    configs = list(sums)
    values = {c: _table_values(s) for c, s in sums.items()}
    metrics = []
    for c in configs:
        metrics += [m for m in values[c] if m not in metrics]
    lines = ["| metric | " + " | ".join(configs) + " |", "|---|" + "---|" * len(configs),
             "| units (failed) | " + " | ".join(f"{sums[c]['units']} ({sums[c]['failed']})" for c in configs) + " |"]
    lines += ["| " + m + " | " + " | ".join(values[c].get(m, "-") for c in configs) + " |" for m in metrics]
    return "\n".join(lines)


def write(out: str, rows: list[dict], order: list[str] | None = None) -> str:
    """Write the per-config and side-by-side summaries; the side-by-side table."""
    from PIL import Image, ImageDraw

    sums = summaries(rows, order)
    charts = []
    for config, s in sums.items():
        d = os.path.join(out, "summary", config)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(s, f, indent=1)
        if s.get("n"):
            with open(os.path.join(d, "summary.md"), "w", encoding="utf-8") as f:
                f.write(f"# {config}\n\n" + evaluate.summary_table(s) + "\n")
            evaluate.summary_chart(s, os.path.join(d, "chart.png"))
            charts.append((config, os.path.join(d, "chart.png")))
    table = side_by_side(sums)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    if charts:
        ims = [Image.open(p).convert("RGB") for _, p in charts]
        canvas = Image.new("RGB", (sum(i.width for i in ims), max(i.height for i in ims) + 24), "white")
        x = 0
        for (config, _), im in zip(charts, ims):
            canvas.paste(im, (x, 24))
            ImageDraw.Draw(canvas).text((x + 40, 6), config, fill="black")
            x += im.width
        canvas.save(os.path.join(out, "chart.png"))
    return table
