"""The works-with effect table: guidance beside each stock model patch, from `effect.py eval --patch` runs.

    python benchmarks/patch_table.py OUT/FreeU_V2 OUT/RescaleCFG ...   # folders holding results.json

Each folder is one `effect.py eval --ways unguided,psg@20 --patch NAME --out DIR` run (same held-out cases
for both ways). Prints a Markdown row per patch: relation accuracy unguided and guided with bootstrap 95 %
intervals, the paired gain (same cases) with its interval, objects drawn, and seconds per image.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path


def paired_gain(a: list[float], b: list[float], reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of b - a over the same cases and its bootstrap 95 % interval (cases resampled together)."""
    if len(a) != len(b) or not a:
        raise ValueError("paired_gain needs two equally long, non-empty lists of the same cases")
    d = [y - x for x, y in zip(a, b)]
    rng = random.Random(seed)
    n = len(d)
    means = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(reps))
    return sum(d) / n, means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


def row(folder: Path) -> str:
    report = json.loads((folder / "results.json").read_text())
    ways = report["ways"]
    if "unguided" not in ways or "psg@20" not in ways:
        return f"| {report.get('patch') or '(none)'} | (incomplete: {', '.join(ways)}) | | | | |"
    u, g = ways["unguided"], ways["psg@20"]
    cu = [float(r["correct"]) for r in u["raw"]["rows"]]
    cg = [float(r["correct"]) for r in g["raw"]["rows"]]
    gain = paired_gain(cu, cg)

    def ci(t):
        return f"{100 * t[0]:.1f} [{100 * t[1]:.1f}, {100 * t[2]:.1f}]"

    return (f"| {report.get('patch') or '(none)'} | {u['n']} | {ci(u['relation_accuracy'])} | "
            f"{ci(g['relation_accuracy'])} | **{100 * gain[0]:+.1f}** [{100 * gain[1]:+.1f}, {100 * gain[2]:+.1f}] | "
            f"{100 * u['object_accuracy'][0]:.1f} / {100 * g['object_accuracy'][0]:.1f} | "
            f"{u['seconds_per_image']:.2f} / {g['seconds_per_image']:.2f} |")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    print("| patch (at its defaults) | cases | unguided relation % [95 % CI] | PoS Guidance @20 % [95 % CI] | "
          "gain, points (paired) [95 % CI] | objects drawn % unguided / guided | s / image unguided / guided |")
    print("|---|---|---|---|---|---|---|")
    for d in argv:
        print(row(Path(d)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
