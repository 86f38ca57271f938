"""PoS guidance on DiT models (Flux.1, SD3 / SD3.5) in the real ComfyUI, on tiny random-weight models.

SD3 is built through ComfyUI's own detection (Load Diffusion Model's path), Flux from ComfyUI's model
classes (its detection hard-codes the full width); conditioning is random text features of the right
shapes (T5-XXL width 4096; Flux 256 tokens, SD3 2 x 77). Sampling goes through ComfyUI's KSampler code.
Random weights prove the plumbing (maps, gradients, update, samplers), not image quality.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

SIZE = 128  # latent 16 x 16 -> 8 x 8 image tokens


@pytest.fixture(scope="module")
def dit(host):
    import dit_fixtures

    with torch.inference_mode():
        models = {"flux": dit_fixtures.flux(), "sd3": dit_fixtures.sd3(), "schnell": dit_fixtures.flux(schnell=True)}
    conds = {"flux": dit_fixtures.conds("flux"), "sd3": dit_fixtures.conds("sd3"),
             "schnell": dit_fixtures.conds("flux", guidance=None)}
    return models, conds


CFG = {"flux": 1.0, "sd3": 4.5, "schnell": 1.0}  # dev: distilled guidance (FluxGuidance 3.5 in the cond), cfg 1


def relations(prompt="a cat to the left of a dog", pairs=(("cat", "left", "dog", (2,), (8,)),)):
    from pos_spatial_pack.pos_core.tokens import RelationSet, TokenRelation

    return RelationSet(prompt, tuple(TokenRelation(*p) for p in pairs))


def run_sampler(host, model, cond, seed=0, steps=4, cfg=1.0, sampler="euler", scheduler="simple", batch=1,
                size=SIZE):
    pos, neg = cond
    with torch.inference_mode():
        latent = host.nodes.EmptyLatentImage().generate(size, size, batch)[0]
        return host.nodes.common_ksampler(model, seed, steps, cfg, sampler, scheduler, pos, neg, latent)[0]["samples"]


def guided(host, model, rels=None, scale=20.0, fraction=0.5, loss_scale=-1.0, blocks="auto", softmax="text",
           max_step=-1.0):
    with torch.inference_mode():
        return host.guidance.PoSGuidance.execute(model, rels or relations(), scale, fraction, loss_scale, True,
                                                 "auto", blocks, softmax, max_step=max_step).result


def test_families_defaults_and_block_choice(host, dit):
    models, _ = dit
    patch = host.patch
    assert patch.model_family(models["flux"]) == "flux" and patch.model_family(models["sd3"]) == "sd3"
    _, run = guided(host, models["flux"])
    assert run.targets == [("double_block", 1)] and run.settings.loss_scale == 1000.0  # 11..18 of 19 -> 1 of 2
    _, run = guided(host, models["sd3"])
    assert run.targets == [("double_block", 0)]  # SD3.5-medium style (attn2): 5..10 of 24 -> 0 of 2
    _, run = guided(host, models["flux"], blocks="0, s1")
    assert run.targets == [("double_block", 0), ("single_block", 1)]
    _, run = guided(host, models["flux"], blocks="all")
    assert len(run.targets) == 4
    with pytest.raises(ValueError, match="blocks: 5 is out of range: this model has 2 double blocks"):
        guided(host, models["flux"], blocks="5")
    with pytest.raises(ValueError, match="blocks: 's1' is not a block|out of range"):
        guided(host, models["sd3"], blocks="s1")
    with pytest.raises(ValueError, match="blocks: 'top' is not a block"):
        guided(host, models["sd3"], blocks="top")
    with pytest.raises(ValueError, match="attention_level applies to UNet models"):
        with torch.inference_mode():
            host.guidance.PoSGuidance.execute(models["flux"], relations(), 20.0, 0.5, -1.0, True, "latent/2")


def test_flux_out_of_place_blocks_equal_stock(host, dit):
    """The gradient pass's copies of the Flux blocks give exactly the stock blocks' outputs (max diff 0.0)."""
    from comfy.ldm.modules.attention import attention_pytorch
    from pos_spatial_pack.nodes.families import flux
    from pos_spatial_pack.nodes.families.base import differentiable

    dm = dit[0]["flux"].model.diffusion_model
    g = torch.Generator().manual_seed(0)
    img, txt, vec = torch.randn(2, 64, 64, generator=g), torch.randn(2, 20, 64, generator=g), torch.randn(2, 64, generator=g)
    ids = torch.cat([torch.zeros(2, 20, 3), torch.rand(2, 64, 3, generator=g) * 8], dim=1)
    to = {"optimized_attention_override": lambda func, *a, **kw: attention_pytorch(*a, **kw)}
    # as in the gradient pass: ComfyUI 0.33's stock rope is its differentiable one there (in_training set)
    with torch.inference_mode(), differentiable():
        pe = dm.pe_embedder(ids)
        for blk in dm.double_blocks:
            a_img, a_txt = blk(img=img.clone(), txt=txt.clone(), vec=vec, pe=pe, transformer_options=to)
            b_img, b_txt = flux.double_forward(blk, img, txt, vec, pe)
            assert float((a_img - b_img).abs().max()) == 0.0 and float((a_txt - b_txt).abs().max()) == 0.0
        x = torch.cat([txt, img], dim=1)
        for blk in dm.single_blocks:
            a = blk(x.clone(), vec=vec, pe=pe, transformer_options=to)
            assert float((a - flux.single_forward(blk, x, vec, pe)).abs().max()) == 0.0


def test_sd3_block_mixing_equals_stock(host, dit):
    """The gradient pass's block mixing (no checkpointing) gives exactly the stock joint blocks' outputs."""
    from comfy.ldm.modules.attention import attention_pytorch
    from pos_spatial_pack.nodes.families import sd3

    dm = dit[0]["sd3"].model.diffusion_model
    g = torch.Generator().manual_seed(0)
    x, ctx, c = torch.randn(2, 64, 128, generator=g), torch.randn(2, 30, 128, generator=g), torch.randn(2, 128, generator=g)
    to = {"optimized_attention_override": lambda func, *a, **kw: attention_pytorch(*a, **kw)}
    assert dm.joint_blocks[0].x_block.x_block_self_attn  # the SD3.5-medium attn2 path is covered
    with torch.inference_mode():
        for blk in dm.joint_blocks:
            a_ctx, a_x = blk(ctx, x, c=c, use_checkpoint=False, transformer_options=to)
            b_ctx, b_x = sd3.mix_forward(blk, ctx, x, c)
            assert float((a_x - b_x).abs().max()) == 0.0
            assert (a_ctx is None and b_ctx is None) or float((a_ctx - b_ctx).abs().max()) == 0.0


def hand_delta(host, model, cond, kind, seed, steps, scale, loss_scale, chosen, scheduler="simple"):
    """The first PSG step computed by hand: stock forward (in-place adds allowed by autograd's
    mutation-on-saved-tensors mode), text-softmax maps of the chosen blocks' joint attention, the PoS loss,
    grad wrt the model input x (c_in = 1 for flow matching), x - alpha_0 * grad."""
    from comfy.ldm.modules.attention import attention_pytorch
    from pos_spatial_pack.pos_core.guidance import relation_loss, smooth

    ms = model.get_model_object("model_sampling")
    sigmas = host.samplers.calculate_sigmas(ms, scheduler, steps).cpu()
    with torch.inference_mode():
        latent = host.nodes.EmptyLatentImage().generate(SIZE, SIZE, 1)[0]["samples"]
        latent = host.comfy_sample.fix_empty_latent_channels(model, latent)
        noise = host.comfy_sample.prepare_noise(latent, seed).clone()
        latent_in = model.model.process_latent_in(latent).clone()
    dm = model.model.diffusion_model
    pos = cond[0][0]
    text, pooled = pos[0].clone(), pos[1]["pooled_output"].clone()
    n_txt, n_img = text.shape[1], (SIZE // 16) ** 2
    double = len(getattr(dm, "double_blocks", dm.__dict__.get("joint_blocks", [])) or [])
    from pos_spatial_pack.nodes.families.base import differentiable

    with torch.inference_mode(False), torch.autograd.graph.allow_mutation_on_saved_tensors(), differentiable():
        params = {k: v.detach().clone().float() for k, v in dm.named_parameters()}
        x = ms.noise_scaling(sigmas[0], noise, latent_in).float().detach().requires_grad_(True)
        t = ms.timestep(sigmas[:1].clone()).float()
        probs, calls = [], [0]

        def override(func, *a, **kw):
            q, k = a[0], a[1]
            heads = kw.get("heads", a[3] if len(a) > 3 else None)
            if not kw.get("skip_reshape", False):
                q = q.reshape(q.shape[0], q.shape[1], heads, -1).transpose(1, 2)
                k = k.reshape(k.shape[0], k.shape[1], heads, -1).transpose(1, 2)
            if q.shape[2] == n_txt + n_img:
                i = calls[0]
                calls[0] += 1
                key = ("double_block", i) if kind == "sd3" or i < double else ("single_block", i - double)
                if key in chosen:
                    logits = q[:, :, n_txt:].float() @ k[:, :, :n_txt].float().transpose(-1, -2) / math.sqrt(q.shape[-1])
                    probs.append(torch.softmax(logits, dim=-1).mean(dim=1))
            return attention_pytorch(*a, **kw)

        kwargs = {"context": text, "y": pooled, "transformer_options": {"optimized_attention_override": override}}
        if kind == "flux":
            kwargs["guidance"] = torch.tensor([3.5])
        torch.func.functional_call(dm, params, (x, t), kwargs)
        assert len(probs) == len(chosen)
        avg = torch.stack(probs).mean(dim=0)[0]
        h = w = SIZE // 16
        loss = relation_loss(smooth(avg[:, 2].reshape(h, w)), smooth(avg[:, 8].reshape(h, w)), "left") * loss_scale
        grad, = torch.autograd.grad(loss, x)
    return -scale * grad, float(loss.detach())  # alpha_0 = scale * sqrt(1.0); z = x


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_guided_step_equals_hand_computation(host, dit, kind):
    models, conds = dit
    model, run = guided(host, models[kind], scale=20.0, loss_scale=1.0, blocks="0,1", max_step=0.0)  # paper's step
    run_sampler(host, model, conds[kind], seed=3, steps=2, cfg=CFG[kind])
    assert list(run.deltas) == [0]
    expect, loss = hand_delta(host, models[kind], conds[kind], kind, 3, 2, 20.0, 1.0, set(run.targets))
    got = run.deltas[0]
    assert run.losses[0][0] == pytest.approx(loss, rel=1e-3)
    assert float(expect.abs().max()) > 0
    assert torch.allclose(got, expect, rtol=2e-2, atol=2e-3 * float(expect.abs().max())), (
        float((got - expect).abs().max()), float(expect.abs().max()))


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_the_family_default_caps_each_guided_step_at_0_3_sigma(host, dit, kind):
    """max_step -1 on Flux / SD3 is 0.3: every guided move's RMS is at most 0.3 x that step's sigma, and a
    step the cap shortened keeps the uncapped step's direction."""
    models, conds = dit
    free_model, free = guided(host, models[kind], scale=20.0, blocks="0,1", max_step=0.0)
    run_sampler(host, free_model, conds[kind], seed=3, steps=4, cfg=CFG[kind])
    model, run = guided(host, models[kind], scale=20.0, blocks="0,1")
    run_sampler(host, model, conds[kind], seed=3, steps=4, cfg=CFG[kind])
    assert run.settings.max_step == 0.3 and sorted(run.deltas) == [0, 1]
    sigmas = host.samplers.calculate_sigmas(models[kind].get_model_object("model_sampling"), "simple", 4)
    for step, d in run.deltas.items():
        assert float(d.pow(2).mean().sqrt()) <= 0.3 * float(sigmas[step]) * (1 + 1e-4)
    d, f = run.deltas[0], free.deltas[0]  # step 0 starts from the same latent in both runs
    assert 0 in run.capped, "the test's step must be long enough to be capped"
    assert torch.allclose(d / d.norm(), f / f.norm(), atol=1e-4)


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_guidance_lowers_attention_loss_on_most_seeds(host, dit, kind):
    """On 10 seeds and relations the loss after the guided window is lower with guidance than without."""
    from pos_spatial_pack.pos_core.attention import maps_loss

    models, conds = dit
    cases = [("left", (2,), (8,)), ("right", (3,), (7,)), ("above", (1,), (5,)), ("below", (4,), (9,)),
             ("left", (6,), (2,)), ("right", (2, 3), (10,)), ("above", (8,), (3,)), ("below", (5,), (1,)),
             ("left", (9,), (4,)), ("above", (2,), (11, 12))]
    wins, report = 0, []
    for seed, (rel, a, b) in enumerate(cases):
        rels = relations("x", (("a", rel, "b", a, b),))
        with torch.inference_mode():
            plain_model, plain = host.guidance.PoSAttentionCapture.execute(models[kind], rels, "auto").result
        run_sampler(host, plain_model, conds[kind], seed=seed, steps=4, cfg=CFG[kind], size=64)
        model, run = guided(host, models[kind], rels, scale=20.0)
        run_sampler(host, model, conds[kind], seed=seed, steps=4, cfg=CFG[kind], size=64)
        # step 2: the first step after the guided window (2 of 4), maps of 4 x 4 image tokens
        before, after = float(maps_loss(plain.maps[2], plain.pairs)[0]), float(maps_loss(run.maps[2], run.pairs)[0])
        report.append((rel, before, after))
        wins += after < before
    assert wins >= 8, report


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_every_sampler_runs_guided(host, dit, kind):
    import comfy.samplers

    models, conds = dit
    model, run = guided(host, models[kind])
    failures = []
    for sampler in comfy.samplers.KSampler.SAMPLERS:
        try:
            out = run_sampler(host, model, conds[kind], seed=1, steps=3, cfg=CFG[kind], sampler=sampler, size=64)
            if not torch.isfinite(out).all() or 0 not in run.deltas:
                failures.append((sampler, "non-finite" if not torch.isfinite(out).all() else sorted(run.deltas)))
        except Exception as e:  # collect them all, report at once
            failures.append((sampler, repr(e)[:200]))
    assert not failures, failures


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_capture_only_is_bit_identical_and_nothing_leaks(host, dit, kind):
    models, conds = dit
    model = models[kind]
    weights = [(n, p, p.data_ptr()) for n, p in model.model.diffusion_model.named_parameters()]
    plain = run_sampler(host, model, conds[kind], seed=5, steps=3, cfg=3.0)
    with torch.inference_mode():
        captured, run = host.guidance.PoSAttentionCapture.execute(model, relations(), "auto").result
    assert torch.equal(plain, run_sampler(host, captured, conds[kind], seed=5, steps=3, cfg=3.0))
    assert sorted(run.maps) == [0, 1, 2] and not run.deltas and run.maps[0].shape == (1, 2, 8, 8)
    g_model, _ = guided(host, model, scale=50.0)
    g1 = run_sampler(host, g_model, conds[kind], seed=5, steps=3, cfg=3.0)
    assert torch.equal(g1, run_sampler(host, g_model, conds[kind], seed=5, steps=3, cfg=3.0))
    assert not torch.equal(g1, plain)
    to = model.model_options.get("transformer_options", {})
    assert not to.get("patches_replace", {}).get("dit") and "optimized_attention_override" not in to
    assert "pos_spatial" not in str(model.wrappers)
    # the model's own weights are back in place (the gradient pass swaps in aliases, never copies)
    assert [(n, p, p.data_ptr()) for n, p in model.model.diffusion_model.named_parameters()] == weights
    assert torch.equal(plain, run_sampler(host, model, conds[kind], seed=5, steps=3, cfg=3.0))


def test_cancel_stops_a_guided_run_and_the_next_run_works(host, dit):
    import comfy.model_management
    import comfy.sample

    models, conds = dit
    model, run = guided(host, models["flux"])
    pos, neg = conds["flux"]
    calls = []

    def cancel(step, x0, x, total):
        calls.append(step)
        comfy.model_management.interrupt_current_processing(True)

    with torch.inference_mode():
        latent = host.comfy_sample.fix_empty_latent_channels(model, torch.zeros(1, 4, 16, 16))
        noise = comfy.sample.prepare_noise(latent, 0)
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            comfy.sample.sample(model, noise, 6, 1.0, "euler", "simple", pos, neg, latent, callback=cancel,
                                disable_pbar=True, seed=0)
    assert calls == [0] and not run.active and not run.guiding
    out = run_sampler(host, model, conds["flux"], seed=0, steps=4)
    assert torch.isfinite(out).all() and sorted(run.deltas) == [0, 1]


def test_distilled_flux_dev_cfg1_and_schnell_4_steps(host, dit):
    models, conds = dit
    model, run = guided(host, models["flux"])
    out = run_sampler(host, model, conds["flux"], seed=0, steps=4, cfg=1.0)
    assert torch.isfinite(out).all() and sorted(run.deltas) == [0, 1]
    model, run = guided(host, models["schnell"], fraction=0.25)
    out = run_sampler(host, model, conds["schnell"], seed=0, steps=4, cfg=1.0)
    assert torch.isfinite(out).all() and sorted(run.deltas) == [0] and sorted(run.maps) == [0, 1, 2, 3]
    assert float(run.deltas[0].abs().max()) > 0


def test_bf16_and_fp8_weights(host, dit):
    import dit_fixtures

    with torch.inference_mode():
        sd3 = dit_fixtures.sd3(dtype=torch.bfloat16)
        fp8 = dit_fixtures.flux(dtype=torch.float8_e4m3fn)
    assert sd3.model.diffusion_model.joint_blocks[0].x_block.attn.qkv.weight.dtype == torch.bfloat16
    assert fp8.model.diffusion_model.double_blocks[0].img_attn.qkv.weight.dtype == torch.float8_e4m3fn
    for model, kind in ((sd3, "sd3"), (fp8, "flux")):
        g, run = guided(host, model)
        out = run_sampler(host, g, dit[1][kind], seed=0, steps=2, cfg=CFG[kind])
        assert torch.isfinite(out).all() and run.deltas[0].dtype == torch.float32
        assert torch.isfinite(run.deltas[0]).all() and float(run.deltas[0].abs().max()) > 0


def test_joint_softmax_and_single_blocks(host, dit):
    models, conds = dit
    model, run = guided(host, models["flux"], blocks="0,s1", softmax="joint")
    run_sampler(host, model, conds["flux"], seed=0, steps=2)
    assert sorted(run.deltas) == [0] and float(run.deltas[0].abs().max()) > 0
    assert float(run.maps[1].sum(dim=(-1, -2)).max()) < 1.0  # a joint-row share of 64 image + 256 text keys


def test_token_indices_outside_the_text_context(host, dit):
    models, conds = dit
    model, _ = guided(host, models["sd3"], relations("x", (("a", "left", "b", (2,), (400,)),)))
    with pytest.raises(ValueError, match=r"token indices \[400\] are outside the 154-token text context"):
        run_sampler(host, model, conds["sd3"], seed=0, steps=2, cfg=3.0)


def test_other_dits_are_refused_with_a_message(host):
    import comfy.model_patcher
    import comfy.supported_models

    cfg = dict(in_channels=4, out_channels=4, patch_size=2, dim=64, n_layers=2, n_double_layers=1, n_heads=2,
               global_conddim=64, cond_seq_dim=2048, max_seq=256)
    with torch.inference_mode():
        aura = comfy.supported_models.AuraFlow(cfg).get_model({}, device="cpu")
    patcher = comfy.model_patcher.ModelPatcher(aura, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    for node in (lambda: guided(host, patcher),
                 lambda: host.guidance.PoSAttentionCapture.execute(patcher, relations(), "auto")):
        with pytest.raises(ValueError, match=r"works on SD1.x, SD2.x, SDXL .*Flux.1 dev / schnell, Flux.2 dev / klein, "
                                             r"Chroma, SD3 / SD3.5.*Qwen-Image and Z-Image.*this model is AuraFlow"):
            with torch.inference_mode():
                node()


def test_attention_maps_and_seed_search_on_flux(host, dit):
    models, conds = dit
    model, run = guided(host, models["flux"])
    samples = run_sampler(host, model, conds["flux"], seed=4, steps=4, batch=2)
    with torch.inference_mode():
        panel, report = host.maps.PoSAttentionMaps.execute(run, torch.rand(2, SIZE, SIZE, 3), 0, -1).result
    assert panel.shape[0] == 2 and '"attention_pse"' in report
    from pos_spatial_pack.nodes.seed_search import PoSSeedSearch

    pos, neg = conds["flux"]
    with torch.inference_mode():
        latent = host.nodes.EmptyLatentImage().generate(SIZE, SIZE, 1)[0]
        out = PoSSeedSearch.execute(models["flux"], pos, neg, latent, relations(), 0, 3, "attention", 4, 2, 1.0,
                                    "euler", "simple").result
    from pos_spatial_pack.pos_core.seeds import candidate_seeds

    assert out[0]["samples"].shape == samples[:1].shape and out[1] in candidate_seeds(0, 3)
    with torch.inference_mode():  # the ranking reads the chosen blocks' maps; a block the model lacks is named
        table = json.loads(PoSSeedSearch.execute(models["flux"], pos, neg, latent, relations(), 0, 3, "attention", 4,
                                                 2, 1.0, "euler", "simple", blocks="s1", softmax="joint").result[2])
        assert len(table["candidates"]) == 3
        assert table["candidates"] != json.loads(out[2])["candidates"], "other blocks, other attention losses"
        with pytest.raises(ValueError, match="blocks: s7 is out of range: this model has 2 single blocks"):
            PoSSeedSearch.execute(models["flux"], pos, neg, latent, relations(), 0, 3, "attention", 4, 2, 1.0,
                                  "euler", "simple", blocks="s7")
        with pytest.raises(ValueError, match="softmax must be one of text, joint"):
            PoSSeedSearch.execute(models["flux"], pos, neg, latent, relations(), 0, 3, "attention", 4, 2, 1.0,
                                  "euler", "simple", softmax="full")
