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
