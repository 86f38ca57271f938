"""Which positive conds of a sampling run carry the relations' prompt, and where each one acts.

A positive CONDITIONING can hold several conds (ConditioningCombine, SetArea, SetMask, SetTimestepRange).
The relations' token indices belong to one prompt, so PSG reads and guides the maps of the conds whose
text context starts with that prompt's encoding (PoS Relations from Prompt keeps a fingerprint of it),
and places an area cond's maps at its area of the full latent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..pos_core.attention import Box

FINGERPRINT_TOKENS = 77
FINGERPRINT_DIMS = 16


def fingerprint(conditioning) -> torch.Tensor | None:
    """A few numbers of an encoded prompt (first tokens x first channels, cpu fp32) that tell it apart
    from other prompts: what PoS Relations from Prompt stores beside its CONDITIONING output."""
    if not conditioning:
        return None
    cond = conditioning[0][0]
    if not isinstance(cond, torch.Tensor) or cond.ndim != 3:
        return None
    return cond[0, :FINGERPRINT_TOKENS, :FINGERPRINT_DIMS].detach().float().cpu().clone()


def carries(fp: torch.Tensor, context: torch.Tensor | None) -> bool:
    """Whether a cond's text context [B, T, D] starts with the fingerprinted prompt (ConditioningConcat
    appends after it; the relations' token indices then still point at the same tokens), after any zero
    rows a model pads it with on the left."""
    if context is None or context.ndim != 3 or context.shape[2] < fp.shape[1]:
        return False
    # a model that left-pads the text with zero rows (Flux.2 pads to 512) has the prompt after them
    rows = (context[0, :, :fp.shape[1]].detach() != 0).any(-1).nonzero()
    start = int(rows[0]) if len(rows) else 0
    if context.shape[1] - start < fp.shape[0]:
        return False
    head = context[0, start:start + fp.shape[0], :fp.shape[1]].detach().float().cpu()
    return bool(torch.allclose(head, fp, rtol=1e-3, atol=1e-4))


def _context(cond: dict) -> torch.Tensor | None:
    mc = cond.get("model_conds", {}).get("c_crossattn")
    c = getattr(mc, "cond", None)
    return c if isinstance(c, torch.Tensor) else cond.get("cross_attn")


@dataclass
class Selection:
    """The conds PSG reads: their uuids (None: every positive row, as when a guider has no 'positive'),
    the region each acts on (None = the whole latent) and a note for the user, if any."""

    uuids: set | None
    regions: dict
    note: str | None = None


def region(cond: dict, latent_hw: tuple[int, int]) -> tuple[Box, tuple[int, int]] | None:
    """(box as fractions of the latent, crop size in latent cells) of an area cond, as ComfyUI crops it."""
    area = cond.get("area")
    if area is None or isinstance(area[0], str):
        return None
    half = len(area) // 2
    h_lat, w_lat = latent_hw
    ah, aw = int(area[half - 2]), int(area[half - 1])
    ay, ax = int(area[-2]), int(area[-1])
    ah, aw = min(h_lat - ay, ah), min(w_lat - ax, aw)
    if ah <= 0 or aw <= 0:
        return None
    return (ay / h_lat, ax / w_lat, (ay + ah) / h_lat, (ax + aw) / w_lat), (ah, aw)


def select(positive: list[dict] | None, fp: torch.Tensor | None, latent_hw: tuple[int, int]) -> Selection:
    """The positive conds that carry the relations' prompt (all of them when there is only one, or
    when none can be told apart, with a note saying so)."""
    if not positive:
        return Selection(None, {})
    chosen = list(positive)
    note = None
    contexts = [_context(c) for c in positive]
    distinct = len(positive) > 1 and any(
        c is None or o is None or c.shape != o.shape or not torch.equal(c, o) for c, o in zip(contexts, contexts[1:]))
    if distinct:
        if fp is None:
            note = ("PoS Guidance: the positive conditioning holds several prompts and the relations were typed by "
                    "hand, so the maps are averaged over all of them. Use the CONDITIONING of PoS Relations from "
                    "Prompt for the relations' prompt to have only its maps used.")
        else:
            hits = [c for c, ctx in zip(positive, contexts) if carries(fp, ctx)]
            if hits:
                chosen = hits
            else:
                note = ("PoS Guidance: none of the positive prompts is the relations' prompt as PoS Relations from "
                        "Prompt encoded it (ConditioningAverage, or another encoder), so the maps are averaged "
                        "over all positive prompts.")
    regions = {}
    for c in chosen:
        r = region(c, latent_hw)
        if r is not None:
            regions[c.get("uuid")] = r
    return Selection({c.get("uuid") for c in chosen}, regions, note)


def chunks(selection: Selection | None, options: dict, batch: int) -> list[tuple[slice, tuple | None]]:
    """Row ranges of a model call's batch that PSG reads, each with its (box, crop size) or None.

    A call is a batch of chunks (`cond_or_uncond`, `uuids`): the chunks of the chosen conds are read;
    without uuids (another caller), the chunks of the positive prompt (value 0)."""
    flags = options.get("cond_or_uncond") or [0]
    uuids = options.get("uuids") or [None] * len(flags)
    per = batch // len(flags)
    out = []
    for i, (flag, uid) in enumerate(zip(flags, uuids)):
        if selection is None or selection.uuids is None or uid is None:
            if flag != 0:
                continue
        elif uid not in selection.uuids:
            continue
        reg = selection.regions.get(uid) if selection is not None else None
        out.append((slice(i * per, (i + 1) * per), reg))
    return out
