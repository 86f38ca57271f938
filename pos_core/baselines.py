"""Center-based spatial metrics PSE is compared against: VISOR, GenEval position, T2I-CompBench 2D.

Boxes are (x0, y0, x1, y1) in pixels, x to the right, y down (rows grow downward), so "above"
means a smaller y. Rules as in PAPER.md section 6.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from .relations import AXIS_2D, canonical_relation

Box = tuple[float, float, float, float]
VISOR_SCORE = 0.1  # OWL-ViT detections kept by VISOR


def _relation(relation: str) -> str:
    rel = canonical_relation(relation)
    if rel not in AXIS_2D:
        raise ValueError(f"relation {relation!r}: center-based baselines take left, right, above or below")
    return rel


def as_box(box, name: str = "box") -> Box:
    """Validate one (x0, y0, x1, y1) box: four finite numbers with x1 >= x0 and y1 >= y0."""
    try:
        b = tuple(float(v) for v in box)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be 4 numbers (x0, y0, x1, y1), got {box!r}") from e
    if len(b) != 4 or not all(math.isfinite(v) for v in b):
        raise ValueError(f"{name} must be 4 finite numbers (x0, y0, x1, y1), got {box!r}")
    if b[2] < b[0] or b[3] < b[1]:
        raise ValueError(f"{name} {box!r} has x1 < x0 or y1 < y0; boxes are (x0, y0, x1, y1)")
    return b


def center(box: Box) -> tuple[float, float]:
    """Centre (cx, cy) of a box."""
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def mask_box(mask) -> Box | None:
    """Tight box of the pixels > 0 of an H x W mask (x1, y1 exclusive); None when empty."""
    m = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {m.shape}")
    if np.isnan(m).any():
        raise ValueError("mask contains NaN values")
    ys, xs = np.nonzero(m > 0)
    if len(xs) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def mask_boxes(masks) -> list[Box]:
    """Boxes of a list of instance masks, empty masks left out."""
    return [b for b in (mask_box(m) for m in masks) if b is not None]


def _holds(ca: tuple[float, float], cb: tuple[float, float], rel: str) -> bool:
    return {"left": ca[0] < cb[0], "right": ca[0] > cb[0], "above": ca[1] < cb[1], "below": ca[1] > cb[1]}[rel]


def visor_verdict(boxes_a: Sequence[Box], boxes_b: Sequence[Box], relation: str) -> dict:
    """VISOR: correct if any (A, B) pair of detections has its centres in the stated order."""
    rel = _relation(relation)
    a = [as_box(b, "boxes_a") for b in boxes_a]
    b = [as_box(x, "boxes_b") for x in boxes_b]
    present = bool(a) and bool(b)
    correct = present and any(_holds(center(x), center(y), rel) for x in a for y in b)
    return {"both_present": present, "correct": correct}


def visor_aggregates(results: Sequence[dict], images_per_prompt: int = 4) -> dict:
    """OA, VISOR_cond, VISOR_uncond and VISOR_1..n (in %) from per-image VISOR verdicts.

    Each result has "prompt_id", "both_present" and "correct"; VISOR_n is the share of prompts
    with at least n correct images.
    """
    n = len(results)
    present = sum(bool(r["both_present"]) for r in results)
    correct = sum(bool(r["correct"]) for r in results)
    oa = 100.0 * present / n if n else 0.0
    cond = 100.0 * correct / present if present else 0.0
    out = {"OA": oa, "VISOR_cond": cond, "VISOR_uncond": cond * oa / 100.0}
    per_prompt: dict = defaultdict(int)
    for r in results:
        per_prompt[r["prompt_id"]] += bool(r["correct"])
    for k in range(1, images_per_prompt + 1):
        out[f"VISOR_{k}"] = 100.0 * sum(c >= k for c in per_prompt.values()) / len(per_prompt) if per_prompt else 0.0
    return out


def top_box(boxes: Sequence[Box], scores: Sequence[float] | None = None) -> Box | None:
    """The highest-scoring box (the first when there are no scores); None when there is none."""
    if not boxes:
        return None
    if scores is None:
        return as_box(boxes[0])
    if len(scores) != len(boxes):
        raise ValueError(f"{len(scores)} scores for {len(boxes)} boxes")
    return as_box(boxes[int(np.argmax(np.asarray(scores, dtype=np.float64)))])


def geneval_relations(box_a: Box, box_b: Box) -> set[str]:
    """GenEval "position": relations of A to B after shrinking the centre offset by 10 % of the sizes."""
    a, b = as_box(box_a, "box_a"), as_box(box_b, "box_b")
    (ax, ay), (bx, by) = center(a), center(b)
    dx, dy = ax - bx, ay - by
    length = math.hypot(dx, dy)
    if length == 0:
        return set()
    sx = math.copysign(max(abs(dx) - 0.1 * ((a[2] - a[0]) + (b[2] - b[0])), 0.0), dx)
    sy = math.copysign(max(abs(dy) - 0.1 * ((a[3] - a[1]) + (b[3] - b[1])), 0.0), dy)
    if sx == 0 and sy == 0:
        return set()
    nx, ny = sx / length, sy / length
    out = set()
    if nx < -0.5:
        out.add("left")
    if nx > 0.5:
        out.add("right")
    if ny < -0.5:
        out.add("above")
    if ny > 0.5:
        out.add("below")
    return out


def geneval_verdict(box_a: Box, box_b: Box, relation: str) -> bool:
    """GenEval position verdict for "A <relation> B"."""
    return _relation(relation) in geneval_relations(box_a, box_b)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when both are empty)."""
    a, b = as_box(a, "box_a"), as_box(b, "box_b")
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def t2i_compbench_score(box_a: Box, box_b: Box, relation: str) -> float:
    """T2I-CompBench 2D: the dominant centre offset must point the stated way; 1, or 0.1 / IoU
    when the boxes overlap by IoU >= 0.1; 0 when the direction is wrong."""
    rel = _relation(relation)
    (ax, ay), (bx, by) = center(as_box(box_a, "box_a")), center(as_box(box_b, "box_b"))
    dx, dy = bx - ax, by - ay
    ok = {"left": dx > 0 and abs(dx) > abs(dy), "right": dx < 0 and abs(dx) > abs(dy),
          "above": dy > 0 and abs(dy) > abs(dx), "below": dy < 0 and abs(dy) > abs(dx)}[rel]
    if not ok:
        return 0.0
    iou = box_iou(box_a, box_b)
    return 1.0 if iou < 0.1 else 0.1 / iou


def baseline_verdicts(boxes_a: Sequence[Box], boxes_b: Sequence[Box], relation: str,
                      scores_a: Sequence[float] | None = None, scores_b: Sequence[float] | None = None) -> dict:
    """All three baselines for one image, for a report (top-scoring instance for GenEval / CompBench)."""
    rel = _relation(relation)
    visor = visor_verdict(boxes_a, boxes_b, rel)
    a, b = top_box(boxes_a, scores_a), top_box(boxes_b, scores_b)
    if a is None or b is None:
        return {"both_present": False, "visor": False, "geneval": False, "t2i_compbench": 0.0}
    return {"both_present": True, "visor": visor["correct"], "geneval": geneval_verdict(a, b, rel),
            "t2i_compbench": t2i_compbench_score(a, b, rel)}
