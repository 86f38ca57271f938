"""Host tests of the relation, guidance and attention-map nodes in the real ComfyUI (in-process).

They run the stock sampling code (nodes.common_ksampler, as KSampler does) under inference mode,
on the random-weight SD1.5-architecture fixture; graph runs through the server are in
test_host_graphs.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from comfy_host import encode, guide, sample


def test_nodes_register(host):
    import asyncio

    ext = asyncio.run(host.pack.comfy_entrypoint())
    names = {n.define_schema().node_id for n in asyncio.run(ext.get_node_list())}
    assert {"PoSRelationsFromPrompt", "PoSRelation", "PoSGuidance", "PoSAttentionCapture",
            "PoSAttentionMaps"} <= names
    for node in asyncio.run(ext.get_node_list()):
        schema = node.define_schema()
        assert schema.category == "PoS spatial"
        for inp in schema.inputs:
            assert inp.tooltip, (schema.node_id, inp.id)


def test_relations_from_prompt_binds_tokens(host):
    cond, rels = encode(host, "a photo of a (teddy bear:1.2) to the left of a dog, 4k")
    (r,) = rels.relations
    assert (r.subject, r.relation, r.object) == ("teddy bear", "left", "dog")
    assert r.subject_tokens == (5, 6) and r.object_tokens == (12,)
    assert cond[0][0].shape == (1, 77, 768)


def test_relation_errors_name_the_input(host):
    with pytest.raises(ValueError, match="no spatial relation found"):
        encode(host, "a beautiful landscape")
    node = host.relations.PoSRelation
    with torch.inference_mode():
        with pytest.raises(ValueError, match="subject 'horse' is not in the prompt"):
            node.execute(host.clip, "a cat and a dog", "horse", "left", "dog")
        with pytest.raises(ValueError, match="object 'bird' is not in the prompt"):
            node.execute(host.clip, "a cat and a dog", "cat", "left", "bird")
        one = node.execute(host.clip, "a cat and a dog and a bird", "cat", "left", "dog").result[0]
        two = node.execute(host.clip, "a cat and a dog and a bird", "bird", "above", "dog", one).result[0]
    assert [(r.subject, r.relation, r.object) for r in two.relations] == [("cat", "left", "dog"),
                                                                          ("bird", "above", "dog")]
    assert two.relations[0].subject_tokens == (2,) and two.relations[1].subject_tokens == (8,)


def test_guided_step_equals_hand_computation(host):
    """One PSG step through ComfyUI's KSampler path equals the authors' update done by hand."""
    cond, rels = encode(host, "a cat to the left of a dog")
    model, run = guide(host, rels, scale=20.0, fraction=0.5, loss_scale=1.0)
    sample(host, model, cond, seed=3, steps=2, cfg=1.0)
    assert list(run.deltas) == [0]
    got = run.deltas[0]

    ms = host.model.get_model_object("model_sampling")
    sigmas = host.samplers.calculate_sigmas(ms, "normal", 2).cpu()
    with torch.inference_mode():
        latent = host.nodes.EmptyLatentImage().generate(256, 256, 1)[0]["samples"]
        noise = host.comfy_sample.prepare_noise(latent, 3).clone()
        context = cond[0][0].clone()
    unet = host.model.model.diffusion_model
    with torch.inference_mode(False):
        params = {k: v.detach().clone().float() for k, v in unet.named_parameters()}
        x = noise.clone().float() * sigmas[0]
        c_in = 1.0 / math.sqrt(float(sigmas[0]) ** 2 + 1.0)
        z = (x * c_in).requires_grad_(True)
        t = ms.timestep(sigmas[:1].clone()).float()
        level = (z.shape[-2] // 2) * (z.shape[-1] // 2)  # the fixture's coarsest attention level
        probs = []

        def hook(mod, args, kwargs):
            hidden, ctx = args[0], kwargs["context"]
            if hidden.shape[1] != level:
                return
            q, k = mod.to_q(hidden).float(), mod.to_k(ctx).float()
            b, n, inner = q.shape
            d = inner // mod.heads
            q = q.reshape(b, n, mod.heads, d).transpose(1, 2)
            k = k.reshape(b, -1, mod.heads, d).transpose(1, 2)
            probs.append(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1).mean(dim=1))

        hooks = [m.attn2.register_forward_pre_hook(hook, with_kwargs=True)
                 for m in unet.modules() if type(m).__name__ == "BasicTransformerBlock"]
        try:
            torch.func.functional_call(unet, params, (z, t), {"context": context.float()})
        finally:
            for hk in hooks:
                hk.remove()
        assert len(probs) == len(run.targets)
        avg = torch.stack(probs).mean(dim=0)[0]  # [HW, T]
        h = w = z.shape[-1] // 2
        cat, dog = avg[:, 2].reshape(h, w), avg[:, 8].reshape(h, w)
        from pos_spatial_pack.pos_core.guidance import relation_loss, smooth

        loss = relation_loss(smooth(cat), smooth(dog), "left")
        grad_z, = torch.autograd.grad(loss, z)
    expect = -20.0 * grad_z / c_in  # alpha_0 = 20 * sqrt(1.0); z-step mapped to x
    assert run.losses[0][0] == pytest.approx(float(loss.detach()), rel=1e-3)
    assert float(expect.abs().max()) > 0
    assert torch.allclose(got, expect, rtol=2e-2, atol=2e-3 * float(expect.abs().max())), (
        float((got - expect).abs().max()), float(expect.abs().max()))


def test_capture_only_changes_nothing_and_nothing_leaks(host):
    cond, rels = encode(host, "a cat to the left of a dog")
    plain = sample(host, host.model, cond, seed=5, steps=3)
    with torch.inference_mode():
        captured, run = host.guidance.PoSAttentionCapture.execute(host.model, rels, "auto").result
    same = sample(host, captured, cond, seed=5, steps=3)
    assert torch.equal(plain, same)
    assert sorted(run.maps) == [0, 1, 2] and not run.deltas
    guided, grun = guide(host, rels, scale=50.0)
    g1 = sample(host, guided, cond, seed=5, steps=4)
    g2 = sample(host, guided, cond, seed=5, steps=4)
    assert torch.equal(g1, g2), "same seed, same image"
    assert not torch.equal(g1, sample(host, host.model, cond, seed=5, steps=4))
    # the input MODEL is untouched: no attn2 replaces or wrappers of ours on it
    to = host.model.model_options.get("transformer_options", {})
    assert not to.get("patches_replace", {}).get("attn2")
    assert "pos_spatial" not in str(host.model.wrappers)
    assert torch.equal(plain, sample(host, host.model, cond, seed=5, steps=3))


def test_wraps_an_existing_attn2_replace(host):
    """An IPAdapter-style replace already in a captured slot keeps running under the patch."""
    from comfy.ldm.modules.attention import optimized_attention

    cond, rels = encode(host, "a cat to the left of a dog")
    calls = []

    def other(q, k, v, extra_options):
        calls.append(extra_options["block"])
        return optimized_attention(q, k, v, extra_options["n_heads"]) * 0.5

    key = host.patch.target_layers(host.model.model.diffusion_model, "auto")[0]
    with_other = host.model.clone()
    with_other.set_model_attn2_replace(other, *key)
    reference = sample(host, with_other, cond, seed=1, steps=2)
    n_ref = len(calls)
    assert n_ref > 0
    captured, _ = host.patch.patch(with_other, rels, host.patch.Settings(scale=0.0))
    assert torch.equal(sample(host, captured, cond, seed=1, steps=2), reference)
    guided, run = host.patch.patch(with_other, rels, host.patch.Settings(scale=20.0))
    calls.clear()
    sample(host, guided, cond, seed=1, steps=2)
    assert len(calls) > n_ref and run.deltas, "the wrapped replace also runs in the guidance pass"


def test_nonfinite_gradient_skips_the_step(host, caplog):
    cond, rels = encode(host, "a cat to the left of a dog")
    model, run = host.patch.patch(host.model, rels, host.patch.Settings(scale=20.0, loss_scale=float("inf")))
    out = sample(host, model, cond, seed=0, steps=4)
    assert run.skipped == [0, 1] and not run.deltas
    assert torch.isfinite(out).all()
    assert "non-finite gradient" in caplog.text


def test_guidance_lowers_attention_loss_on_most_seeds(host):
    """On 10 seeds and prompts the loss at the end of the guided window is lower with guidance."""
    from pos_spatial_pack.pos_core.attention import maps_loss

    prompts = ["a cat to the left of a dog", "a dog to the right of a car", "a bird above a table",
               "a cup below a lamp", "a horse to the left of a tree", "a vase to the right of a clock",
               "a kite above a boat", "a ball below a chair", "a book to the left of a bottle",
               "a plane above a house"]
    steps, wins, report = 6, 0, []
    for seed, prompt in enumerate(prompts):
        cond, rels = encode(host, prompt)
        with torch.inference_mode():
            plain_model, plain = host.guidance.PoSAttentionCapture.execute(host.model, rels, "auto").result
        sample(host, plain_model, cond, seed=seed, steps=steps)
        guided_model, guided = guide(host, rels, scale=2000.0)
        sample(host, guided_model, cond, seed=seed, steps=steps)
        end = 3  # first step after the guided window (3 of 6 guided)
        a = float(maps_loss(plain.maps[end], plain.pairs)[0])
        b = float(maps_loss(guided.maps[end], guided.pairs)[0])
        report.append((prompt, a, b))
        wins += b < a
    assert wins >= 8, report


def test_batch_and_cfg1_and_second_order_samplers(host):
    cond, rels = encode(host, "a cat to the left of a dog")
    model, run = guide(host, rels, scale=20.0)
    out = sample(host, model, cond, seed=2, steps=4, batch=2)
    assert out.shape[0] == 2 and run.deltas[0].shape[0] == 2 and len(run.losses[0]) == 2
    sample(host, model, cond, seed=2, steps=4, cfg=1.0)
    assert sorted(run.deltas) == [0, 1]
    for sampler in ("heun", "dpmpp_2m", "dpmpp_sde", "euler_ancestral", "ddim", "uni_pc"):
        out = sample(host, model, cond, seed=2, steps=4, sampler=sampler, scheduler="karras")
        assert torch.isfinite(out).all(), sampler
        assert sorted(run.deltas) == [0, 1], (sampler, sorted(run.deltas))
        assert sorted(run.maps) == [0, 1, 2, 3], (sampler, sorted(run.maps))


def test_bf16_model_guides_in_fp32(host):
    import comfy.sd
    import comfy_host

    cond, rels = encode(host, "a cat to the left of a dog")
    with torch.inference_mode():
        model = comfy.sd.load_checkpoint_guess_config(str(comfy_host.fixture_checkpoint()),
                                                      model_options={"dtype": torch.bfloat16})[0]
    assert model.model_dtype() == torch.bfloat16
    guided, run = guide(host, rels, scale=20.0, model=model)
    out = sample(host, guided, cond, seed=0, steps=2)
    assert torch.isfinite(out).all() and run.deltas[0].dtype == torch.float32
    assert torch.isfinite(run.deltas[0]).all() and float(run.deltas[0].abs().max()) > 0


def test_models_without_unet_cross_attention_are_refused(host):
    import comfy.model_patcher
    import comfy.supported_models

    # SD3 and Flux are guided since issue 9 (tests/test_host_dit.py); AuraFlow stands for the other DiTs
    cfg = dict(in_channels=4, out_channels=4, patch_size=2, dim=64, n_layers=2, n_double_layers=1, n_heads=2,
               global_conddim=64, cond_seq_dim=2048, max_seq=256)
    aura = comfy.supported_models.AuraFlow(cfg).get_model({}, device="cpu")
    patcher = comfy.model_patcher.ModelPatcher(aura, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    _, rels = encode(host, "a cat to the left of a dog")
    with pytest.raises(ValueError, match="SD1.x, SD2.x, SDXL"):
        guide(host, rels, model=patcher)


def test_bad_level_and_empty_relations(host):
    _, rels = encode(host, "a cat to the left of a dog")
    with pytest.raises(ValueError, match="attention_level latent/8 has no cross-attention"):
        guide(host, rels, level="latent/8")
    from pos_spatial_pack.pos_core.tokens import RelationSet

    with pytest.raises(ValueError, match="relations is empty"):
        guide(host, RelationSet("x", ()))


def test_attention_maps_node(host):
    cond, rels = encode(host, "a cat to the left of a dog and a bird above the dog")
    model, run = guide(host, rels, scale=20.0)
    samples = sample(host, model, cond, seed=4, steps=4, batch=2)
    with torch.inference_mode():
        images = host.vae.decode(samples)
        out = host.maps.PoSAttentionMaps.execute(run, images, 0, -1)
    panel, report = out.result
    assert panel.shape[0] == 2 and panel.shape[-1] == 3
    from pos_spatial_pack.nodes.render import STRIP

    assert panel.shape[2] == 2 * (256 + STRIP)  # two relations side by side
    import json

    rep = json.loads(report)
    assert rep[0]["relations"][0]["subject"] == "cat" and rep[0]["steps"] == [0, 3]
    assert 0.0 <= rep[0]["relations"][1]["attention_pse"] <= 1.0
    with pytest.raises(ValueError, match="images has 1 images"):
        host.maps.PoSAttentionMaps.execute(run, images[:1], 0, -1)
    with pytest.raises(ValueError, match="no recorded step"):
        host.maps.PoSAttentionMaps.execute(run, images, 7, 9)


def _samplers():
    import comfy.samplers

    return comfy.samplers.KSampler.SAMPLERS


def _schedulers():
    import comfy.samplers

    return comfy.samplers.KSampler.SCHEDULERS


def test_every_shipped_sampler_and_scheduler_runs_guided(host):
    """Every sampler and every scheduler ComfyUI ships, guided: finite latents, first step guided."""
    cond, rels = encode(host, "a cat to the left of a dog")
    model, run = guide(host, rels, scale=20.0)
    failures = []
    for sampler in _samplers():
        try:
            out = sample(host, model, cond, seed=1, steps=3, sampler=sampler, size=128)
            if not torch.isfinite(out).all() or 0 not in run.deltas:
                failures.append((sampler, "non-finite" if not torch.isfinite(out).all() else sorted(run.deltas)))
        except Exception as e:  # collect them all, report at once
            failures.append((sampler, repr(e)[:200]))
    for scheduler in _schedulers():
        try:
            out = sample(host, model, cond, seed=1, steps=3, scheduler=scheduler, size=128)
            if not torch.isfinite(out).all() or 0 not in run.deltas:
                failures.append((scheduler, "non-finite or unguided"))
        except Exception as e:
            failures.append((scheduler, repr(e)[:200]))
    assert not failures, failures


def test_more_user_mistakes_name_the_input(host):
    node = host.relations.PoSRelation
    with torch.inference_mode():
        with pytest.raises(ValueError, match="subject and object point at the same words"):
            node.execute(host.clip, "a cat and a dog", "cat", "left", "cat")
        _, no_clip, _ = host.relations.PoSRelationsFromPrompt.execute("a cat to the left of a dog").result
    assert no_clip.relations[0].subject_tokens == ()
    with pytest.raises(ValueError, match="connect your checkpoint's CLIP to the clip input"):
        guide(host, no_clip)
    _, rels = encode(host, "a cat to the left of a dog")
    _, run = guide(host, rels)
    with pytest.raises(ValueError, match="no attention was recorded: run a sampler"):
        host.maps.PoSAttentionMaps.execute(run, torch.zeros(1, 64, 64, 3), 0, -1)


def test_max_step_caps_each_guided_step_and_says_so(host, caplog):
    """max_step: every guided move's RMS is at most max_step * sigma of its step, in the same direction as
    the uncapped move; -1 (auto) is the paper's uncapped step on UNets."""
    import logging

    cond, rels = encode(host, "a cat to the left of a dog")
    free_model, free = guide(host, rels, scale=2000.0, fraction=0.5)
    sample(host, free_model, cond, seed=3, steps=2, cfg=1.0)
    with torch.inference_mode():
        model, run = host.guidance.PoSGuidance.execute(host.model, rels, 2000.0, 0.5, -1.0, True, "auto",
                                                       max_step=0.01).result
    with caplog.at_level(logging.INFO, logger="pos_spatial"):
        sample(host, model, cond, seed=3, steps=2, cfg=1.0)
    sigma = float(host.samplers.calculate_sigmas(host.model.get_model_object("model_sampling"), "normal", 2)[0])
    d, f = run.deltas[0], free.deltas[0]
    assert float(f.pow(2).mean().sqrt()) > 0.01 * sigma, "the test's step must be long enough to be capped"
    assert float(d.pow(2).mean().sqrt()) == pytest.approx(0.01 * sigma, rel=1e-3)
    assert torch.allclose(d / d.norm(), f / f.norm(), atol=1e-5)
    assert run.capped == [0] and "max_step 0.01 shortened" in caplog.text
    assert free.settings.max_step == 0.0 and free.capped == []
