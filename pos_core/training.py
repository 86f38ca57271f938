"""The PoS loss as a training term: each caption's relations scored on the cross-attention maps of the
same forward pass that gives the diffusion loss, so a LoRA learns to lay relations out with no guidance
at sampling time. Maps in, loss out; no ComfyUI import, so any trainer (diffusers, kohya) can use it.

    probs = head_mean_probs(q, k, heads)                  # one cross-attention layer: [B, h*w, T]
    probs = joint_head_mean_probs(q, k, (0, T), (T, T + h * w))   # or one joint (MM-DiT) attention
    loss = diffusion + weight * attention_loss(probs, h, w, samples).mean()

`samples[i]` says which tokens of caption i are which object (`caption_relations`); the loss of one
sample is exactly PSG's (`attention.maps_loss`: smoothed token maps, P(wrong order)^2 per relation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import attention
from .relations import Relation, parse
from .tokens import Layout, RelationSet, Tokenize, bind_relations


@dataclass(frozen=True)
class SampleRelations:
    """The relations of one training caption: its token groups and the (group, group, relation) pairs
    PSG can guide (left, right, above, below). `skipped` counts the relations it cannot."""

    groups: tuple[tuple[int, ...], ...]
    pairs: tuple[tuple[int, int, str], ...]
    skipped: int = 0


def from_bound(bound: RelationSet) -> SampleRelations | None:
    """SampleRelations of token-bound relations; None when none of them can be guided."""
    rels = bound.relations
    groups = attention.token_groups(rels)
    pairs = attention.guidable_pairs(attention.relation_pairs(rels, groups))
    if not pairs:
        return None
    used = sorted({g for a, b, _ in pairs for g in (a, b)})
    keep = {old: new for new, old in enumerate(used)}  # drop groups only unguidable relations look at
    return SampleRelations(tuple(groups[g] for g in used), tuple((keep[a], keep[b], r) for a, b, r in pairs),
                           len(rels) - len(pairs))


def caption_relations(caption: str, tokenize: Tokenize | Layout,
                      relations: Sequence[Relation] | None = None) -> SampleRelations | None:
    """The guidable relations of a caption with their token indices: parsed from it (the pack's parser),
    or `relations` given with spans into it (an SR4G triplet). None when it has none to guide.
    `tokenize`: pos_core.tokens.tokenize_fn(a CLIP tokenizer), or a ComfyUI CLIP's layout."""
    rels = parse(caption) if relations is None else list(relations)
    if not rels:
        return None
    return from_bound(bind_relations(caption, rels, tokenize))


def head_mean_probs(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """Attention probabilities of one cross-attention layer, fp32, averaged over heads: [B, h*w, T].
    q [B, h*w, heads*d] (image queries), k [B, T, heads*d] (text keys), as the layer computes them."""
    return attention.attention_probs(q, k, heads).mean(dim=1)


def joint_head_mean_probs(q: torch.Tensor, k: torch.Tensor, txt: tuple[int, int], img: tuple[int, int],
                          softmax: str = "text") -> torch.Tensor:
    """Image-to-text attention of one joint (MM-DiT: Flux, SD3) attention, fp32, averaged over heads:
    [B, N, T] for the image queries `img` and text keys `txt` (start, end) of the joint sequence.
    q, k [B, heads, L, d]; softmax as PSG's DiT maps (`attention.joint_token_maps`): "text" over the text
    keys only, "joint" over the whole row (then only its text columns are kept)."""
    return attention.joint_text_probs(q, k, txt, img, softmax)


def attention_loss(probs: torch.Tensor, h: int, w: int, samples: Sequence[SampleRelations | None],
                   smoothing: bool = True, objective: str = "pos") -> torch.Tensor:
    """PoS loss of each sample's relations on its maps: [B], 0 where a sample has none.

    probs: [B, h*w, T] head-mean attention of the layer (or the mean over the layers of one level, as PSG
    averages them). Sample i's loss is PSG's loss on its token maps (`attention.maps_loss`), so its
    gradient is the one PoS Guidance follows at sampling time."""
    if probs.ndim != 3 or probs.shape[1] != h * w:
        raise ValueError(f"probs must be [B, h*w, T] with h*w = {h * w}, got {tuple(probs.shape)}")
    if len(samples) != probs.shape[0]:
        raise ValueError(f"{len(samples)} samples' relations for a batch of {probs.shape[0]}")
    t = probs.shape[-1]
    out = []
    for i, s in enumerate(samples):
        if s is None or not s.pairs:
            out.append(probs.new_zeros(()))
            continue
        bad = [j for g in s.groups for j in g if not 0 <= j < t]
        if bad:
            raise ValueError(f"sample {i}: token indices {bad} are outside the {t}-token context")
        maps = torch.stack([probs[i][:, list(g)].mean(dim=-1) for g in s.groups]).reshape(1, len(s.groups), h, w)
        out.append(attention.maps_loss(maps, s.pairs, smoothing, objective)[0])
    return torch.stack(out)


def batch_loss(per_sample: torch.Tensor, samples: Sequence[SampleRelations | None]) -> torch.Tensor:
    """Mean PoS loss over the batch's samples that have relations (0 when none has): captions without a
    relation add nothing, rather than diluting the others."""
    mask = torch.tensor([s is not None and bool(s.pairs) for s in samples], device=per_sample.device)
    if not bool(mask.any()):
        return per_sample.sum() * 0.0
    return per_sample[mask].mean()

