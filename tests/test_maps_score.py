"""The score behind blocks / attention_level "maps" (pos_core.attention.map_sharpness) and the keep rule
(pick_best), host-free."""

from __future__ import annotations

import pytest
import torch

from pos_core.attention import map_sharpness, pick_best

PAIR = [(0, 1, "left")]


def blob(h, w, y, x, r=1):
    m = torch.full((h, w), 1e-6)
    m[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1] = 1.0
    return m


def test_uniform_maps_score_zero_and_concentration_is_the_top_share():
    s = map_sharpness(torch.ones(2, 2, 10, 10), PAIR)
    assert torch.allclose(s["concentration"], torch.full((2,), 0.1))
    assert torch.allclose(s["overlap"], torch.ones(2)) and torch.allclose(s["score"], torch.zeros(2))


def test_distinct_blobs_beat_a_shared_sink_and_diffuse_maps():
    h = w = 16
    objects = torch.stack([blob(h, w, 8, 3), blob(h, w, 8, 12)])[None]  # two objects, apart
    sink = torch.stack([blob(h, w, 0, 0), blob(h, w, 0, 0)])[None]  # both tokens on one corner
    diffuse = (objects + 0.05).clone()
    so, ss, sd = (float(map_sharpness(m, PAIR)["score"][0]) for m in (objects, sink, diffuse))
    assert so > 0.9 and ss < 0.01 and 0 < sd < so
    assert float(map_sharpness(sink, PAIR)["concentration"][0]) > 0.99  # concentration alone would pick it


def test_scale_invariant_and_per_image():
    h = w = 8
    a = torch.stack([blob(h, w, 2, 1), blob(h, w, 2, 6)])
    b = torch.ones(2, h, w)
    s = map_sharpness(torch.stack([a, b]) * 7.0, PAIR)["score"]
    assert s.shape == (2,) and float(s[0]) > 0.5 and abs(float(s[1])) < 1e-6
    assert torch.allclose(map_sharpness(a[None], PAIR)["score"], map_sharpness(a[None] * 0.01, PAIR)["score"])


def test_no_pairs_scores_concentration_only():
    m = torch.stack([blob(8, 8, 2, 2), blob(8, 8, 2, 2)])[None]
    s = map_sharpness(m, [])
    assert torch.allclose(s["score"], s["concentration"])


def test_pick_best_keeps_the_best_and_those_within_ten_percent():
    assert pick_best([0.1, 0.5, 0.46, 0.44]) == [1, 2]
    assert pick_best([0.3, 0.3, 0.3], most=2) == [0, 1]  # ties: earlier first
    assert pick_best([0.2, 0.9, 0.85], most=1) == [1]
    assert pick_best([0.0, 0.0]) == [0]
    assert pick_best([0.5] * 8) == [0, 1, 2, 3, 4]  # at most 5
    with pytest.raises(ValueError, match="no candidate"):
        pick_best([])
