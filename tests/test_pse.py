import numpy as np
import pytest
import torch

from pos_core.pse import PSEResult, aggregate, pse, pse_batch, pse_depth, pse_depth_batch


def box(h, w, x0, x1, y0, y1):
    m = torch.zeros(h, w)
    m[y0:y1, x0:x1] = 1
    return m


def brute_pse(a, b, relation):
    """PSE by enumerating all pixel pairs: P(XA < XB) - P(XA > XB) on the marginal axis."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    axis = 0 if relation in ("left", "right") else 1
    pa = a.sum(axis=axis) / a.sum()
    pb = b.sum(axis=axis) / b.sum()
    k = np.arange(len(pa))
    less = (pa[:, None] * pb[None, :] * (k[:, None] < k[None, :])).sum()
    more = (pa[:, None] * pb[None, :] * (k[:, None] > k[None, :])).sum()
    s = less - more if relation in ("left", "above") else more - less
    return max(s, 0.0)


def test_separated_boxes_score_one_and_reverse_zero():
    a, b = box(32, 32, 0, 8, 10, 20), box(32, 32, 20, 30, 5, 25)
    assert pse(a, b, "left") == pytest.approx(1.0)
    assert pse(a, b, "right") == 0.0
    assert pse(b, a, "right") == pytest.approx(1.0)
    assert pse(a, b, "to the left of") == pytest.approx(1.0)


def test_vertical_uses_rows_growing_downward():
    top, bottom = box(20, 20, 5, 10, 0, 4), box(20, 20, 0, 20, 12, 20)
    assert pse(top, bottom, "above") == pytest.approx(1.0)
    assert pse(bottom, top, "below") == pytest.approx(1.0)
    assert pse(top, bottom, "below") == 0.0


def test_identical_masks_tie_to_zero():
    a = box(16, 16, 3, 9, 3, 9)
    assert pse(a, a, "left") == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("relation", ["left", "right", "above", "below"])
def test_overlapping_soft_masks_match_brute_force(relation):
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        a = torch.rand(12, 15, generator=g) * (torch.rand(12, 15, generator=g) > 0.5)
        b = torch.rand(12, 15, generator=g) ** 3
        assert pse(a, b, relation) == pytest.approx(brute_pse(a, b, relation), abs=1e-6)


def test_numpy_bool_and_torch_inputs_agree():
    a, b = box(10, 10, 0, 6, 0, 10), box(10, 10, 3, 10, 0, 10)
    expect = brute_pse(a, b, "left")
    assert 0 < expect < 1
    assert pse(a.numpy() > 0, b.numpy() > 0, "left") == pytest.approx(expect)
    assert pse(a.to(torch.uint8), b.double(), "left") == pytest.approx(expect)


def test_batch_equals_single_pairs_and_flags_missing():
    g = torch.Generator().manual_seed(1)
    a = (torch.rand(6, 20, 24, generator=g) > 0.7).float()
    b = (torch.rand(6, 20, 24, generator=g) > 0.6).float()
    a[2] = 0
    b[4] = 0
    res = pse_batch(a, b, "right")
    assert isinstance(res, PSEResult)
    for i in range(6):
        assert float(res.scores[i]) == pytest.approx(pse(a[i], b[i], "right"), abs=1e-6)
    assert res.missing_a.tolist() == [False, False, True, False, False, False]
    assert res.missing_b.tolist() == [False, False, False, False, True, False]
    assert float(res.scores[2]) == 0.0 and float(res.scores[4]) == 0.0


def test_batch_large_enough_to_be_chunked_matches_unchunked():
    g = torch.Generator().manual_seed(2)
    a = (torch.rand(9, 256, 256, generator=g) > 0.5).float()
    b = torch.rand(9, 256, 256, generator=g)
    res = pse_batch(a, b, "above")
    for i in (0, 4, 8):
        assert float(res.scores[i]) == pytest.approx(brute_pse(a[i], b[i], "above"), abs=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_batch_on_gpu_matches_cpu():
    a = torch.rand(3, 64, 64)
    b = torch.rand(3, 64, 64)
    cpu = pse_batch(a, b, "left").scores
    gpu = pse_batch(a.cuda(), b.cuda(), "left").scores
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-5)


def test_aggregates():
    scores = torch.tensor([0.9, 0.005, 0.5, 0.0])
    agg = aggregate(scores, torch.tensor([False, False, False, True]), torch.tensor([False, False, False, False]))
    assert agg["n"] == 4
    assert agg["mean_pse"] == pytest.approx((0.9 + 0.005 + 0.5) / 4)
    assert agg["accuracy"] == pytest.approx(0.5)
    assert agg["object_accuracy"] == pytest.approx(0.75)
    assert aggregate([])["n"] == 0


@pytest.mark.parametrize(
    "a,b,relation,match",
    [
        (np.zeros((4, 4)), np.zeros((5, 4)), "left", "differ in shape"),
        (np.full((4, 4), np.nan), np.zeros((4, 4)), "left", "NaN"),
        (-np.ones((4, 4)), np.zeros((4, 4)), "left", "negative"),
        (np.ones((4, 4)), np.ones((4, 4)), "near", "no direction"),
        (np.ones((4, 4)), np.ones((4, 4)), "front", "pse_depth"),
        (np.ones((4, 4)), np.ones((4, 4)), "sideways", "unknown relation"),
        (np.ones(4), np.ones(4), "left", "H x W"),
    ],
)
def test_bad_input_is_a_clear_value_error(a, b, relation, match):
    with pytest.raises(ValueError, match=match):
        pse(a, b, relation)


def test_depth_front_and_behind():
    depth = torch.zeros(20, 20)
    depth[:, :10] = 5.0  # nearer (inverse depth is larger)
    depth[:, 10:] = 1.0
    near, far = box(20, 20, 0, 10, 0, 20), box(20, 20, 10, 20, 0, 20)
    assert pse_depth(near, far, depth, "front") == pytest.approx(1.0)
    assert pse_depth(near, far, depth, "in front of") == pytest.approx(1.0)
    assert pse_depth(far, near, depth, "behind") == pytest.approx(1.0)
    assert pse_depth(far, near, depth, "hidden by") == pytest.approx(1.0)
    assert pse_depth(near, far, depth, "behind") == 0.0


def test_depth_overlapping_distributions_and_minimum_is_counted():
    g = torch.Generator().manual_seed(3)
    depth = torch.rand(30, 30, generator=g) + 0.1
    a = box(30, 30, 0, 15, 0, 30)
    b = box(30, 30, 10, 30, 0, 30)
    s_front = pse_depth(a, b, depth, "front")
    s_behind = pse_depth(a, b, depth, "behind")
    assert min(s_front, s_behind) == 0.0 and 0 < max(s_front, s_behind) < 0.5
    # a one-pixel object at the global minimum must still be found (not dropped as by np.digitize)
    tiny = torch.zeros(30, 30)
    pos = torch.argmin(depth)
    tiny.view(-1)[pos] = 1
    res = pse_depth_batch(tiny[None], b[None], depth[None], "behind")
    assert not bool(res.missing_a[0])
    assert float(res.scores[0]) > 0.9


def test_depth_bad_input():
    with pytest.raises(ValueError, match="depth relation"):
        pse_depth(np.ones((4, 4)), np.ones((4, 4)), np.ones((4, 4)), "left")
    with pytest.raises(ValueError, match="depth"):
        pse_depth(np.ones((4, 4)), np.ones((4, 4)), np.ones((5, 4)), "front")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_batched_check_catches_a_negative_pixel_in_any_slice(monkeypatch, dtype):
    """The default >= 0 check rides the slice-by-slice sum (sign bits, then the exact check): a negative
    pixel in any slice (slices of 3 masks here: 0-2, 3-5, 6-8, 9), any mask of it, at either end, in
    either input, for either axis is refused; -0.0 passes and NaN keeps its message."""
    import pos_core.pse as pse_mod

    monkeypatch.setattr(pse_mod, "_SLICE_BYTES", 3 * 8 * 8 * torch.finfo(dtype).bits // 8)
    a = torch.zeros(10, 8, 8, dtype=dtype)
    a[:, 2:5, 1:3] = 1
    b = torch.zeros(10, 8, 8, dtype=dtype)
    b[:, 2:5, 5:7] = 1
    for which in ("a", "b"):
        for n in range(10):
            for pixel in ((0, 0), (7, 7)):
                for relation in ("left", "above"):
                    bad_a, bad_b = a.clone(), b.clone()
                    (bad_a if which == "a" else bad_b)[(n, *pixel)] = -0.5
                    with pytest.raises(ValueError, match=f"masks_{which} has negative values"):
                        pse_batch(bad_a, bad_b, relation)
    signed_zero = a.clone()
    signed_zero[a == 0] = -0.0
    assert torch.equal(pse_batch(signed_zero, b, "left").scores, pse_batch(a, b, "left").scores)
    for nan in (float("nan"), -float("nan")):
        bad = a.clone()
        bad[6, 0, 0] = nan
        with pytest.raises(ValueError, match="NaN"):
            pse_batch(bad, b, "left")
    assert pse_batch(a, b, "left", validate=False).scores.tolist() == [1.0] * 10


def test_batched_check_on_real_size_and_strided_masks():
    """512 x 512 masks (one a slice): one slightly negative pixel in mask 7 of 9, and masks given as a
    transposed view (not contiguous: the exact check runs)."""
    a = torch.zeros(9, 512, 512)
    a[:, 100:200, 10:100] = 1
    b = torch.zeros(9, 512, 512)
    b[:, 100:200, 300:400] = 1
    assert pse_batch(a, b, "left").scores.tolist() == [1.0] * 9
    bad = a.clone()
    bad[7, 511, 511] = -1e-6
    with pytest.raises(ValueError, match="masks_a has negative values"):
        pse_batch(bad, b, "left")
    with pytest.raises(ValueError, match="masks_a has negative values"):
        pse_batch(bad.transpose(1, 2), b.transpose(1, 2), "above")
    assert pse_batch(a.transpose(1, 2), b.transpose(1, 2), "above").scores.tolist() == [1.0] * 9
