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


def test_layout_regions_many_gives_one_relation_its_two_halves():
    for rel in ("left", "right", "above", "below"):
        s, o = effect.layout_regions(rel)
        assert effect.layout_regions_many([("cat", rel, "dog")]) == {"cat": s, "dog": o}


def test_layout_regions_many_for_three_objects():
    m = effect.LAYOUT_MARGIN
    # cat left of dog, cup above dog: x splits cat | dog (cup free), y splits cup / dog (cat free)
    r = effect.layout_regions_many([("cat", "left", "dog"), ("cup", "above", "dog")])
    assert r["cat"] == (0.0, 0.0, 0.5 - m, 1.0)
    assert r["dog"] == (0.5 + m, 0.5 + m, 0.5 - m, 0.5 - m)
    assert r["cup"] == (0.0, 0.0, 1.0, 0.5 - m)
    # both left of the dog: they share the left band
    r = effect.layout_regions_many([("cat", "left", "dog"), ("cup", "left", "dog")])
    assert r["cat"] == r["cup"] == (0.0, 0.0, 0.5 - m, 1.0) and r["dog"] == (0.5 + m, 0.0, 0.5 - m, 1.0)
    # one on each side: three bands
    r = effect.layout_regions_many([("cat", "below", "dog"), ("cup", "above", "dog")])
    assert [round(r[n][1], 4) for n in ("cup", "dog", "cat")] == [0.0, round(1 / 3 + m, 4), round(2 / 3 + m, 4)]
    with pytest.raises(ValueError, match="no side"):
        effect.layout_regions_many([("cat", "near", "dog")])


def test_case_objects_and_cases_of():
    assert effect.case_objects(("p", "cat", "left", "dog", 1)) == [("cat", "left", "dog")]
    assert effect.case_objects(("p", "cat", "left", "dog", "above", "cup", 1)) == [("cat", "left", "dog"),
                                                                                 ("cup", "above", "dog")]
    assert len(effect.cases_of(3, 5)[0]) == 7 and len(effect.cases_of(2, 5)[0]) == 5
    val, rep = effect.cases_of(3, 50, validation=True), effect.cases_of(3, 50)
    assert not {c[-1] for c in val} & {c[-1] for c in rep}
    with pytest.raises(ValueError):
        effect.cases_of(4, 1)


def test_choose_scale_in_range_skips_a_scale_that_wins_out_of_range():
    r = {20.0: {"relation_accuracy": 0.7, "correct_in_range": 0.6, "mean_pse": 0.5},
         320.0: {"relation_accuracy": 0.9, "correct_in_range": 0.0, "mean_pse": 0.6}}
    assert effect.choose_scale(r) == 320.0
    assert effect.choose_scale(r, in_range=True) == 20.0
