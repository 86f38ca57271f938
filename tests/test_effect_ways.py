"""Host-free tests of benchmarks/effect.py's way names, layout regions and scale choice (issue 21)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import effect  # noqa: E402  (stdlib imports only at module level)


def test_way_names():
    assert effect.parse_way("center@40") == ("center", 40.0)
    assert effect.parse_way("psg@20") == ("psg", 20.0)
    assert effect.parse_way("layout+psg") == ("layout+psg", effect.DEFAULT_SCALE)
    assert effect.parse_way("psg+search@5") == ("psg+search", 5.0)
    assert effect.parse_way("layout") == ("layout", None)
    assert effect.parse_way("search-pse") == ("search-pse", None)
    for bad in ("layout@5", "centre@5", "center@-1", "unguided@1"):
        with pytest.raises(ValueError):
            effect.parse_way(bad)


def test_layout_regions_are_the_two_sides_with_a_gap():
    m = effect.LAYOUT_MARGIN
    s, o = effect.layout_regions("left")
    assert s == (0.0, 0.0, 0.5 - m, 1.0) and o == (0.5 + m, 0.0, 0.5 - m, 1.0)
    assert effect.layout_regions("right") == (o, s)
    a, b = effect.layout_regions("above")
    assert a == (0.0, 0.0, 1.0, 0.5 - m) and b == (0.0, 0.5 + m, 1.0, 0.5 - m)
    assert effect.layout_regions("below") == (b, a)
    # at the testbed's 16 x 16 latent: 7 cells each, 2 cells apart (ComfyUI rounds percentage areas)
    assert round(s[2] * 16) == 7 and round(o[0] * 16) - round(s[2] * 16) == 2
    with pytest.raises(ValueError, match="no side"):
        effect.layout_regions("behind")


def test_choose_scale_prefers_accuracy_then_pse_then_the_smaller_scale():
    r = {5.0: {"relation_accuracy": 0.5, "mean_pse": 0.4}, 20.0: {"relation_accuracy": 0.7, "mean_pse": 0.6},
         80.0: {"relation_accuracy": 0.7, "mean_pse": 0.6}, 40.0: {"relation_accuracy": 0.7, "mean_pse": 0.5}}
    assert effect.choose_scale(r) == 20.0
    r[80.0]["mean_pse"] = 0.65
    assert effect.choose_scale(r) == 80.0
