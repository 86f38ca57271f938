"""PoS Guidance on Flux.1 and SD3 beside what users chain with it (tiny random-weight models in the real
ComfyUI, in-process as test_host_dit): a LoRA, EasyCache, and a positive that holds a second prompt
(ConditioningCombine) or puts the relations' prompt in an area (ConditioningSetArea).

Each setup: guidance acts (the latent differs from scale 0), scale 0 leaves the other node's result as it
is, the maps come from the relations' cond only, and no step is skipped."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import comfy_host

from test_host_dit import CFG, guided, relations, run_sampler

SIZE = 128  # 8 x 8 image tokens


@pytest.fixture(scope="module")
def dit(host):
    import dit_fixtures

    with torch.inference_mode():
        models = {"flux": dit_fixtures.flux(), "sd3": dit_fixtures.sd3()}
    conds = {"flux": dit_fixtures.conds("flux"), "sd3": dit_fixtures.conds("sd3")}
    return models, conds


def bound(cond):
    from pos_spatial_pack.nodes.conds import fingerprint

    return dataclasses.replace(relations(), fingerprint=fingerprint(cond))


def lora(model, seed=3):
    """The model with a seeded random rank-4 LoRA on every attention projection (ComfyUI's LoRA loader)."""
    import comfy.sd

    weights = [("diffusion_model." + n[:-len(".weight")], p) for n, p in model.model.diffusion_model.named_parameters()
               if n.endswith(".weight")]
    sd = comfy_host.random_lora(weights, lambda n: "attn" in n or "linear1" in n, seed=seed, scale=0.05)
    assert sd
    with torch.inference_mode():
        patched, _ = comfy.sd.load_lora_for_models(model, None, sd, 1.0, 0.0)
    return patched


def easycache(model):
    from comfy_extras.nodes_easycache import EasyCacheNode

    with torch.inference_mode():
        return EasyCacheNode.execute(model, reuse_threshold=0.2, start_percent=0.0, end_percent=1.0,
                                     verbose=False).result[0]


def check(host, kind, model, cond, rels, before=True):
    """Guided (PoS Guidance before or after `model`'s own patch) vs scale 0 vs plain."""
    plain = run_sampler(host, model, cond, seed=5, steps=4, cfg=CFG[kind], size=SIZE)
    zero_model, _ = guided(host, model, rels=rels, scale=0.0)
    zero = run_sampler(host, zero_model, cond, seed=5, steps=4, cfg=CFG[kind], size=SIZE)
    assert torch.allclose(zero, plain, atol=1e-5 * float(plain.abs().max())), "scale 0 changed the result"
    g_model, run = guided(host, model, rels=rels, scale=50.0)
    out = run_sampler(host, g_model, cond, seed=5, steps=4, cfg=CFG[kind], size=SIZE)
    assert torch.isfinite(out).all() and not run.skipped and not run.notes, run.notes
    assert (out - zero).abs().max() > 1e-3 * float(zero.abs().max()), "guidance did not act"
    return run


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_lora(host, dit, kind):
    models, conds = dit
    check(host, kind, lora(models[kind]), conds[kind], bound(conds[kind][0]))


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_lora_after_guidance(host, dit, kind):
    models, conds = dit
    rels = bound(conds[kind][0])
    g_model, run = guided(host, models[kind], rels=rels, scale=50.0)
    out = run_sampler(host, lora(g_model), conds[kind], seed=5, steps=4, cfg=CFG[kind], size=SIZE)
    assert torch.isfinite(out).all() and 0 in run.deltas and not run.notes


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_easycache(host, dit, kind):
    models, conds = dit
    check(host, kind, easycache(models[kind]), conds[kind], bound(conds[kind][0]))


def _other(kind, seed=9):
    import dit_fixtures

    return dit_fixtures.conds(kind, seed=seed)[0]


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_combine_reads_only_the_relations_prompt(host, dit, kind):
    models, conds = dit
    pos, neg = conds[kind]
    rels = bound(pos)
    combined = pos + _other(kind)
    check(host, kind, models[kind], (combined, neg), rels)
    # step 0's maps are those of the relations' prompt alone (same noise): the other prompt is not mixed in
    maps = {}
    for name, positive, r in (("alone", pos, rels), ("combined", combined, rels),
                              ("unbound", combined, relations())):
        model, run = guided(host, models[kind], rels=r, scale=0.0)
        run_sampler(host, model, (positive, neg), seed=5, steps=2, cfg=CFG[kind], size=SIZE)
        maps[name] = run.maps[0]
        if name == "unbound":
            assert any("typed by hand" in n for n in run.notes), run.notes
    assert torch.allclose(maps["combined"], maps["alone"], atol=1e-5)
    assert not torch.allclose(maps["unbound"], maps["alone"], atol=1e-5), "averaging over both prompts differs"


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_area_cond_maps_land_at_its_area(host, dit, kind):
    import node_helpers

    models, conds = dit
    pos, neg = conds[kind]
    rels = bound(pos)
    # the relations' prompt on the right half (latent 16 x 16: area h 16, w 8 at y 0, x 8), another prompt whole
    right = node_helpers.conditioning_set_values(pos, {"area": (16, 8, 0, 8), "strength": 1.0, "set_area_to_bounds": False})
    run = check(host, kind, models[kind], (right + _other(kind), neg), rels)
    maps = run.maps[0]
    assert maps.shape == (1, 2, 8, 8)
    assert maps[..., :, :4].abs().max() == 0 and maps[..., :, 4:].abs().max() > 0


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_layout_style_object_prompts_on_percentage_areas(host, dit, kind):
    """What PoS Layout from Relations gives: the whole prompt first, then object prompts on percentage areas
    (left and right halves less a gap). Guided on the whole prompt; its maps cover the whole grid."""
    import node_helpers

    models, conds = dit
    pos, neg = conds[kind]
    rels = bound(pos)
    m = 1 / 16
    parts = [node_helpers.conditioning_set_values(_other(kind, seed), {"area": ("percentage", 1.0, 0.5 - m, 0.0, x),
                                                                       "strength": 1.0, "set_area_to_bounds": False})
             for seed, x in ((9, 0.0), (11, 0.5 + m))]
    run = check(host, kind, models[kind], (pos + parts[0] + parts[1], neg), rels)
    assert run.maps[0].shape == (1, 2, 8, 8) and bool((run.maps[0].abs().sum(dim=1) > 0).all())
