"""pos_core.training: the PoS loss as a training term (host-free). Its value and gradient must be PSG's,
sample by sample, since a LoRA trained on it is meant to do at sampling time what PoS Guidance does."""

import pytest
import torch

from pos_core import attention
from pos_core.tokens import RelationSet, TokenRelation, tokenize_fn
from pos_core.training import (
    SampleRelations,
    attention_loss,
    batch_loss,
    caption_relations,
    from_bound,
    head_mean_probs,
    joint_head_mean_probs,
)

H = W = 8
HEADS, D, T = 2, 8, 77


def qk(seed: int, b: int):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, H * W, HEADS * D, generator=g, requires_grad=True)
    k = torch.randn(b, T, HEADS * D, generator=g, requires_grad=True)
    return q, k


def psg_loss(q, k, groups, pairs):
    """What PoS Guidance computes for one image: token maps of the groups, then maps_loss (smoothed)."""
    maps = attention.token_maps(q, k, HEADS, groups, H, W)
    return attention.maps_loss(maps, pairs)


def test_value_and_gradient_equal_psgs_per_sample():
    q, k = qk(0, 1)
    s = SampleRelations(((2,), (6, 7)), ((0, 1, "left"),))
    mine = attention_loss(head_mean_probs(q, k, HEADS), H, W, [s])
    gq, gk = torch.autograd.grad(mine.sum(), (q, k))
    q2, k2 = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    ref = psg_loss(q2, k2, list(s.groups), list(s.pairs))
    rq, rk = torch.autograd.grad(ref.sum(), (q2, k2))
    assert mine.shape == (1,) and float(mine.detach()) > 0
    torch.testing.assert_close(mine, ref)
    torch.testing.assert_close(gq, rq)
    torch.testing.assert_close(gk, rk)
    assert float(gq.abs().sum()) > 0


@pytest.mark.parametrize("softmax", ["text", "joint"])
def test_joint_attention_value_and_gradient_equal_psgs_dit_maps(softmax):
    """Flux / SD3: the maps of a joint attention (text first, then the image), per sample, equal PSG's DiT
    maps (`attention.joint_token_maps`) in value and gradient, for either softmax."""
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, HEADS, T + H * W, D, generator=g, requires_grad=True)
    k = torch.randn(2, HEADS, T + H * W, D, generator=g, requires_grad=True)
    s = [SampleRelations(((2,), (6, 7)), ((0, 1, "left"),)), SampleRelations(((4,), (9,)), ((1, 0, "below"),))]
    txt, img = (0, T), (T, T + H * W)
    mine = attention_loss(joint_head_mean_probs(q, k, txt, img, softmax), H, W, s)
    gq, gk = torch.autograd.grad(mine.sum(), (q, k))
    q2, k2 = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    ref = torch.cat([attention.maps_loss(attention.joint_token_maps(q2[i:i + 1], k2[i:i + 1], txt, img,
                                                                     list(si.groups), H, W, softmax), si.pairs)
                     for i, si in enumerate(s)])
    rq, rk = torch.autograd.grad(ref.sum(), (q2, k2))
    torch.testing.assert_close(mine, ref)
    torch.testing.assert_close(gq, rq)
    torch.testing.assert_close(gk, rk)
    assert float(gq.abs().sum()) > 0 and float(mine.min()) > 0
    with pytest.raises(ValueError, match="softmax must be one of"):
        joint_head_mean_probs(q, k, txt, img, "image")


def test_each_sample_its_own_relations_and_none_gives_zero():
    q, k = qk(1, 3)
    a = SampleRelations(((1,), (4,)), ((0, 1, "above"),))
    b = SampleRelations(((3,), (5,), (9,)), ((0, 1, "right"), (2, 0, "below")))
    per = attention_loss(head_mean_probs(q, k, HEADS), H, W, [a, None, b])
    assert per.shape == (3,) and float(per[1]) == 0.0
    for i, s in ((0, a), (2, b)):
        qi, ki = q[i:i + 1].detach(), k[i:i + 1].detach()
        torch.testing.assert_close(per[i], psg_loss(qi, ki, list(s.groups), list(s.pairs))[0])
    # the batch term averages over the samples that have relations only
    torch.testing.assert_close(batch_loss(per, [a, None, b]), (per[0] + per[2]) / 2)
    # a caption without relations gets no gradient from the PoS term
    gq, = torch.autograd.grad(batch_loss(per, [a, None, b]), (q,))
    assert float(gq[1].abs().sum()) == 0.0 and float(gq[0].abs().sum()) > 0


def test_right_order_costs_less_than_wrong_order():
    probs = torch.full((1, H * W, T), 1e-4)
    cols = torch.arange(H * W) % W
    probs[0, cols < 3, 2] = 1.0  # token 2 on the left columns
    probs[0, cols > 4, 5] = 1.0  # token 5 on the right columns
    left = SampleRelations(((2,), (5,)), ((0, 1, "left"),))
    right = SampleRelations(((2,), (5,)), ((0, 1, "right"),))
    lo, hi = attention_loss(probs.expand(2, -1, -1), H, W, [left, right])
    assert float(lo) < 0.05 < 0.5 < float(hi)


def test_bad_inputs_name_what_is_wrong():
    probs = torch.rand(1, H * W, T)
    with pytest.raises(ValueError, match=r"\[B, h\*w, T\]"):
        attention_loss(probs, H, W + 1, [None])
    with pytest.raises(ValueError, match="2 samples' relations for a batch of 1"):
        attention_loss(probs, H, W, [None, None])
    with pytest.raises(ValueError, match="sample 0: token indices \\[90\\]"):
        attention_loss(probs, H, W, [SampleRelations(((90,), (3,)), ((0, 1, "left"),))])


def test_from_bound_keeps_only_guidable_relations():
    rs = RelationSet("p", (TokenRelation("cat", "left", "dog", (2,), (6,)),
                           TokenRelation("cup", "front", "dog", (9,), (6,))))
    s = from_bound(rs)
    assert s.pairs == ((0, 1, "left"),) and s.groups == ((2,), (6,)) and s.skipped == 1
    assert from_bound(RelationSet("p", (TokenRelation("cup", "behind", "dog", (9,), (6,)),))) is None


def test_caption_relations_with_the_clip_tokenizer(clip_tokenizer):
    tz = tokenize_fn(clip_tokenizer)
    s = caption_relations("a photo of a cat to the left of a dog", tz)
    ids = clip_tokenizer("a photo of a cat to the left of a dog")["input_ids"]
    cat, dog = clip_tokenizer.convert_tokens_to_ids(["cat</w>", "dog</w>"])
    assert s.pairs == ((0, 1, "left"),)
    assert [ids[i] for i in s.groups[0]] == [cat] and [ids[i] for i in s.groups[1]] == [dog]
    assert caption_relations("a photo of a cat and a dog", tz) is None  # no relation: diffusion loss only
