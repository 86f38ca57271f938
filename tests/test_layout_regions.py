"""Host-free tests of pos_core.layout: the regions PoS Layout from Relations gives each object."""

from __future__ import annotations

import pytest

from pos_core import layout


def test_halves_of_one_relation():
    m = layout.MARGIN
    assert layout.halves("left") == ((0.0, 0.0, 0.5 - m, 1.0), (0.5 + m, 0.0, 0.5 - m, 1.0))
    assert layout.halves("below", 0.0) == ((0.0, 0.5, 1.0, 0.5), (0.0, 0.0, 1.0, 0.5))


def test_a_chain_of_three_on_one_axis_gives_three_bands():
    r = layout.regions([("cat", "left", "dog"), ("dog", "left", "cup")], margin=0.0)
    assert [round(r[n][0], 4) for n in ("cat", "dog", "cup")] == [0.0, round(1 / 3, 4), round(2 / 3, 4)]
    assert all(abs(r[n][2] - 1 / 3) < 1e-9 for n in r)


def test_a_contradiction_is_named():
    with pytest.raises(ValueError, match="contradict"):
        layout.regions([("cat", "left", "dog"), ("dog", "left", "cat")])


def test_a_margin_too_large_for_the_bands_is_refused():
    with pytest.raises(ValueError, match="margin"):
        layout.regions([("cat", "left", "dog"), ("dog", "left", "cup")], margin=0.2)


def test_depth_relations_are_split_off():
    ok, rest = layout.split_placeable([("cat", "left", "dog"), ("vase", "front", "clock"), ("a", "near", "b")])
    assert ok == [("cat", "left", "dog")] and [r[1] for r in rest] == ["front", "near"]
    with pytest.raises(ValueError, match="no side"):
        layout.regions([("vase", "front", "clock")])
