"""Cross-attention maps for PSG: probabilities of chosen text tokens over image positions.

The authors average the fp32 softmax over all text tokens across the heads and the layers of
one UNet level, conditional branch only, current step only (PAPER.md section 4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from . import guidance


def attention_probs(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """Softmax over text tokens in fp32: q [B, HW, heads*d], k [B, T, heads*d] -> [B, heads, HW, T]."""
    b, n, inner = q.shape
    d = inner // heads
    qh = q.float().reshape(b, n, heads, d).transpose(1, 2)
    kh = k.float().reshape(k.shape[0], k.shape[1], heads, d).transpose(1, 2)
    return torch.softmax((qh @ kh.transpose(-1, -2)) * d**-0.5, dim=-1)


def token_maps(q: torch.Tensor, k: torch.Tensor, heads: int, groups: Sequence[Sequence[int]],
               h: int, w: int) -> torch.Tensor:
    """Maps of token groups, averaged over heads and each group's tokens: [B, len(groups), h, w]."""
    probs = attention_probs(q, k, heads).mean(dim=1)  # [B, HW, T]
    t = probs.shape[-1]
    for g in groups:
        bad = [i for i in g if not 0 <= i < t]
        if bad:
            raise ValueError(f"token indices {bad} are outside the {t}-token context")
    maps = torch.stack([probs[..., list(g)].mean(dim=-1) for g in groups], dim=1)
    return maps.reshape(q.shape[0], len(groups), h, w)


def relation_pairs(relations: Sequence, groups: Sequence[tuple[int, ...]]) -> list[tuple[int, int, str]]:
    """(subject group, object group, relation) of each relation, indexing into `groups`."""
    index = {g: i for i, g in enumerate(groups)}
    return [(index[tuple(r.subject_tokens)], index[tuple(r.object_tokens)], r.relation) for r in relations]


def token_groups(relations: Sequence) -> list[tuple[int, ...]]:
    """The distinct token groups (subjects and objects) that `relations` look at, in order."""
    out: list[tuple[int, ...]] = []
    for r in relations:
        for g in (tuple(r.subject_tokens), tuple(r.object_tokens)):
            if g not in out:
                out.append(g)
    return out


GUIDABLE = ("left", "right", "above", "below")


def guidable_pairs(pairs: Sequence[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The pairs PSG can guide: 2D relations only (front / behind / near have no attention axis)."""
    return [p for p in pairs if p[2] in GUIDABLE]


def unguidable_note(relations: Sequence) -> str | None:
    """A user-facing sentence about relations PSG leaves alone, or None when it guides them all."""
    skipped = [r for r in relations if r.relation not in GUIDABLE]
    if not skipped:
        return None
    names = "; ".join(f"{r.subject} {r.relation} {r.object}" for r in skipped)
    if len(skipped) == len(relations):
        return (f"PoS Guidance moves attention left/right/above/below only; this prompt has none of those "
                f"({names}), so sampling runs unguided and attention is only recorded. For front/behind, "
                "use PoS Seed Search in pse mode with a PoS Depth Loader.")
    return (f"PoS Guidance guides the left/right/above/below relations of this prompt and leaves {names} "
            "unguided (front/behind: use PoS Seed Search in pse mode with a depth model).")


def maps_loss(maps: torch.Tensor, pairs: Sequence[tuple[int, int, str]], smoothing: bool = True,
              objective: str = "pos") -> torch.Tensor:
    """Sum of the PSG losses of `pairs` on [B, G, h, w] group maps: one loss per batch item [B].
    `objective`: "pos" (the PoS loss) or "center" (guidance.center_loss_batch)."""
    if objective not in guidance.OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(guidance.OBJECTIVES)}, got {objective!r}")
    if smoothing:
        maps = guidance.smooth(maps)
    directional = guidable_pairs(pairs)
    if not directional:
        return maps.new_zeros(maps.shape[0])
    return guidance.relations_loss(((maps[:, a], maps[:, b], rel) for a, b, rel in directional), objective)


SOFTMAX = ("text", "joint")  # DiT maps: softmax over the text keys only, or over the full joint row

# blocks / attention_level "maps": the share of the grid whose mass is counted, how close to the best block's
# score another block must be to be kept with it, and how many are kept at most (the published choices' count)
MAPS_TOP, MAPS_KEEP, MAPS_MOST = 0.1, 0.9, 5


def map_sharpness(maps: torch.Tensor, pairs: Sequence[tuple[int, int, str]], top: float = MAPS_TOP) -> dict:
    """How usable one block's (or level's) group maps [B, G, h, w] are for PoS guidance, per image [B]:

    concentration: mean over groups of the mass on the top `top` share of cells of the group's map
    normalised to sum 1 (`top` for a uniform map, 1 for a map on fewer cells than that share);
    overlap: mean over `pairs` of sum(min(p_a, p_b)), the mass the two normalised maps share (1 for equal
    maps, 0 for disjoint ones); score = concentration * (1 - overlap). Concentration alone would rank
    first a block whose text tokens all look at the same few image tokens (an attention sink): both
    objects' maps then sit on one spot, which says nothing about where each object is."""
    b, g, h, w = maps.shape
    p = maps.float().reshape(b, g, h * w).clamp_min(0)
    p = p / p.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    k = max(1, math.ceil(top * h * w))
    concentration = p.topk(k, dim=-1).values.sum(dim=-1).mean(dim=1)
    if pairs:
        overlap = torch.stack([torch.minimum(p[:, a], p[:, c]).sum(dim=-1) for a, c, _ in pairs]).mean(dim=0)
    else:
        overlap = torch.zeros_like(concentration)
    return {"score": concentration * (1 - overlap), "concentration": concentration, "overlap": overlap}


def pick_best(scores: Sequence[float], keep: float = MAPS_KEEP, most: int = MAPS_MOST) -> list[int]:
    """Indices of the kept candidates, in candidate order: the best score and every other at least `keep`
    times it, at most `most` (best first when cut; ties go to the earlier candidate). Deterministic."""
    if not scores:
        raise ValueError("no candidate to choose from")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    best = scores[order[0]]
    kept = [i for i in order if scores[i] >= keep * best][:max(1, most)] if best > 0 else order[:1]
    return sorted(kept)


def joint_token_maps(q: torch.Tensor, k: torch.Tensor, txt: tuple[int, int], img: tuple[int, int],
                     groups: Sequence[Sequence[int]], h: int, w: int, softmax: str = "text") -> torch.Tensor:
    """Image-to-text maps of token groups from one joint (MM-DiT) attention: [B, len(groups), h, w].

    q, k: [B, heads, L, d] of the joint sequence; rows `img` = (start, end) are the image queries
    (row-major h x w patches), keys `txt` = (start, end) the text tokens; group indices count from
    the first text token. softmax "text": over the text keys only (Learn-to-Steer; N x T per head);
    "joint": over the whole joint row, as the model attends (N x L per head). fp32, mean over heads.
    """
    if softmax not in SOFTMAX:
        raise ValueError(f"softmax must be one of {SOFTMAX}, got {softmax!r}")
    t = txt[1] - txt[0]
    for g in groups:
        bad = [i for i in g if not 0 <= i < t]
        if bad:
            raise ValueError(f"token indices {bad} are outside the {t}-token text context")
    cols = [i for g in groups for i in g]
    probs = joint_text_probs(q, k, txt, img, softmax)[..., cols]  # [B, N, sum of group sizes]
    maps, at = [], 0
    for g in groups:
        maps.append(probs[..., at:at + len(g)].mean(dim=-1))
        at += len(g)
    return torch.stack(maps, dim=1).reshape(q.shape[0], len(groups), h, w)


def joint_text_probs(q: torch.Tensor, k: torch.Tensor, txt: tuple[int, int], img: tuple[int, int],
                     softmax: str = "text") -> torch.Tensor:
    """Image-to-text attention of one joint attention, fp32, mean over heads: [B, N, T] for the image
    queries `img` and text keys `txt` ((start, end) of the joint sequence); q, k [B, heads, L, d].
    softmax "text": over the text keys only; "joint": over the whole row, then its text columns."""
    if softmax not in SOFTMAX:
        raise ValueError(f"softmax must be one of {SOFTMAX}, got {softmax!r}")
    qi = q[:, :, img[0]:img[1]].float() * q.shape[-1] ** -0.5
    keys = k[:, :, txt[0]:txt[1]] if softmax == "text" else k
    total = None
    for head in range(q.shape[1]):  # a head at a time: the N x L logits of all heads need not coexist
        probs = torch.softmax(qi[:, head] @ keys[:, head].float().transpose(-1, -2), dim=-1)
        if softmax == "joint":
            probs = probs[..., txt[0]:txt[1]]
        total = probs if total is None else total + probs
    return total / q.shape[1]


Box = tuple[float, float, float, float]  # top, left, bottom, right as fractions of the full latent


def canvas_mean(pieces: Sequence[tuple[torch.Tensor, Box | None]], grid: tuple[int, int]) -> torch.Tensor:
    """Mean of map pieces on one grid: each piece [B, G, h, w] covers its box of the full image (None:
    all of it) and is resized bilinearly to that box, whatever size the layer made it (Deep Shrink,
    an area crop, tiling). Cells that no piece covers are 0. Differentiable; [B, G, *grid]."""
    if not pieces:
        raise ValueError("no attention maps to combine")
    gh, gw = grid
    total = count = None
    for maps, box in pieces:
        t, l, b, r = box if box is not None else (0.0, 0.0, 1.0, 1.0)
        y0, x0 = min(int(round(t * gh)), gh - 1), min(int(round(l * gw)), gw - 1)
        y1, x1 = max(int(round(b * gh)), y0 + 1), max(int(round(r * gw)), x0 + 1)
        y1, x1 = min(y1, gh), min(x1, gw)
        piece = maps.float()
        if tuple(piece.shape[-2:]) != (y1 - y0, x1 - x0):
            piece = torch.nn.functional.interpolate(piece, size=(y1 - y0, x1 - x0), mode="bilinear",
                                                    align_corners=False)
        pad = (x0, gw - x1, y0, gh - y1)
        placed = torch.nn.functional.pad(piece, pad) if any(pad) else piece
        cover = torch.nn.functional.pad(piece.new_ones(1, 1, y1 - y0, x1 - x0), pad)
        if total is not None and placed.shape[0] != total.shape[0]:
            raise ValueError(f"attention map pieces disagree on the batch: {placed.shape[0]} vs {total.shape[0]}")
        total = placed if total is None else total + placed
        count = cover if count is None else count + cover
    return total / count.clamp_min(1.0)
