"""Accuracy of the relation parser on a template set, a hand-written free-form set and a gap set.

    python benchmarks/parser_accuracy.py [--show-errors]

A prompt counts as correct when the parser's (subject, relation, object) triples equal the gold
ones exactly (noun phrases included). Also prints triple-level precision and recall, and for the
gap set (comma before the relation, objects placed by sides, "with ... it", relative clauses) the
exact-match rate of each class.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pos_core.relations import parse  # noqa: E402

FREEFORM = ROOT / "tests" / "data" / "prompts_freeform.jsonl"
GAPS = ROOT / "tests" / "data" / "prompts_gaps.jsonl"

OBJECTS = ("cat dog horse sheep cow elephant bear zebra giraffe bird person bicycle car motorcycle "
           "airplane bus train truck boat bench backpack umbrella handbag suitcase frisbee kite "
           "skateboard surfboard bottle cup fork knife spoon bowl banana apple sandwich orange "
           "broccoli carrot pizza donut cake chair couch bed toilet tv laptop mouse keyboard "
           "microwave oven toaster sink refrigerator book clock vase scissors toothbrush").split()
OBJECTS += ["teddy bear", "wine glass", "hot dog", "cell phone", "potted plant", "traffic light",
            "fire hydrant", "stop sign", "dining table", "tennis racket", "baseball bat"]
ADJECTIVES = "red blue green small large wooden old shiny fluffy white black yellow".split()
PHRASES = {
    "left": ["to the left of", "on the left of", "left of", "on the left side of"],
    "right": ["to the right of", "on the right of", "right of", "on the right side of"],
    "above": ["above", "on top of", "on the top of", "over"],
    "below": ["below", "under", "beneath", "underneath", "on the bottom of"],
    "front": ["in front of"],
    "behind": ["behind", "hidden by"],
    "near": ["next to", "near", "beside", "on side of"],
}
VERBS = ["is", "sitting", "standing", "placed", "is lying", "floating", "hanging"]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def template_prompts(n: int = 600, seed: int = 0) -> list[dict]:
    """Deterministic template prompts with gold triples (subject, relation, object)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b, c = rng.sample(OBJECTS, 3)
        rel = rng.choice(list(PHRASES))
        ph = rng.choice(PHRASES[rel])
        adj = rng.choice(ADJECTIVES)
        kind = i % 9
        gold = [(a, rel, b)]
        if kind == 0:
            p = f"{_article(a)} {a} {ph} {_article(b)} {b}"
        elif kind == 1:
            p = f"a photo of {_article(a)} {a} {ph} {_article(b)} {b}"
        elif kind == 2:
            p = f"The {a} is {ph} the {b}."
        elif kind == 3:
            p = f"{ph.capitalize()} {_article(b)} {b} is {_article(a)} {a}"
        elif kind == 4:
            p = f"{_article(adj)} {adj} {a} {rng.choice(VERBS)} {ph} the {b}"
            gold = [(f"{adj} {a}", rel, b)]
        elif kind == 5:
            p = f"({a}:1.2) {ph} {_article(b)} ({b}:0.9), 4k, photorealistic, highly detailed"
        elif kind == 6:
            rel2 = rng.choice(list(PHRASES))
            p = f"{_article(a)} {a} {ph} {_article(b)} {b} and {_article(c)} {c} {rng.choice(PHRASES[rel2])} the {b}"
            gold = [(a, rel, b), (c, rel2, b)]
        elif kind == 7:
            p = f"{_article(a).upper()} {a.upper()} {ph.title()} {_article(b)} {b.title()}"
        else:
            p = f"a {a} and a {b}, studio lighting"
            gold = []
        out.append({"prompt": p, "relations": [dict(zip(("subject", "relation", "object"), g)) for g in gold]})
    return out


def freeform_prompts(path: Path = FREEFORM) -> list[dict]:
    """The hand-written free-form gold set in tests/data (or another JSONL set of the same form)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def gap_prompts() -> list[dict]:
    """The hand-written gap set: each item also names its "class"."""
    return freeform_prompts(GAPS)


def _triples(rels) -> list[tuple[str, str, str]]:
    return sorted((r["subject"], r["relation"], r["object"]) for r in rels)


def evaluate(items: list[dict]) -> dict:
    """Prompt exact-match accuracy and triple precision / recall of the parser on gold items."""
    exact = tp = n_pred = n_gold = 0
    errors = []
    for item in items:
        pred = _triples([r.to_json() for r in parse(item["prompt"])])
        gold = _triples(item["relations"])
        exact += pred == gold
        tp += len(set(pred) & set(gold))
        n_pred, n_gold = n_pred + len(pred), n_gold + len(gold)
        if pred != gold:
            errors.append((item["prompt"], gold, pred))
    n = len(items)
    return {"n": n, "exact": exact / n if n else 0.0,
            "precision": tp / n_pred if n_pred else 1.0, "recall": tp / n_gold if n_gold else 1.0,
            "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--show-errors", action="store_true")
    args = ap.parse_args()
    for name, items in (("template", template_prompts()), ("free-form", freeform_prompts()),
                        ("gaps", gap_prompts())):
        r = evaluate(items)
        print(f"{name:10s} prompts={r['n']:4d}  exact={r['exact']:.1%}  "
              f"triple precision={r['precision']:.1%}  recall={r['recall']:.1%}")
        for cls in dict.fromkeys(i["class"] for i in items if "class" in i):
            c = evaluate([i for i in items if i.get("class") == cls])
            print(f"  {cls:14s} prompts={c['n']:4d}  exact={c['exact']:.1%}")
        if args.show_errors:
            for p, g, q in r["errors"]:
                print(f"   {p!r}\n      gold {g}\n      got  {q}")


if __name__ == "__main__":
    main()
