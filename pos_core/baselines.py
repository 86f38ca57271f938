"""Center-based spatial metrics PSE is compared against: VISOR, GenEval position, T2I-CompBench 2D.

Boxes are (x0, y0, x1, y1) in pixels, x to the right, y down (rows grow downward), so "above"
means a smaller y. Rules as in PAPER.md section 6 and the authors' reference code.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from .relations import AXIS_2D, canonical_relation

Box = tuple[float, float, float, float]
VISOR_SCORE = 0.1  # OWL-ViT detections with score > 0.1 are kept by VISOR
GENEVAL_THRESHOLD = 0.1  # GenEval's POSITION_THRESHOLD: offset shrunk by 10 % of the summed sizes
GENEVAL_EPS = 1e-3  # GenEval: shrunken offset with both |components| < 1e-3 counts as no relation
T2I_IOU = 0.1  # T2I-CompBench: IoU at or above which the score becomes 0.1 / IoU
ACCEPTED = ", ".join(repr(r) for r in AXIS_2D)


def _relation(relation: str) -> str:
    """Canonical 2D relation ('left', 'right', 'above', 'below'); ValueError naming anything else."""
    try:
        rel = canonical_relation(relation)
    except ValueError:
        rel = None
    if rel not in AXIS_2D:
        raise ValueError(f"relation {relation!r} is not supported by the center-based baselines; "
                         f"accepted relations: {ACCEPTED} (or phrases such as 'to the left of')")
    return rel


def as_box(box, name: str = "box") -> Box:
    """Validate one (x0, y0, x1, y1) box: four finite numbers with x1 >= x0 and y1 >= y0."""
    if hasattr(box, "detach"):
        box = box.detach().cpu().tolist()
    try:
        b = tuple(float(v) for v in box)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be 4 numbers (x0, y0, x1, y1), got {box!r}") from e
    if len(b) != 4 or not all(math.isfinite(v) for v in b):
        raise ValueError(f"{name} must be 4 finite numbers (x0, y0, x1, y1), got {box!r}")
    if b[2] < b[0] or b[3] < b[1]:
        raise ValueError(f"{name} {box!r} has x1 < x0 or y1 < y0; boxes are (x0, y0, x1, y1)")
    return b


def _boxes(boxes: Sequence, name: str) -> list[Box]:
    """Validate a list of boxes, naming the bad one as name[i]."""
    return [as_box(b, f"{name}[{i}]") for i, b in enumerate(boxes)]


def _scores(scores: Sequence[float], n: int, name: str) -> np.ndarray:
    """Validate detector scores: one finite number per box."""
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu()
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) != n:
        raise ValueError(f"{name}: {len(s)} scores for {n} boxes")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} must be finite numbers, got {list(s)}")
    return s


def center(box: Box) -> tuple[float, float]:
    """Centre (cx, cy) of a box."""
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def mask_box(mask) -> Box | None:
    """Tight box of the pixels > 0 of an H x W mask (x1, y1 exclusive: max index + 1); None when empty."""
    m = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"mask must be H x W (2-D), got shape {m.shape}")
    if np.isnan(m).any():
        raise ValueError(f"mask of shape {m.shape} contains NaN values")
    ys, xs = np.nonzero(m > 0)
    if len(xs) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def mask_boxes(masks) -> list[Box]:
    """Boxes of a list of instance masks (one detection each), empty masks left out."""
    out = []
    for i, m in enumerate(masks):
        try:
            b = mask_box(m)
        except ValueError as e:
            raise ValueError(f"masks[{i}]: {e}") from e
        if b is not None:
            out.append(b)
    return out


def filter_boxes(boxes: Sequence[Box], scores: Sequence[float] | None,
                 score_threshold: float = VISOR_SCORE) -> list[Box]:
    """Boxes whose score is > score_threshold (VISOR keeps OWL-ViT detections above 0.1); all when no scores."""
    b = _boxes(boxes, "boxes")
    if scores is None:
        return b
    s = _scores(scores, len(b), "scores")
    return [x for x, v in zip(b, s) if v > score_threshold]


def _holds(ca: tuple[float, float], cb: tuple[float, float], rel: str) -> bool:
    """VISOR's centre test, strict and with no margin."""
    return {"left": ca[0] < cb[0], "right": ca[0] > cb[0], "above": ca[1] < cb[1], "below": ca[1] > cb[1]}[rel]


def visor_verdict(boxes_a: Sequence[Box], boxes_b: Sequence[Box], relation: str,
                  scores_a: Sequence[float] | None = None, scores_b: Sequence[float] | None = None,
                  score_threshold: float = VISOR_SCORE) -> dict:
    """VISOR for one image: correct if ANY (A, B) detection pair has its centres in the stated order.

    With scores, only detections scoring > score_threshold count; no A or no B -> objects missing.
    """
    rel = _relation(relation)
    a, b = _boxes(boxes_a, "boxes_a"), _boxes(boxes_b, "boxes_b")
    if scores_a is not None:
        a = [x for x, v in zip(a, _scores(scores_a, len(a), "scores_a")) if v > score_threshold]
    if scores_b is not None:
        b = [x for x, v in zip(b, _scores(scores_b, len(b), "scores_b")) if v > score_threshold]
    present = bool(a) and bool(b)
    correct = present and any(_holds(center(x), center(y), rel) for x in a for y in b)
    return {"both_present": present, "correct": correct}


def visor_aggregates(results: Sequence[dict], images_per_prompt: int = 4) -> dict:
    """OA, VISOR_cond, VISOR_uncond and VISOR_1..VISOR_n (all in %) from per-image VISOR verdicts.

    Each result has "prompt_id", "both_present" and "correct"; VISOR_k is the share of prompts with
    at least k correct images (n = images_per_prompt).
    """
    if int(images_per_prompt) != images_per_prompt or images_per_prompt < 1:
        raise ValueError(f"images_per_prompt must be a positive integer, got {images_per_prompt!r}")
    for i, r in enumerate(results):
        missing = [k for k in ("prompt_id", "both_present", "correct") if k not in r]
        if missing:
            raise ValueError(f"results[{i}] lacks {missing}: each result needs prompt_id, both_present, correct")
    n = len(results)
    present = sum(bool(r["both_present"]) for r in results)
    correct = sum(bool(r["both_present"]) and bool(r["correct"]) for r in results)
    oa = 100.0 * present / n if n else 0.0
    cond = 100.0 * correct / present if present else 0.0
    out = {"OA": oa, "VISOR_cond": cond, "VISOR_uncond": cond * oa / 100.0}
    per_prompt: dict[Hashable, int] = defaultdict(int)
    for r in results:
        per_prompt[r["prompt_id"]] += bool(r["both_present"]) and bool(r["correct"])
    for k in range(1, int(images_per_prompt) + 1):
        hits = sum(c >= k for c in per_prompt.values())
        out[f"VISOR_{k}"] = 100.0 * hits / len(per_prompt) if per_prompt else 0.0
    return out


def top_box(boxes: Sequence[Box], scores: Sequence[float] | None = None) -> Box | None:
    """The highest-scoring box (the first when there are no scores), as GenEval uses; None when there is none."""
    b = _boxes(boxes, "boxes")
    if not b:
        return None
    if scores is None:
        return b[0]
    return b[int(np.argmax(_scores(scores, len(b), "scores")))]


def geneval_relations(box_a: Box, box_b: Box) -> set[str]:
    """GenEval "position": relations of A to B after shrinking the centre offset by 10 % of the sizes.

    Each axis of centre(A) - centre(B) loses 0.1 * (dimA + dimB), floored at 0; the rest is divided by
    the original offset's length and a component beyond +-0.5 names a relation (two at most).
    """
    a, b = as_box(box_a, "box_a"), as_box(box_b, "box_b")
    (ax, ay), (bx, by) = center(a), center(b)
    dx, dy = ax - bx, ay - by
    length = math.hypot(dx, dy)
    if length == 0:
        return set()
    sx = math.copysign(max(abs(dx) - GENEVAL_THRESHOLD * ((a[2] - a[0]) + (b[2] - b[0])), 0.0), dx)
    sy = math.copysign(max(abs(dy) - GENEVAL_THRESHOLD * ((a[3] - a[1]) + (b[3] - b[1])), 0.0), dy)
    if abs(sx) < GENEVAL_EPS and abs(sy) < GENEVAL_EPS:
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
    """GenEval position verdict for "A <relation> B": the relation is among geneval_relations(A, B)."""
    rel = _relation(relation)
    return rel in geneval_relations(box_a, box_b)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes, continuous coordinates (0 when the union is empty)."""
    a, b = as_box(a, "box_a"), as_box(b, "box_b")
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def t2i_compbench_score(box_a: Box, box_b: Box, relation: str) -> float:
    """T2I-CompBench 2D: the dominant centre offset must point the stated way; then 1, or 0.1 / IoU
    when the boxes overlap by IoU >= 0.1; 0 when the direction is wrong."""
    rel = _relation(relation)
    a, b = as_box(box_a, "box_a"), as_box(box_b, "box_b")
    (ax, ay), (bx, by) = center(a), center(b)
    dx, dy = bx - ax, by - ay  # offset of B from A
    ok = {"left": dx > 0 and abs(dx) > abs(dy), "right": dx < 0 and abs(dx) > abs(dy),
          "above": dy > 0 and abs(dy) > abs(dx), "below": dy < 0 and abs(dy) > abs(dx)}[rel]
    if not ok:
        return 0.0
    iou = box_iou(a, b)
    return 1.0 if iou < T2I_IOU else T2I_IOU / iou


def baseline_verdicts(boxes_a: Sequence[Box], boxes_b: Sequence[Box], relation: str,
                      scores_a: Sequence[float] | None = None, scores_b: Sequence[float] | None = None,
                      score_threshold: float | None = None) -> dict:
    """All three baselines for one image, for a report: VISOR over every pair, GenEval and
    T2I-CompBench on the top-scoring instance (the first without scores); missing -> False/False/0.0.

    score_threshold (e.g. VISOR_SCORE) drops detections scoring <= it first; None keeps them all.
    """
    rel = _relation(relation)
    a, b = _boxes(boxes_a, "boxes_a"), _boxes(boxes_b, "boxes_b")
    sa = None if scores_a is None else _scores(scores_a, len(a), "scores_a")
    sb = None if scores_b is None else _scores(scores_b, len(b), "scores_b")
    if score_threshold is not None:
        if sa is not None:
            a, sa = [x for x, v in zip(a, sa) if v > score_threshold], sa[sa > score_threshold]
        if sb is not None:
            b, sb = [x for x, v in zip(b, sb) if v > score_threshold], sb[sb > score_threshold]
    if not a or not b:
        return {"both_present": False, "visor": False, "geneval": False, "t2i_compbench": 0.0}
    ta, tb = top_box(a, sa), top_box(b, sb)
    return {"both_present": True, "visor": visor_verdict(a, b, rel)["correct"],
            "geneval": geneval_verdict(ta, tb, rel), "t2i_compbench": t2i_compbench_score(ta, tb, rel)}
