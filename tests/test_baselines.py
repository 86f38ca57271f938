"""Center-based baselines (VISOR, GenEval position, T2I-CompBench 2D) on hand-computed boxes."""

import math

import numpy as np
import pytest
import torch

from pos_core.baselines import (VISOR_SCORE, baseline_verdicts, box_iou, filter_boxes, geneval_relations,
                                geneval_verdict, mask_box, mask_boxes, t2i_compbench_score, top_box,
                                visor_aggregates, visor_verdict)

# ------------------------------------------------------------------------------------------------ VISOR


def test_visor_centre_order_and_y_down():
    a, b = [(0, 0, 10, 10)], [(40, 0, 50, 10)]
    assert visor_verdict(a, b, "left") == {"both_present": True, "correct": True}
    assert visor_verdict(a, b, "right") == {"both_present": True, "correct": False}
    top, bottom = [(0, 0, 10, 10)], [(0, 20, 10, 30)]  # smaller y is higher in the image
    assert visor_verdict(top, bottom, "above")["correct"]
    assert not visor_verdict(top, bottom, "below")["correct"]
    assert visor_verdict(bottom, top, "below")["correct"]
    # no margin, strict: equal centre x is neither left nor right, even if the boxes differ in size
    assert not visor_verdict([(0, 0, 10, 10)], [(-5, 50, 15, 60)], "left")["correct"]
    assert not visor_verdict([(0, 0, 10, 10)], [(-5, 50, 15, 60)], "right")["correct"]
    # one pixel of centre difference is enough (contrast with GenEval's shrink below)
    assert visor_verdict([(0, 0, 20, 20)], [(1, 0, 21, 20)], "left")["correct"]
    assert visor_verdict(a, b, "to the left of")["correct"]  # phrases map to canonical relations


def test_visor_any_pair_and_missing_objects():
    a = [(0, 0, 10, 10), (80, 0, 90, 10)]
    b = [(40, 0, 50, 10)]
    assert visor_verdict(a, b, "left")["correct"]  # first A instance
    assert visor_verdict(a, b, "right")["correct"]  # second A instance
    assert not visor_verdict(a[:1], b, "right")["correct"]
    assert visor_verdict([], b, "left") == {"both_present": False, "correct": False}
    assert visor_verdict(a, [], "right") == {"both_present": False, "correct": False}


def test_visor_score_threshold():
    a, b = [(0, 0, 10, 10), (80, 0, 90, 10)], [(40, 0, 50, 10)]
    # the left A instance scores exactly 0.1, not > 0.1: dropped, so only the right one counts
    v = visor_verdict(a, b, "left", scores_a=[VISOR_SCORE, 0.5], scores_b=[0.3])
    assert v == {"both_present": True, "correct": False}
    assert visor_verdict(a, b, "left", scores_a=[0.05, 0.09], scores_b=[0.3])["both_present"] is False
    assert visor_verdict(a, b, "left", scores_a=[0.05, 0.5], score_threshold=0.01)["correct"]
    assert filter_boxes(a, [0.2, 0.1]) == [(0.0, 0.0, 10.0, 10.0)]
    assert filter_boxes(a, None) == [(0.0, 0.0, 10.0, 10.0), (80.0, 0.0, 90.0, 10.0)]


def _table(prompt: str, flags: list[tuple[bool, bool]]) -> list[dict]:
    return [{"prompt_id": prompt, "both_present": p, "correct": c} for p, c in flags]


def test_visor_aggregates_two_prompts_four_images():
    # p1: 4/4 present, 4 correct; p2: 3/4 present, 1 correct
    rows = _table("p1", [(True, True)] * 4) + _table("p2", [(True, True), (True, False), (True, False),
                                                            (False, False)])
    rows = rows[::2] + rows[1::2]  # interleaved order must not matter
    agg = visor_aggregates(rows)
    assert agg["OA"] == pytest.approx(100 * 7 / 8)
    assert agg["VISOR_cond"] == pytest.approx(100 * 5 / 7)
    assert agg["VISOR_uncond"] == pytest.approx(100 * 5 / 8)  # = cond * OA / 100 = correct among all
    assert agg["VISOR_uncond"] == pytest.approx(agg["VISOR_cond"] * agg["OA"] / 100)
    assert [agg[f"VISOR_{k}"] for k in (1, 2, 3, 4)] == pytest.approx([100.0, 50.0, 50.0, 50.0])
    assert "VISOR_5" not in agg


def test_visor_aggregates_per_prompt_counts():
    # p1: 3 correct, p2: 1 correct -> at least 1: both, at least 2 or 3: p1 only, at least 4: none
    rows = _table("p1", [(True, True)] * 3 + [(True, False)]) + _table("p2", [(True, True), (True, False),
                                                                             (False, False), (False, False)])
    agg = visor_aggregates(rows)
    assert agg["OA"] == pytest.approx(75.0)
    assert agg["VISOR_cond"] == pytest.approx(100 * 4 / 6)
    assert agg["VISOR_uncond"] == pytest.approx(50.0)
    assert [agg[f"VISOR_{k}"] for k in (1, 2, 3, 4)] == pytest.approx([100.0, 50.0, 50.0, 0.0])
    two = visor_aggregates(rows, images_per_prompt=2)
    assert sorted(k for k in two if k.startswith("VISOR_") and k[-1].isdigit()) == ["VISOR_1", "VISOR_2"]


def test_visor_aggregates_empty_and_nothing_present():
    empty = visor_aggregates([])
    assert empty == {"OA": 0.0, "VISOR_cond": 0.0, "VISOR_uncond": 0.0, "VISOR_1": 0.0, "VISOR_2": 0.0,
                     "VISOR_3": 0.0, "VISOR_4": 0.0}
    none = visor_aggregates(_table("p", [(False, False)] * 4))
    assert none["OA"] == 0.0 and none["VISOR_cond"] == 0.0 and none["VISOR_uncond"] == 0.0
    assert none["VISOR_1"] == 0.0


# ------------------------------------------------------------------------------------------------ GenEval


def test_geneval_shrink_and_threshold():
    a, b = (0, 0, 10, 10), (30, 0, 40, 10)  # dx = -30, shrink 0.1 * 20 = 2 -> -28 / 30 = -0.93
    assert geneval_relations(a, b) == {"left"}
    assert geneval_relations(b, a) == {"right"}
    assert geneval_verdict(a, b, "left") and not geneval_verdict(a, b, "right")
    # near-overlap: |dx| = 1 shrinks to 0 (0.1 * (20 + 20) = 4), dy = 0: no relation although VISOR says left
    assert geneval_relations((0, 0, 20, 20), (1, 0, 21, 20)) == set()
    assert not geneval_verdict((0, 0, 20, 20), (1, 0, 21, 20), "left")
    # shrunk but not to 0: dx = -35, shrink 0.1 * 200 = 20 -> -15 / 35 = -0.43, not beyond 0.5
    assert geneval_relations((0, 0, 100, 100), (35, 0, 135, 100)) == set()
    # exactly -0.5 (dx = -40 -> -20 / 40) is not < -0.5
    assert geneval_relations((0, 0, 100, 100), (40, 0, 140, 100)) == set()
    assert geneval_relations((0, 0, 100, 100), (60, 0, 160, 100)) == {"left"}  # -40 / 60


def test_geneval_shrinks_each_axis_by_its_own_size():
    # tall thin boxes, dy = -15: heights shrink it by 0.1 * 200 = 20 -> none (widths would leave "above")
    assert geneval_relations((0, 0, 2, 100), (0, 15, 2, 115)) == set()
    # wide flat boxes, dx = -15: widths shrink it by 20 -> none (heights would leave "left")
    assert geneval_relations((0, 0, 100, 2), (15, 0, 115, 2)) == set()
    # the same offsets with the other orientation survive the small shrink
    assert geneval_relations((0, 0, 100, 2), (0, 15, 100, 17)) == {"above"}
    assert geneval_relations((0, 0, 2, 100), (15, 0, 17, 100)) == {"left"}


def test_geneval_normalises_by_original_length_and_two_relations():
    # diagonal: (-100, -100) -> (-99.6, -99.6) / 141.4 = -0.70 on both axes
    assert geneval_relations((0, 0, 2, 2), (100, 100, 102, 102)) == {"left", "above"}
    assert geneval_verdict((0, 0, 2, 2), (100, 100, 102, 102), "above")
    # offset (-20, -13) -> (-18, -11); / 23.85 (original) gives dy = -0.461: "left" only.
    # Normalising by the shrunken length (21.10) would give -0.521 and add "above".
    assert geneval_relations((0, 0, 10, 10), (20, 13, 30, 23)) == {"left"}
    # mostly vertical: (-1, 50) -> (-0.6, 49.6) / 50.01 -> below only
    assert geneval_relations((0, 50, 2, 52), (1, 0, 3, 2)) == {"below"}


def test_geneval_degenerate_offsets():
    assert geneval_relations((0, 0, 4, 4), (0, 0, 4, 4)) == set()  # identical centres
    assert geneval_relations((2, 2, 2, 2), (2, 2, 2, 2)) == set()  # zero-size, zero offset
    # reference: |shrunken components| < 1e-3 counts as none (zero-size boxes, offset 5e-4)
    assert geneval_relations((0, 0, 0, 0), (0.0005, 0, 0.0005, 0)) == set()
    assert geneval_relations((0, 0, 0, 0), (1, 0, 1, 0)) == {"left"}


def test_top_box():
    boxes = [(0, 0, 1, 1), (5, 5, 6, 6), (2, 2, 3, 3)]
    assert top_box(boxes, [0.2, 0.9, 0.5]) == (5.0, 5.0, 6.0, 6.0)
    assert top_box(boxes, torch.tensor([0.2, 0.1, 0.5])) == (2.0, 2.0, 3.0, 3.0)
    assert top_box(boxes) == (0.0, 0.0, 1.0, 1.0)
    assert top_box([]) is None


# ------------------------------------------------------------------------------------------ T2I-CompBench


def test_t2i_compbench_directions_and_dominance():
    a, b = (0, 0, 10, 10), (50, 0, 60, 10)
    assert t2i_compbench_score(a, b, "left") == 1.0
    assert t2i_compbench_score(a, b, "right") == 0.0
    assert t2i_compbench_score(b, a, "right") == 1.0
    # B is 12 right and 40 down of A: |dy| dominates, so not "left" but "above"
    c = (12, 40, 22, 50)
    assert t2i_compbench_score(a, c, "left") == 0.0
    assert t2i_compbench_score(a, c, "above") == 1.0
    assert t2i_compbench_score(a, c, "below") == 0.0
    assert t2i_compbench_score(c, a, "below") == 1.0
    # |dx| == |dy|: no axis dominates, nothing holds
    d = (20, 20, 30, 30)
    assert [t2i_compbench_score(a, d, r) for r in ("left", "right", "above", "below")] == [0.0] * 4


def test_t2i_compbench_iou_branch():
    a, b = (0, 0, 10, 10), (4, 0, 14, 10)  # intersection 60, union 140
    assert box_iou(a, b) == pytest.approx(60 / 140)
    assert t2i_compbench_score(a, b, "left") == pytest.approx(0.1 / (60 / 140))  # 0.2333
    assert t2i_compbench_score(a, b, "right") == 0.0
    # IoU just under 0.1 keeps the full score: (0,0,10,10) vs (9,0,19,10): 10 / 190
    assert box_iou(a, (9, 0, 19, 10)) == pytest.approx(10 / 190)
    assert t2i_compbench_score(a, (9, 0, 19, 10), "left") == 1.0
    # IoU 0.25 (A inside a box 4x its area, centres differ) -> 0.4
    big, small = (0, 0, 20, 20), (0, 5, 10, 15)  # small centre (5, 10), big centre (10, 10)
    assert box_iou(small, big) == pytest.approx(0.25)
    assert t2i_compbench_score(small, big, "left") == pytest.approx(0.4)
    assert box_iou((0, 0, 1, 1), (5, 5, 6, 6)) == 0.0
    assert box_iou((1, 1, 1, 1), (1, 1, 1, 1)) == 0.0  # empty union


# ------------------------------------------------------------------------------------------------ masks


def test_mask_box_and_mask_boxes():
    m = torch.zeros(20, 30)
    m[5:8, 2:6] = 1
    assert mask_box(m) == (2.0, 5.0, 6.0, 8.0)  # x1, y1 exclusive
    assert mask_box(m.bool()) == (2.0, 5.0, 6.0, 8.0)
    single = np.zeros((4, 4))
    single[3, 0] = 1
    assert mask_box(single) == (0.0, 3.0, 1.0, 4.0)
    assert mask_box(np.zeros((4, 4))) is None
    assert mask_box(np.full((4, 4), -1.0)) is None  # only pixels > 0 count
    n = np.zeros((20, 30))
    n[0:3, 20:25] = 0.5  # soft masks count where > 0
    assert mask_boxes([m, np.zeros((20, 30)), n]) == [(2.0, 5.0, 6.0, 8.0), (20.0, 0.0, 25.0, 3.0)]
    assert mask_boxes([]) == []


def test_baseline_verdicts_from_masks():
    m = torch.zeros(20, 30)
    m[5:8, 2:6] = 1
    n = np.zeros((20, 30))
    n[0:3, 20:25] = 1
    v = baseline_verdicts(mask_boxes([m]), mask_boxes([n]), "to the left of")
    assert v == {"visor": True, "geneval": True, "t2i_compbench": 1.0, "both_present": True}
    assert baseline_verdicts(mask_boxes([m]), mask_boxes([n]), "right") == {
        "visor": False, "geneval": False, "t2i_compbench": 0.0, "both_present": True}
    assert baseline_verdicts([], mask_boxes([n]), "left") == {
        "visor": False, "geneval": False, "t2i_compbench": 0.0, "both_present": False}


def test_baseline_verdicts_use_top_scoring_instance():
    a = [(100, 0, 110, 10), (0, 0, 10, 10)]  # first instance right of B, second left of B
    b = [(50, 0, 60, 10)]
    by_score = baseline_verdicts(a, b, "left", scores_a=[0.2, 0.9], scores_b=[0.5])
    assert by_score == {"visor": True, "geneval": True, "t2i_compbench": 1.0, "both_present": True}
    first = baseline_verdicts(a, b, "left")  # no scores: the first instance
    assert first == {"visor": True, "geneval": False, "t2i_compbench": 0.0, "both_present": True}
    # a score threshold drops the 0.05 instance: the only A left is the right-hand one
    thr = baseline_verdicts(a, b, "left", scores_a=[0.5, 0.05], scores_b=[0.5], score_threshold=VISOR_SCORE)
    assert thr == {"visor": False, "geneval": False, "t2i_compbench": 0.0, "both_present": True}
    gone = baseline_verdicts(a, b, "left", scores_a=[0.5, 0.9], scores_b=[0.1], score_threshold=VISOR_SCORE)
    assert gone["both_present"] is False


# ------------------------------------------------------------------------------------------------ bad input

BOX = (0, 0, 1, 1)


@pytest.mark.parametrize("relation", ["front", "behind", "near", "sideways", ""])
def test_unsupported_relation_is_named(relation):
    for call in (lambda: visor_verdict([BOX], [BOX], relation), lambda: geneval_verdict(BOX, BOX, relation),
                 lambda: t2i_compbench_score(BOX, BOX, relation), lambda: baseline_verdicts([BOX], [BOX], relation)):
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert repr(relation) in msg
        assert all(r in msg for r in ("'left'", "'right'", "'above'", "'below'"))


@pytest.mark.parametrize("call,match", [
    (lambda: geneval_relations((0, 0, float("nan"), 1), BOX), r"box_a must be 4 finite .*nan"),
    (lambda: geneval_relations(BOX, (0, 0, 1, float("inf"))), r"box_b must be 4 finite"),
    (lambda: t2i_compbench_score((5, 0, 1, 1), BOX, "left"), r"box_a \(5, 0, 1, 1\) has x1 < x0"),
    (lambda: box_iou(BOX, (0, 3, 1, 1)), r"box_b .* y1 < y0"),
    (lambda: visor_verdict([BOX, (0, 0, 1)], [BOX], "left"), r"boxes_a\[1\] must be 4 finite"),
    (lambda: visor_verdict([BOX], ["abcd"], "left"), r"boxes_b\[0\] must be 4 numbers"),
    (lambda: visor_verdict([BOX], [BOX], "left", scores_a=[0.1, 0.2]), r"scores_a: 2 scores for 1 boxes"),
    (lambda: top_box([BOX], [float("nan")]), r"scores must be finite"),
    (lambda: mask_box(np.zeros(5)), r"mask must be H x W \(2-D\), got shape \(5,\)"),
    (lambda: mask_box(torch.zeros(1, 4, 4)), r"mask must be H x W"),
    (lambda: mask_box(np.full((2, 2), np.nan)), r"mask of shape \(2, 2\) contains NaN"),
    (lambda: mask_boxes([np.ones((2, 2)), np.zeros(3)]), r"masks\[1\]: mask must be H x W"),
    (lambda: visor_aggregates([{"prompt_id": 0, "correct": True}]), r"results\[0\] lacks \['both_present'\]"),
    (lambda: visor_aggregates([], images_per_prompt=0), r"images_per_prompt must be a positive integer"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_nan_in_box_list_is_rejected_not_ignored():
    with pytest.raises(ValueError, match=r"boxes_b\[0\]"):
        baseline_verdicts([BOX], [(math.nan, 0, 1, 1)], "left")
