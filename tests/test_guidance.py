import math

import pytest
import torch

from pos_core import guidance as G
from pos_core.pse import pse


def blob(h, w, cx, cy, s=1.5):
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))


def test_loss_is_squared_probability_of_wrong_order():
    a, b = blob(16, 16, 3, 8), blob(16, 16, 12, 8)
    assert float(G.relation_loss(a, b, "left")) < 1e-6
    right = float(G.relation_loss(a, b, "right"))
    assert right == pytest.approx(1.0, abs=1e-4)
    # hand-computed: two point masses on x=1 (A) and x=0 (B) -> P(XB <= XA) = 1 for left
    pa, pb = torch.zeros(2, 2), torch.zeros(2, 2)
    pa[0, 1], pb[0, 0] = 1, 1
    assert float(G.relation_loss(pa, pb, "left")) == pytest.approx(1.0)
    # identical maps: P(XB <= XA) = sum p * cdf = 1/2 + sum p^2 / 2
    u = torch.ones(4, 4)
    expect = (0.5 + 0.5 * 4 * (1 / 16)) ** 2
    assert float(G.relation_loss(u, u, "above")) == pytest.approx(expect)


def test_loss_agrees_with_pse_direction():
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        a, b = torch.rand(8, 8, generator=g), torch.rand(8, 8, generator=g)
        for rel in ("left", "right", "above", "below"):
            if pse(a, b, rel) > 0.05:
                assert float(G.relation_loss(a, b, rel)) < float(G.relation_loss(b, a, rel))


def test_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(1)
    for rel in ("left", "right", "above", "below"):
        a = torch.rand(6, 7, dtype=torch.float64, generator=g, requires_grad=True)
        b = torch.rand(6, 7, dtype=torch.float64, generator=g, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, y: G.relation_loss(G.smooth(x), G.smooth(y), rel), (a, b))


def test_sum_over_relations():
    a, b, c = blob(10, 10, 2, 2), blob(10, 10, 7, 2), blob(10, 10, 5, 8)
    total = G.relations_loss([(a[None], b[None], "right"), (c[None], a[None], "above")])
    expect = G.relation_loss(a, b, "right") + G.relation_loss(c, a, "above")
    assert float(total[0]) == pytest.approx(float(expect))
    with pytest.raises(ValueError, match="no relations"):
        G.relations_loss([])


def test_kernel_matches_authors_and_textbook_forms():
    k = G.gaussian_kernel(3, 0.5)
    e = math.exp(-1.0)  # authors: exp(-((1) / (2 * 0.5)) ** 2)
    row = torch.tensor([e, 1.0, e]) / (1 + 2 * e)
    assert torch.allclose(k, row[:, None] * row[None, :], atol=1e-6)
    t = G.gaussian_kernel(3, 0.5, authors=False)
    e2 = math.exp(-2.0)
    row2 = torch.tensor([e2, 1.0, e2]) / (1 + 2 * e2)
    assert torch.allclose(t, row2[:, None] * row2[None, :], atol=1e-6)


def test_smoothing_uses_reflect_padding():
    m = torch.zeros(5, 5)
    m[0, 0] = 1.0
    out = G.smooth(m)
    k = G.gaussian_kernel()
    # reflect padding mirrors row/col 1 (not 0): the corner receives only the centre weight
    assert float(out[0, 0]) == pytest.approx(float(k[1, 1]))
    m2 = torch.zeros(5, 5)
    m2[1, 0] = 1.0  # row 1 is mirrored into the padding above row 0, so row 0 sees it twice
    assert float(G.smooth(m2)[0, 0]) == pytest.approx(float(k[0, 1] + k[2, 1]))
    assert out.shape == m.shape
    batch = G.smooth(torch.stack([m, m.T]))
    assert torch.allclose(batch[1], G.smooth(m.T))


def test_schedule():
    steps = G.step_sizes(50)
    assert len(steps) == 50
    assert steps[0] == pytest.approx(20.0)
    assert steps[-1] == pytest.approx(20 * math.sqrt(0.5))
    assert steps[10] == pytest.approx(20 * math.sqrt(1 - 0.5 * 10 / 49))
    assert G.guided_steps(50) == 25 and G.guided_steps(50, 0.2) == 10 and G.guided_steps(7) == 3
    with pytest.raises(ValueError):
        G.guided_steps(50, 1.5)
    with pytest.raises(ValueError):
        G.step_sizes(0)


def test_z_step_maps_to_x_step():
    sigma = 3.0
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    c_in = 1 / math.sqrt(sigma**2 + 1)
    z = x * c_in
    grad = torch.randn_like(x)
    z_new = z - 7.0 * grad
    assert torch.allclose(G.x_update(x, grad, 7.0, c_in) * c_in, z_new)


def test_euler_correction_reproduces_step_from_updated_latent():
    s, s_next = 5.0, 3.0
    x = torch.randn(2, 4, 4, dtype=torch.float64)
    x_new = x + 0.1 * torch.randn_like(x)
    denoised_new = torch.randn_like(x)
    euler = lambda xx, d: xx + (xx - d) / s * (s_next - s)  # noqa: E731
    corrected = denoised_new + G.euler_correction(x, x_new, s, s_next)
    assert torch.allclose(euler(x, corrected), euler(x_new, denoised_new))


def test_bad_relation_for_guidance():
    with pytest.raises(ValueError, match="cannot guide"):
        G.relation_loss(torch.ones(4, 4), torch.ones(4, 4), "front")
    with pytest.raises(ValueError, match="H x W"):
        G.relation_loss(torch.ones(4), torch.ones(4), "left")


def test_guidable_pairs_and_the_note_for_depth_relations():
    from types import SimpleNamespace as R

    from pos_core import attention

    pairs = [(0, 1, "left"), (2, 3, "front"), (0, 3, "near"), (1, 2, "below")]
    assert attention.guidable_pairs(pairs) == [(0, 1, "left"), (1, 2, "below")]
    maps = torch.rand(2, 4, 8, 8, requires_grad=True)
    assert not attention.maps_loss(maps, pairs[1:3]).requires_grad  # nothing to guide: no graph
    assert attention.maps_loss(maps, pairs).requires_grad
    rel = lambda s, r, o: R(subject=s, relation=r, object=o)  # noqa: E731
    assert attention.unguidable_note([rel("cat", "left", "dog")]) is None
    only = attention.unguidable_note([rel("vase", "front", "clock")])
    assert "vase front clock" in only and "runs unguided" in only and "pse mode" in only
    mixed = attention.unguidable_note([rel("cat", "left", "dog"), rel("cup", "near", "plate")])
    assert "leaves cup near plate unguided" in mixed


def test_canvas_mean_places_and_resizes_pieces():
    from pos_core.attention import canvas_mean

    full = torch.rand(2, 3, 8, 8)
    assert torch.allclose(canvas_mean([(full, None)], (8, 8)), full)
    # a layer that Deep Shrink ran at half size is brought back to the level's grid
    half = torch.nn.functional.interpolate(full, size=(4, 4), mode="bilinear", align_corners=False)
    both = canvas_mean([(full, None), (half, None)], (8, 8))
    assert both.shape == (2, 3, 8, 8)
    # an area crop's maps land at its area, the rest of the grid is empty
    crop = torch.ones(2, 3, 4, 4)
    placed = canvas_mean([(crop, (0.5, 0.0, 1.0, 0.5))], (8, 8))
    assert placed[..., 4:, :4].eq(1).all() and placed[..., :4, :].eq(0).all() and placed[..., :, 4:].eq(0).all()
    # overlapping pieces are averaged where they overlap
    mixed = canvas_mean([(crop, (0.5, 0.0, 1.0, 0.5)), (torch.zeros(2, 3, 8, 8), None)], (8, 8))
    assert torch.allclose(mixed[..., 4:, :4], torch.full((2, 3, 4, 4), 0.5))
    # gradients reach every piece
    p = torch.rand(1, 2, 4, 4, requires_grad=True)
    canvas_mean([(p, None)], (8, 8)).sum().backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="no attention maps"):
        canvas_mean([], (8, 8))


# ------------------------------------------------------------------ the center objective (issue 21)

def test_center_loss_is_the_squared_centroid_hinge():
    a, b = blob(16, 16, 3, 8), blob(16, 16, 12, 8)  # A's centre column 3, B's 12 (of 16)
    ca, cb = (3 + 0.5) / 16, (12 + 0.5) / 16
    assert float(G.centroids(a, "x")) == pytest.approx(ca, abs=5e-3)  # (blobs cut by the border: near)
    assert float(G.centroids(a, "y")) == pytest.approx(8.5 / 16, abs=5e-3)
    assert float(G.center_loss_batch(a[None], b[None], "left")[0]) == 0.0  # 9/16 apart > margin
    right = float(G.center_loss_batch(a[None], b[None], "right")[0])
    ca, cb = float(G.centroids(a, "x")), float(G.centroids(b, "x"))
    assert right == pytest.approx((G.CENTER_MARGIN + cb - ca) ** 2, rel=1e-6)
    # point masses: exact values, margin named
    pa, pb = torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)
    pa[0, 0, 1], pb[0, 0, 2] = 1, 1  # A at column 1, B at column 2: cx 0.375 and 0.625
    assert float(G.center_loss_batch(pa, pb, "left")[0]) == 0.0
    assert float(G.center_loss_batch(pa, pb, "left", margin=0.3)[0]) == pytest.approx(0.05 ** 2)
    assert float(G.center_loss_batch(pa, pb, "right")[0]) == pytest.approx((0.1 + 0.25) ** 2)
    u = torch.ones(1, 4, 4)  # same centroid: only the margin is missing
    assert float(G.center_loss_batch(u, u, "above")[0]) == pytest.approx(G.CENTER_MARGIN ** 2)


def test_center_loss_is_zero_once_satisfied_by_the_margin():
    for gap_cells in range(0, 8):
        a, b = torch.zeros(1, 16, 16), torch.zeros(1, 16, 16)
        a[0, :, 4], b[0, :, 4 + gap_cells] = 1, 1
        loss = float(G.center_loss_batch(a, b, "left")[0])
        gap = gap_cells / 16
        if gap >= G.CENTER_MARGIN:
            assert loss == 0.0, gap_cells
        else:
            assert loss == pytest.approx((G.CENTER_MARGIN - gap) ** 2), gap_cells


def test_center_loss_relations_are_symmetric():
    a, b = blob(12, 10, 2, 3), blob(12, 10, 6, 9)  # A left of and above B
    t = lambda m: m.transpose(-1, -2)  # noqa: E731
    for rel, swap in (("left", "right"), ("above", "below")):
        ab = G.center_loss_batch(a[None], b[None], rel)
        assert torch.equal(ab, G.center_loss_batch(b[None], a[None], swap))
        assert float(G.center_loss_batch(a[None], b[None], swap)[0]) > 0 and float(ab[0]) == 0.0
    # transposing the maps turns a left/right question into an above/below one
    for rel, rel_t in (("left", "above"), ("right", "below")):
        assert float(G.center_loss_batch(b[None], a[None], rel)[0]) == pytest.approx(
            float(G.center_loss_batch(t(b)[None], t(a)[None], rel_t)[0]))
    # flipping the image left-right swaps left and right
    fa, fb = a.flip(-1), b.flip(-1)
    assert float(G.center_loss_batch(b[None], a[None], "left")[0]) == pytest.approx(
        float(G.center_loss_batch(fb[None], fa[None], "right")[0]))
    with pytest.raises(ValueError, match="center objective guides"):
        G.center_loss_batch(a[None], b[None], "behind")


def test_center_loss_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(6, 7, generator=g, dtype=torch.float64).requires_grad_(True)
    b = torch.rand(6, 7, generator=g, dtype=torch.float64).requires_grad_(True)
    for rel in ("left", "right", "above", "below"):
        # a large margin keeps every random pair inside the hinge's active side (a smooth function there)
        f = lambda x, y, rel=rel: G.center_loss_batch(x[None], y[None], rel, margin=1.0)[0]  # noqa: E731
        assert float(f(a, b).detach()) > 0
        assert torch.autograd.gradcheck(f, (a, b), eps=1e-6, atol=1e-6)
    # through the smoothing and the family of objectives, as PSG calls it
    assert torch.autograd.gradcheck(
        lambda x, y: G.relations_loss([(G.smooth(x[None]), G.smooth(y[None]), "left")], "center"), (a, b),
        eps=1e-6, atol=1e-6)


def test_center_loss_batch_shapes_follow_relation_loss_batch():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(5, 8, 8, generator=g), torch.rand(5, 8, 8, generator=g)
    pos, cen = G.relation_loss_batch(a, b, "below"), G.center_loss_batch(a, b, "below")
    assert pos.shape == cen.shape == (5,)
    for i in range(5):  # each item its own
        assert float(cen[i]) == pytest.approx(float(G.center_loss_batch(a[i:i + 1], b[i:i + 1], "below")[0]))
    lead = G.center_loss_batch(a.reshape(5, 1, 8, 8), b.reshape(5, 1, 8, 8), "left")
    assert lead.shape == G.relation_loss_batch(a.reshape(5, 1, 8, 8), b.reshape(5, 1, 8, 8), "left").shape
    with pytest.raises(ValueError, match="share one"):
        G.center_loss_batch(a, b[:, :4], "left")
    assert torch.equal(G.objective_loss_batch(a, b, "left"), G.relation_loss_batch(a, b, "left"))
    assert torch.equal(G.objective_loss_batch(a, b, "left", "center"), G.center_loss_batch(a, b, "left"))
    with pytest.raises(ValueError, match="objective must be one of pos, center"):
        G.objective_loss_batch(a, b, "left", "centre")


def test_maps_loss_objective_switch():
    from pos_core import attention

    g = torch.Generator().manual_seed(2)
    maps = torch.rand(3, 2, 8, 8, generator=g)
    pairs = [(0, 1, "left"), (1, 0, "behind")]  # behind is left alone by both objectives
    assert torch.equal(attention.maps_loss(maps, pairs), attention.maps_loss(maps, pairs, objective="pos"))
    sm = G.smooth(maps)
    assert torch.allclose(attention.maps_loss(maps, pairs, objective="center"),
                          G.center_loss_batch(sm[:, 0], sm[:, 1], "left"))
    with pytest.raises(ValueError, match="objective"):
        attention.maps_loss(maps, pairs, objective="box")


def test_cap_step_bounds_each_samples_rms_by_max_step_times_sigma():
    gen = torch.Generator().manual_seed(0)
    delta = torch.randn(3, 4, 8, 8, generator=gen) * torch.tensor([0.01, 1.0, 50.0]).reshape(3, 1, 1, 1)
    capped = G.cap_step(delta, sigma=2.0, max_step=0.25)
    rms = capped.pow(2).flatten(1).mean(1).sqrt()
    assert torch.equal(capped[0], delta[0])  # under the cap: untouched
    assert torch.allclose(rms[1:], torch.full((2,), 0.5), rtol=1e-5)  # over it: cut to 0.25 * 2.0
    assert torch.allclose(capped[2] / capped[2].norm(), delta[2] / delta[2].norm(), atol=1e-6)  # same direction
    assert torch.equal(G.cap_step(delta, 2.0, 0.0), delta)  # 0: the paper's step
