"""Host-free tests of the effect testbed's synthetic scenes (pos_core.scenes)."""

from __future__ import annotations

import pytest
import torch

from pos_core import scenes
from pos_core.relations import parse


def test_every_template_parses_to_its_relation():
    for rel in scenes.RELATIONS:
        for t in range(len(scenes.TEMPLATES[rel])):
            got = [(r.subject, r.relation, r.object) for r in parse(scenes.prompt("cat", rel, "dog", t))]
            assert got == [("cat", rel, "dog")], (rel, t, got)


def test_scenes_hold_their_relation_and_segment_exactly():
    gen = torch.Generator().manual_seed(0)
    for i in range(200):
        s, o = ("cup", "bird") if i % 2 else ("clock", "chair")
        rel = scenes.RELATIONS[i % 4]
        x = scenes.scene(s, rel, o, gen)
        m = scenes.masks_of(x / scenes.SCALE_FACTOR, [s, o])
        assert int(m[s].sum()) == int(m[o].sum()) == scenes.PATCH ** 2
        cs = torch.nonzero(m[s]).float().mean(0)
        co = torch.nonzero(m[o]).float().mean(0)
        dy, dx = (cs - co).tolist()
        ok = {"left": dx <= -(scenes.PATCH + 1), "right": dx >= scenes.PATCH + 1,
              "above": dy <= -(scenes.PATCH + 1), "below": dy >= scenes.PATCH + 1}[rel]
        assert ok, (rel, dy, dx)


def test_segmentation_rejects_weak_or_mixed_vectors():
    v = scenes.class_vectors()
    x = torch.zeros(4, 2, 2)
    x[:, 0, 0] = v[0]
    x[:, 0, 1] = v[0] * 0.3  # too faint
    x[:, 1, 0] = (v[0] + v[1]) / 2  # between two classes
    seg = scenes.segment(x)
    assert seg.tolist() == [[0, -1], [-1, -1]]


def test_pair_split_is_disjoint_and_seeded():
    train, held = scenes.pair_split(0)
    assert not {frozenset(p) for p in train} & {frozenset(p) for p in held}
    assert len(held) == 2 * scenes.HELD_OUT_PAIRS and len(train) + len(held) == 8 * 7
    assert scenes.pair_split(0) == (train, held) and scenes.pair_split(1) != (train, held)
    cases = scenes.eval_cases(50)
    assert all(frozenset((c[1], c[3])) in {frozenset(p) for p in held} for c in cases)
    assert len({c[4] for c in cases}) == 50


def test_colours_are_what_the_vectors_decode_to():
    for name, rgb in scenes.colors().items():
        sign = scenes.CLASSES[name]
        assert all(abs(c - (scenes.AMPLITUDE * s + 1) / 2) < 1e-9 for c, s in zip(rgb, sign))


def test_validation_cases_are_disjoint_from_the_reported_ones():
    reported = scenes.eval_cases(1000)
    for pairs in ("held", "seen"):
        val = scenes.validation_cases(300, pairs)
        assert not {c[-1] for c in val} & {c[-1] for c in reported}  # no noise seed in common
        assert not set(val) & set(reported)
    train, held = scenes.pair_split(0)
    assert {(c[1], c[3]) for c in scenes.validation_cases(300, "held")} <= set(held)
    assert not {(c[1], c[3]) for c in scenes.validation_cases(300, "seen")} & set(held)
    assert [c[0] for c in scenes.validation_cases(20)] != [c[0] for c in reported[:20]]  # another order
    with pytest.raises(ValueError, match="held"):
        scenes.validation_cases(5, "train")


# ----------------------------------------------------------------------------------- three objects

def _centroid(mask: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask).float().mean(0)


def _holds(rel: str, cs: torch.Tensor, co: torch.Tensor) -> bool:
    dy, dx = (cs - co).tolist()
    gap = scenes.PATCH + 1
    return {"left": dx <= -gap, "right": dx >= gap, "above": dy <= -gap, "below": dy >= gap}[rel]


def test_three_object_scenes_hold_both_relations_without_overlap():
    gen = torch.Generator().manual_seed(0)
    names = list(scenes.CLASSES)
    for i in range(600):
        r1, r2 = scenes.RELATION_PAIRS3[i % len(scenes.RELATION_PAIRS3)]
        a, b, c = names[i % 8], names[(i + 3) % 8], names[(i + 5) % 8]
        x = scenes.scene3(a, r1, b, r2, c, gen)
        m = scenes.masks_of(x / scenes.SCALE_FACTOR, [a, b, c])
        # each patch whole (no object covers part of another), so no two overlap
        assert [int(m[n].sum()) for n in (a, b, c)] == [scenes.PATCH ** 2] * 3, (i, r1, r2)
        assert _holds(r1, _centroid(m[a]), _centroid(m[b])), (i, r1)
        assert _holds(r2, _centroid(m[c]), _centroid(m[b])), (i, r2)


def test_three_object_placement_is_deterministic_and_leaves_out_only_opposite_pairs():
    assert len(scenes.RELATION_PAIRS3) == 12
    assert all(scenes.OPPOSITE[r1] != r2 for r1, r2 in scenes.RELATION_PAIRS3)
    for r1, r2 in scenes.RELATION_PAIRS3:
        one = scenes.place3(r1, r2, torch.Generator().manual_seed(7))
        assert one == scenes.place3(r1, r2, torch.Generator().manual_seed(7))
    with pytest.raises(RuntimeError, match="no placement"):  # three in a row does not fit with the gaps
        scenes.place3("left", "right", torch.Generator().manual_seed(0), tries=20)


def test_three_object_prompts_parse_to_both_relations():
    cases = scenes.eval_cases3(400) + [(*cap, 0) for cap in scenes.training_prompts3(0)]
    for p, a, r1, b, r2, c, _ in cases:
        got = [(r.subject, r.relation, r.object) for r in parse(p)]
        assert got == [(a, r1, b), (c, r2, b)], (p, got)
    assert scenes.prompt3("cat", "left", "dog", "above", "cup") == "a cat to the left of a dog, and a cup above the dog"


def test_triple_split_is_consistent_with_pair_split():
    train, held = scenes.pair_split(0)
    held_u = {frozenset(p) for p in held}
    tr, ho = scenes.triple_split(0)
    assert tr and ho and not set(tr) & set(ho)
    for a, b, c in tr:  # training triples: every pair seen in training
        assert not {frozenset((a, b)), frozenset((c, b)), frozenset((a, c))} & held_u
    for a, b, c in ho:  # held-out triples: a relation's pair is held out
        assert {frozenset((a, b)), frozenset((c, b))} & held_u
    caps = scenes.training_prompts3(0)
    assert len(caps) == 1024 and len(set(caps)) == 1024 and caps == scenes.training_prompts3(0)
    assert all((a, b, c) in set(tr) for _, a, _, b, _, c in caps)


def test_three_object_cases_are_held_out_and_validation_is_disjoint():
    _, ho = scenes.triple_split(0)
    reported = scenes.eval_cases3(1000)
    assert all((c[1], c[3], c[5]) in set(ho) for c in reported)
    assert len({c[-1] for c in reported}) == 1000
    for pairs in ("held", "seen"):
        val = scenes.validation_cases3(300, pairs)
        assert not {c[-1] for c in val} & {c[-1] for c in reported}
        assert not set(val) & set(reported)
    assert {(c[1], c[3], c[5]) for c in scenes.validation_cases3(300)} <= set(ho)
    assert not {(c[1], c[3], c[5]) for c in scenes.validation_cases3(300, "seen")} & set(ho)
    assert [c[0] for c in scenes.validation_cases3(20)] != [c[0] for c in reported[:20]]
    with pytest.raises(ValueError, match="held"):
        scenes.validation_cases3(5, "train")
