"""Score images against their relations: PSE (2D and depth) beside the center-based baselines.

Used by the PoS Score and PoS Seed Search nodes and by `python -m pos_core evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import baselines
from .pse import aggregate, pse_batch, pse_depth_batch
from .relations import AXIS_2D, DEPTH, canonical_relation


@dataclass
class Masks:
    """One object in one image: union mask (H x W, bool or soft), boxes and detector scores."""

    mask: torch.Tensor
    boxes: list
    scores: list | None = None


def from_mask(mask) -> Masks:
    """Masks of an object given as a mask (from any segmentation node): its box is the mask's."""
    m = torch.as_tensor(mask)
    box = baselines.mask_box(m)
    return Masks(m, [box] if box is not None else [])


def from_boxes(boxes: Sequence, height: int, width: int, scores=None) -> Masks:
    """Masks of an object given as boxes only: the union of the filled boxes."""
    m = torch.zeros(height, width, dtype=torch.bool)
    out = []
    for b in boxes:
        x0, y0, x1, y1 = baselines.as_box(b)
        m[max(0, int(y0)):max(0, int(-(-y1 // 1))), max(0, int(x0)):max(0, int(-(-x1 // 1)))] = True
        out.append((x0, y0, x1, y1))
    return Masks(m, out, list(scores) if scores is not None else None)


def score_relation(subject: Masks, relation: str, obj: Masks, depth: torch.Tensor | None = None) -> dict:
    """PSE and the baselines' verdicts for one relation in one image."""
    rel = canonical_relation(relation)
    a, b = subject.mask.float(), obj.mask.float()
    if a.shape != b.shape:
        raise ValueError(f"subject mask {tuple(a.shape)} and object mask {tuple(b.shape)} differ in size")
    out = {"relation": rel, "missing_subject": not bool(a.sum() > 0), "missing_object": not bool(b.sum() > 0)}
    if rel in AXIS_2D:
        out["pse"] = float(pse_batch(a[None], b[None], rel).scores[0])
        out.update({k: v for k, v in baselines.baseline_verdicts(subject.boxes, obj.boxes, rel, subject.scores,
                                                                  obj.scores).items() if k != "both_present"})
    elif rel in DEPTH:
        if depth is None:
            raise ValueError(f"relation {rel!r} needs a depth map: connect a depth model (PoS Depth Loader)")
        out["pse"] = float(pse_depth_batch(a[None], b[None], depth[None].to(a.device), rel).scores[0])
    else:
        out["pse"] = None  # "near" has no direction: reported, not scored
    return out


def image_score(results: Sequence[dict]) -> float:
    """Per-image PSE: the mean over its scored relations (missing objects count 0)."""
    vals = [r["pse"] for r in results if r.get("pse") is not None]
    return sum(vals) / len(vals) if vals else 0.0


def summarize(per_image: Sequence[Sequence[dict]], prompt_ids: Sequence | None = None) -> dict:
    """Aggregates over images (mean PSE, accuracy, object accuracy) and VISOR metrics (2D only)."""
    scores = [image_score(rs) for rs in per_image]
    missing_a = [any(r["missing_subject"] for r in rs) for rs in per_image]
    missing_b = [any(r["missing_object"] for r in rs) for rs in per_image]
    out = aggregate(scores, missing_a, missing_b)
    visor = []
    for i, rs in enumerate(per_image):
        for r in rs:
            if "visor" in r:
                visor.append({"prompt_id": prompt_ids[i] if prompt_ids is not None else i,
                              "both_present": not (r["missing_subject"] or r["missing_object"]),
                              "correct": bool(r["visor"])})
    if visor:
        per_prompt = max(1, len(visor) // max(1, len({v["prompt_id"] for v in visor})))
        out["visor"] = baselines.visor_aggregates(visor, images_per_prompt=per_prompt)
        two_d = [r for rs in per_image for r in rs if "geneval" in r]
        out["geneval_position"] = sum(bool(r["geneval"]) for r in two_d) / len(two_d)
        out["t2i_compbench_2d"] = sum(float(r["t2i_compbench"]) for r in two_d) / len(two_d)
    return out
