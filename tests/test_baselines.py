import numpy as np
import pytest
import torch

from pos_core.baselines import (baseline_verdicts, box_iou, geneval_relations, geneval_verdict, mask_box,
                                mask_boxes, t2i_compbench_score, top_box, visor_aggregates, visor_verdict)


def test_visor_any_pair_and_missing():
    a = [(0, 0, 10, 10), (80, 0, 90, 10)]
    b = [(40, 0, 50, 10)]
    assert visor_verdict(a, b, "left") == {"both_present": True, "correct": True}  # first A instance
    assert visor_verdict(a, b, "right")["correct"]  # second A instance
    assert not visor_verdict([(0, 0, 10, 10)], b, "right")["correct"]
    assert visor_verdict([], b, "left") == {"both_present": False, "correct": False}
    assert visor_verdict([(0, 0, 10, 10)], [(0, 20, 10, 30)], "above")["correct"]  # y grows downward
    # equal centres: no margin, strict inequality
    assert not visor_verdict([(0, 0, 10, 10)], [(0, 0, 10, 10)], "left")["correct"]


def test_visor_aggregates_hand_table():
    rows = []
    # prompt p1: 4 images, all present, 3 correct; prompt p2: 2 present (1 correct), 2 missing
    for c in (True, True, True, False):
        rows.append({"prompt_id": "p1", "both_present": True, "correct": c})
    rows += [{"prompt_id": "p2", "both_present": True, "correct": True},
             {"prompt_id": "p2", "both_present": True, "correct": False},
             {"prompt_id": "p2", "both_present": False, "correct": False},
             {"prompt_id": "p2", "both_present": False, "correct": False}]
    agg = visor_aggregates(rows)
    assert agg["OA"] == pytest.approx(75.0)
    assert agg["VISOR_cond"] == pytest.approx(100 * 4 / 6)
    assert agg["VISOR_uncond"] == pytest.approx(50.0)  # 4 correct of 8 images
    assert (agg["VISOR_1"], agg["VISOR_2"], agg["VISOR_3"], agg["VISOR_4"]) == (100.0, 50.0, 50.0, 0.0)
    assert visor_aggregates([])["OA"] == 0.0
    assert visor_aggregates([{"prompt_id": 1, "both_present": False, "correct": False}])["VISOR_cond"] == 0.0


def test_geneval_shrink_and_normalisation():
    a, b = (0, 0, 10, 10), (30, 0, 40, 10)  # dx = -30, shrink 0.1 * 20 = 2 -> -28 / 30
    assert geneval_relations(a, b) == {"left"}
    assert geneval_verdict(b, a, "right")
    # nearly overlapping: |dx| = 1 < 0.1 * (20 + 20) -> shrunk to 0 on both axes: no relation
    assert geneval_relations((0, 0, 20, 20), (1, 0, 21, 20)) == set()
    # diagonal: both components survive above 0.5 after normalising by the original length
    rels = geneval_relations((0, 0, 2, 2), (100, 100, 102, 102))
    assert rels == {"left", "above"}
    # mostly vertical: dx shrunk to 0, dy = 50 - 0.4 -> below
    assert geneval_relations((0, 50, 2, 52), (1, 0, 3, 2)) == {"below"}
    assert geneval_relations((0, 0, 4, 4), (0, 0, 4, 4)) == set()


def test_t2i_compbench_dominance_and_iou():
    assert t2i_compbench_score((0, 0, 10, 10), (50, 0, 60, 10), "left") == 1.0
    assert t2i_compbench_score((0, 0, 10, 10), (50, 0, 60, 10), "right") == 0.0
    assert t2i_compbench_score((0, 0, 10, 10), (12, 40, 22, 50), "left") == 0.0  # |dy| dominates
    assert t2i_compbench_score((0, 0, 10, 10), (12, 40, 22, 50), "above") == 1.0
    a, b = (0, 0, 10, 10), (4, 0, 14, 10)  # IoU = 60 / 140
    assert box_iou(a, b) == pytest.approx(60 / 140)
    assert t2i_compbench_score(a, b, "left") == pytest.approx(0.1 / (60 / 140))


def test_mask_boxes_and_verdicts_from_masks():
    m = torch.zeros(20, 30)
    m[5:8, 2:6] = 1
    assert mask_box(m) == (2.0, 5.0, 6.0, 8.0)
    assert mask_box(np.zeros((4, 4))) is None
    n = np.zeros((20, 30))
    n[0:3, 20:25] = 0.5
    assert mask_boxes([m, np.zeros((20, 30)), n]) == [(2.0, 5.0, 6.0, 8.0), (20.0, 0.0, 25.0, 3.0)]
    v = baseline_verdicts(mask_boxes([m]), mask_boxes([n]), "to the left of")
    assert v == {"both_present": True, "visor": True, "geneval": True, "t2i_compbench": 1.0}
    assert baseline_verdicts([], mask_boxes([n]), "left")["both_present"] is False
    assert top_box([(0, 0, 1, 1), (5, 5, 6, 6)], [0.2, 0.9]) == (5.0, 5.0, 6.0, 6.0)


@pytest.mark.parametrize("call,match", [
    (lambda: visor_verdict([(0, 0, 1, 1)], [(0, 0, 1, 1)], "near"), "left, right, above or below"),
    (lambda: visor_verdict([(0, 0, 1, 1)], [(0, 0, 1, 1)], "sideways"), "unknown relation"),
    (lambda: geneval_relations((0, 0, float("nan"), 1), (0, 0, 1, 1)), "box_a must be 4 finite"),
    (lambda: t2i_compbench_score((5, 0, 1, 1), (0, 0, 1, 1), "left"), "box_a .* x1 < x0"),
    (lambda: visor_verdict([(0, 0, 1)], [(0, 0, 1, 1)], "left"), "boxes_a must be 4"),
    (lambda: mask_box(np.zeros(5)), "H x W"),
    (lambda: mask_box(np.full((2, 2), np.nan)), "NaN"),
    (lambda: top_box([(0, 0, 1, 1)], [0.1, 0.2]), "2 scores for 1 boxes"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
