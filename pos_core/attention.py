"""Cross-attention maps for PSG: probabilities of chosen text tokens over image positions.

The authors average the fp32 softmax over all text tokens across the heads and the layers of
one UNet level, conditional branch only, current step only (PAPER.md section 4).
"""

from __future__ import annotations

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


def maps_loss(maps: torch.Tensor, pairs: Sequence[tuple[int, int, str]], smoothing: bool = True) -> torch.Tensor:
    """Sum of the PSG losses of `pairs` on [B, G, h, w] group maps: one loss per batch item [B]."""
    if smoothing:
        maps = guidance.smooth(maps)
    directional = [(a, b, rel) for a, b, rel in pairs if rel in ("left", "right", "above", "below")]
    if not directional:
        return maps.new_zeros(maps.shape[0])
    return guidance.relations_loss((maps[:, a], maps[:, b], rel) for a, b, rel in directional)
