"""SR4G's metrics on generated images (the paper reports VISOR, VISOR_cond and object accuracy): OA, VISOR, VISOR_cond,
overall, per relation and per split, from detected boxes.

A relation is judged as VISOR judges its four: correct when any (subject, object) detection pair satisfies
it, here with the dataset's own rules at zero margins (`Margins.exact()`); `overlapping` uses the boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

from .rules import RELATIONS, Margins, pair_relations

PROJECTIVE_TO_PSE = {"left of": "left", "right of": "right", "above": "above", "below": "below"}


def is_sr4g_record(rec: dict) -> bool:
    """A prompt record that carries its SR4G triplet (as `sr4g prompts` writes them)."""
    return bool(rec.get("sr4g")) or (rec.get("relation") in RELATIONS and "subject" in rec and "object" in rec)


def verdict(boxes_a: Sequence, boxes_b: Sequence, relation: str, width: int, height: int) -> dict:
    """Both present, and correct when some pair of detections satisfies the relation (x0, y0, x1, y1 boxes)."""
    if relation not in RELATIONS:
        raise ValueError(f"unknown SR4G relation {relation!r}: use one of {', '.join(RELATIONS)}")
    present = bool(len(boxes_a)) and bool(len(boxes_b))
    exact = Margins.exact()
    correct = present and any(relation in pair_relations(tuple(map(float, a)), tuple(map(float, b)), width, height,
                                                         exact)
                              for a in boxes_a for b in boxes_b)
    return {"both_present": present, "correct": bool(correct)}


def _agg(rows: list[dict]) -> dict:
    n = len(rows)
    present = sum(r["both_present"] for r in rows)
    correct = sum(r["both_present"] and r["correct"] for r in rows)
    return {"n": n, "OA": 100.0 * present / n if n else 0.0, "VISOR": 100.0 * correct / n if n else 0.0,
            "VISOR_cond": 100.0 * correct / present if present else 0.0}


def summarize(per_image: Sequence[Sequence[dict]]) -> dict | None:
    """OA, VISOR and VISOR_cond (in %) overall, per relation and per split; None without SR4G results."""
    rows = [r for rs in per_image for r in rs if "sr4g_correct" in r]
    if not rows:
        return None
    flat = [{"both_present": not (r["missing_subject"] or r["missing_object"]), "correct": r["sr4g_correct"],
             "relation": r["relation"], "split": r.get("split") or "unsplit"} for r in rows]
    return {"all": _agg(flat),
            "per_relation": {rel: _agg([f for f in flat if f["relation"] == rel])
                             for rel in RELATIONS if any(f["relation"] == rel for f in flat)},
            "per_split": {s: _agg([f for f in flat if f["split"] == s]) for s in sorted({f["split"] for f in flat})}}


def table_lines(s: dict) -> list[str]:
    """Markdown table rows for the summary table."""
    lines = []
    for name, a in [("all", s["all"])] + [(f"split {k}", v) for k, v in s["per_split"].items()] + \
            [(f"relation {k}", v) for k, v in s["per_relation"].items()]:
        lines.append(f"| SR4G {name} (n={a['n']}): OA / VISOR / VISOR_cond | {a['OA']:.2f} / {a['VISOR']:.2f} / "
                     f"{a['VISOR_cond']:.2f} % |")
    return lines
