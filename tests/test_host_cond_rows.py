"""Which rows of a model call the capture reads: only the chunks of the conds that carry the relations'
prompt (by uuid), never the negative or another prompt; nothing for a call that holds the negative
alone (ComfyUI splits cond and uncond when memory is short: seen as `torch.cat(): expected a non-empty
list of Tensors` inside the sampler before)."""

from __future__ import annotations

import torch


def test_chunks_of_split_calls_without_uuids(host):
    from pos_spatial_pack.nodes.conds import chunks

    assert chunks(None, {"cond_or_uncond": [0]}, 2) == [(slice(0, 2), None)]
    assert chunks(None, {}, 3) == [(slice(0, 3), None)]
    assert chunks(None, {"cond_or_uncond": [1, 0]}, 4) == [(slice(2, 4), None)]
    assert chunks(None, {"cond_or_uncond": [1]}, 2) == []


def test_chunks_follow_the_chosen_conds_not_the_flags(host):
    from pos_spatial_pack.nodes.conds import Selection, chunks

    box = ((0.0, 0.5, 1.0, 1.0), (8, 4))
    sel = Selection({"a", "c"}, {"c": box})
    # DualCFGGuider numbers its conds negative 0, middle 1, positive 2: the uuid decides, not the flag
    opts = {"cond_or_uncond": [0, 1, 2], "uuids": ["n", "b", "a"]}
    assert chunks(sel, opts, 6) == [(slice(4, 6), None)]
    opts = {"cond_or_uncond": [0, 0, 1], "uuids": ["a", "c", "n"]}
    assert chunks(sel, opts, 3) == [(slice(0, 1), None), (slice(1, 2), box)]
    assert chunks(sel, {"cond_or_uncond": [1], "uuids": ["n"]}, 1) == []


def test_select_picks_the_relations_prompt_among_several(host):
    from pos_spatial_pack.nodes.conds import fingerprint, select

    g = torch.Generator().manual_seed(0)
    mine, other = torch.randn(1, 77, 32, generator=g), torch.randn(1, 77, 32, generator=g)
    fp = fingerprint([[mine, {}]])
    positive = [{"uuid": "o", "cross_attn": other},
                {"uuid": "m", "cross_attn": torch.cat([mine, other], dim=1), "area": (4, 8, 4, 0)}]
    sel = select(positive, fp, (8, 16))
    assert sel.uuids == {"m"} and sel.note is None, "ConditioningConcat keeps the prompt first: it matches"
    assert sel.regions["m"] == ((0.5, 0.0, 1.0, 0.5), (4, 8))
    none = select(positive, fingerprint([[torch.randn(1, 77, 32), {}]]), (8, 16))
    assert none.uuids == {"o", "m"} and "averaged over all positive prompts" in none.note
    hand = select(positive, None, (8, 16))
    assert hand.uuids == {"o", "m"} and "typed by hand" in hand.note
    one = select([{"uuid": "o", "cross_attn": other}], fp, (8, 16))
    assert one.uuids == {"o"} and one.note is None, "a single positive cond is always read"
