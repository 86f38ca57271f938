"""PoS Guidance on the model families of 2026 (Flux.2 dev / klein, Chroma, Qwen-Image, Z-Image) in the real
ComfyUI, on tiny random-weight models built from ComfyUI's own model classes (tests/dit_fixtures.py).

Conditioning is random text features of each model's text width; sampling goes through ComfyUI's KSampler
code. Random weights prove the plumbing (the family is found, maps are read from the right tokens and blocks,
the gradient reaches the latent, nothing leaks), not that guidance helps: that is the testbed's question.
A family whose model classes this ComfyUI lacks (Flux.2 and Z-Image before 0.33) skips, saying so.
"""

from __future__ import annotations

import pytest
import torch

SIZE = 128  # pixels: latent 16 x 16 (Flux.2: 8 x 8 cells of 128 channels) -> 8 x 8 image tokens
FAMILIES = ["flux2", "klein", "chroma", "qwen_image", "z_image"]
NAME = {"flux2": "flux2", "klein": "flux2", "chroma": "chroma", "qwen_image": "qwen_image", "z_image": "z_image"}
BLOCKS = {"flux2": 1, "klein": 2, "chroma": 2, "qwen_image": 4, "z_image": 4}  # double / joint / main blocks
CFG = {"flux2": 1.0, "klein": 3.0, "chroma": 3.0, "qwen_image": 3.0, "z_image": 1.0}
TOKENS = 24


def model_of(kind: str):
    import dit_fixtures

    with torch.inference_mode():
        return getattr(dit_fixtures, kind)()


@pytest.fixture(scope="module")
def models(host):
    return {}


def get(models, kind):
    if kind not in models:
        models[kind] = model_of(kind)
    return models[kind]


def conds(kind):
    import dit_fixtures

    return dit_fixtures.family_conds(kind, TOKENS)


def relations(subject=(2,), obj=(8,)):
    from pos_spatial_pack.pos_core.tokens import RelationSet, TokenRelation

    return RelationSet("a cat to the left of a dog", (TokenRelation("cat", "left", "dog", subject, obj),))


def latent(host, kind, batch=1, size=SIZE):
    with torch.inference_mode():
        if kind in ("flux2", "klein"):
            import comfy.model_management

            return {"samples": torch.zeros(batch, 128, size // 16, size // 16,
                                           device=comfy.model_management.intermediate_device())}
        return host.nodes.EmptyLatentImage().generate(size, size, batch)[0]


def sample(host, model, kind, seed=0, steps=3, sampler="euler", cond=None):
    pos, neg = cond or conds(kind)
    with torch.inference_mode():
        return host.nodes.common_ksampler(model, seed, steps, CFG[kind], sampler, "simple", pos, neg,
                                          latent(host, kind))[0]["samples"]


def guided(host, model, scale=50.0, blocks="auto", rels=None, max_step=-1.0):
    with torch.inference_mode():
        return host.guidance.PoSGuidance.execute(model, rels or relations(), scale, 0.5, -1.0, True, "auto", blocks,
                                                 "text", max_step=max_step).result


@pytest.mark.parametrize("kind", FAMILIES)
def test_family_is_found_and_its_blocks_parse(host, models, kind):
    from pos_spatial_pack.nodes.families import family_of

    m = get(models, kind)
    fam = family_of(m)
    assert fam.name == NAME[kind]
    _, run = guided(host, m)
    assert run.targets and all(k[0] == "double_block" and k[1] < BLOCKS[kind] for k in run.targets)
    assert run.settings.loss_scale == 1000.0 and run.settings.max_step == 0.3
    _, run = guided(host, m, blocks="all")
    assert len(run.targets) == len(fam.candidates())
    with pytest.raises(ValueError, match=f"blocks: 9 is out of range: this model has {BLOCKS[kind]} "):
        guided(host, m, blocks="9")
    with pytest.raises(ValueError, match="blocks: 'top' is not a block"):
        guided(host, m, blocks="top")
    with pytest.raises(ValueError, match="attention_level applies to UNet models"):
        with torch.inference_mode():
            host.guidance.PoSGuidance.execute(m, relations(), 20.0, 0.5, -1.0, True, "latent/2")


def test_flux2_is_never_taken_for_flux1(host, models):
    from pos_spatial_pack.nodes.families import flux

    for kind in ("flux2", "klein"):
        m = get(models, kind)
        assert type(m.model.diffusion_model).__name__ == "Flux"  # the class Flux.1 is built from, too
        assert flux.detect(m) is None


@pytest.mark.parametrize("kind", FAMILIES)
def test_guidance_acts_and_scale_0_equals_the_plain_graph(host, models, kind):
    """Guided differs from unguided; scale 0 (maps recorded, nothing moved) is bit-identical to the graph without
    PoS Guidance; the maps are finite, on the 8 x 8 token grid, and (text softmax) each group's map is a share
    of the pixel's attention (0..1); the model is left as it was."""
    m = get(models, kind)
    weights = [(n, p.data_ptr()) for n, p in m.model.diffusion_model.named_parameters()]
    plain = sample(host, m, kind, seed=5)
    zero, run0 = guided(host, m, scale=0.0)
    assert torch.equal(plain, sample(host, zero, kind, seed=5))
    assert sorted(run0.maps) == [0, 1, 2] and not run0.deltas
    maps = run0.maps[0]
    assert maps.shape == (1, 2, 8, 8) and torch.isfinite(maps).all()
    assert float(maps.min()) >= 0.0 and float(maps.sum(1).max()) <= 1.0 + 1e-5  # shares of one softmax row
    g, run = guided(host, m, scale=50.0)
    out = sample(host, g, kind, seed=5)
    assert torch.isfinite(out).all() and not torch.equal(out, plain)
    assert 0 in run.deltas and float(run.deltas[0].abs().max()) > 0 and run.losses.get(0)
    assert torch.equal(out, sample(host, g, kind, seed=5))  # deterministic
    to = m.model_options.get("transformer_options", {})
    assert not to.get("patches_replace", {}).get("dit") and "optimized_attention_override" not in to
    assert "pos_spatial" not in str(m.wrappers)
    assert [(n, p.data_ptr()) for n, p in m.model.diffusion_model.named_parameters()] == weights
    assert torch.equal(plain, sample(host, m, kind, seed=5))


@pytest.mark.parametrize("kind", FAMILIES)
def test_blocks_maps_chooses_from_the_models_own_maps(host, models, kind):
    m = get(models, kind)
    g, run = guided(host, m, blocks="maps")
    out = sample(host, g, kind, seed=2)
    assert torch.isfinite(out).all()
    assert run.choice is not None and run.choice["kept"]
    assert len(run.choice["scores"]) == len(run.family.candidates())  # every block's maps were scored
    assert run.targets and set(run.targets) <= {k for _, keys in run.family.candidates() for k in keys}
    assert 0 in run.deltas


@pytest.mark.parametrize("kind", FAMILIES)
def test_maps_read_the_relations_tokens(host, models, kind):
    """Moving the object's token index moves what the maps read: the map of token 8 differs from token 12's."""
    m = get(models, kind)
    maps = []
    for obj in ((8,), (12,)):
        with torch.inference_mode():
            cap, run = host.guidance.PoSAttentionCapture.execute(m, relations(obj=obj), "auto").result
        sample(host, cap, kind, seed=3, steps=2)
        maps.append(run.maps[0])
    assert torch.equal(maps[0][:, 0], maps[1][:, 0]) and not torch.equal(maps[0][:, 1], maps[1][:, 1])


@pytest.mark.parametrize("kind", ["flux2", "klein", "chroma"])
def test_flux_style_copies_equal_the_stock_blocks(host, models, kind):
    """The gradient pass's out-of-place copies of Flux.2's and Chroma's blocks (modulation from `vec`, Flux.2's
    gated MLP) give the stock blocks' outputs on the arguments a real model call passes them."""
    from comfy.ldm.modules.attention import attention_pytorch
    from pos_spatial_pack.nodes.families import flux
    from pos_spatial_pack.nodes.families.base import differentiable

    m = get(models, kind).clone()
    dm = m.model.diffusion_model
    diffs = []

    def check(kind_, i):
        block = (dm.double_blocks if kind_ == "double_block" else dm.single_blocks)[i]

        def patch(args, extra):
            to = dict(args["transformer_options"], optimized_attention_override=lambda f, *a, **kw: attention_pytorch(*a, **kw))
            clones = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in args.items()}
            stock = extra["original_block"](dict(clones, transformer_options=to))
            if kind_ == "double_block":
                img, txt = flux.double_forward(block, args["img"], args["txt"], args["vec"], args["pe"], args.get("attn_mask"))
                diffs.append(max(float((stock["img"] - img).abs().max()), float((stock["txt"] - txt).abs().max())))
            else:
                x = flux.single_forward(block, args["img"], args["vec"], args["pe"], args.get("attn_mask"))
                diffs.append(float((stock["img"] - x).abs().max()))
            return stock

        return patch

    for i in range(len(dm.double_blocks)):
        m.set_model_patch_replace(check("double_block", i), "dit", "double_block", i)
    for i in range(len(dm.single_blocks)):
        m.set_model_patch_replace(check("single_block", i), "dit", "single_block", i)
    with differentiable():
        sample(host, m, kind, seed=1, steps=1)
    assert len(diffs) == len(dm.double_blocks) + len(dm.single_blocks)  # one model call (cond and uncond batched)
    assert max(diffs) < 1e-5, diffs


@pytest.mark.parametrize("kind", FAMILIES)
def test_attention_maps_node_and_seed_search(host, models, kind):
    from pos_spatial_pack.nodes.seed_search import PoSSeedSearch

    m = get(models, kind)
    g, run = guided(host, m)
    sample(host, g, kind, seed=4)
    with torch.inference_mode():
        panel, report = host.maps.PoSAttentionMaps.execute(run, torch.rand(1, SIZE, SIZE, 3), 0, -1).result
    assert panel.shape[0] == 1 and '"attention_pse"' in report
    pos, neg = conds(kind)
    with torch.inference_mode():
        out = PoSSeedSearch.execute(m, pos, neg, latent(host, kind), relations(), 0, 2, "attention", 3, 2,
                                    CFG[kind], "euler", "simple").result
    assert out[0]["samples"].shape == sample(host, m, kind, seed=4).shape  # the model's latent layout (Qwen: 5-D)


@pytest.mark.parametrize("kind", FAMILIES)
def test_token_indices_outside_the_text_are_refused(host, models, kind):
    m = get(models, kind)
    g, _ = guided(host, m, rels=relations(obj=(900,)))
    with pytest.raises(ValueError, match=r"token indices \[900\] are outside the \d+-token text context"):
        sample(host, g, kind, seed=0, steps=2)


def test_train_lora_refuses_the_new_families(host, models):
    from pos_spatial_pack.nodes.families import family_of
    from pos_spatial_pack.nodes.train_lora import DIT_FAMILIES, UNET_FAMILIES

    fam = family_of(get(models, "qwen_image"))
    assert fam.name not in DIT_FAMILIES + UNET_FAMILIES and fam.label == "Qwen-Image"


def _lora(model, seed=3):
    """The model with a seeded random rank-4 LoRA on its attention projections (ComfyUI's LoRA loader)."""
    import comfy.sd

    import comfy_host

    weights = [("diffusion_model." + n[:-len(".weight")], p) for n, p in model.model.diffusion_model.named_parameters()
               if n.endswith(".weight") and p.ndim == 2]
    sd = comfy_host.random_lora(weights, lambda n: "attn" in n or "attention" in n or "linear1" in n, seed=seed,
                                scale=0.05)
    assert sd
    with torch.inference_mode():
        patched, _ = comfy.sd.load_lora_for_models(model, None, sd, 1.0, 0.0)
    return patched


def _own_node(model, cond, kind):
    """The family's own guidance / sampling node, as its official workflows chain it."""
    if kind in ("flux2",):
        from comfy_extras.nodes_flux import FluxGuidance

        with torch.inference_mode():
            return model, (FluxGuidance.execute(cond[0], 4.0)[0], cond[1])
    from comfy_extras.nodes_model_advanced import ModelSamplingAuraFlow

    with torch.inference_mode():
        return ModelSamplingAuraFlow().patch_aura(model, 3.1)[0], cond


def _works(host, model, kind, cond, rels):
    zero, _ = guided(host, model, scale=0.0, rels=rels)
    plain = sample(host, model, kind, seed=5, cond=cond)
    assert torch.allclose(sample(host, zero, kind, seed=5, cond=cond), plain, atol=1e-5 * float(plain.abs().max()))
    g, run = guided(host, model, scale=50.0, rels=rels)
    out = sample(host, g, kind, seed=5, cond=cond)
    assert torch.isfinite(out).all() and not run.skipped and not run.notes, run.notes
    assert (out - plain).abs().max() > 1e-3 * float(plain.abs().max()), "guidance did not act"
    return run


@pytest.mark.parametrize("setup", ["lora", "own node", "combined", "area"])
@pytest.mark.parametrize("kind", FAMILIES)
def test_works_with_the_basics(host, models, kind, setup):
    """A LoRA, the family's own node (FluxGuidance on Flux.2 dev, ModelSamplingAuraFlow's shift on the others),
    a second prompt combined into the positive, the relations' prompt on an area: guidance acts, scale 0 leaves
    the result as it was, nothing is skipped; an area prompt's maps land at its area."""
    import dataclasses

    import node_helpers
    from pos_spatial_pack.nodes.conds import fingerprint

    model, cond = get(models, kind), conds(kind)
    other = __import__("dit_fixtures").family_conds(kind, TOKENS, seed=9)[0]
    pos, neg = cond
    if setup == "lora":
        model = _lora(model)
    elif setup == "own node":
        model, cond = _own_node(model, cond, kind)
        pos = cond[0]
    elif setup == "combined":
        cond = (pos + other, neg)
    else:  # the relations' prompt on the right half of the latent (in latent cells), another prompt whole
        h, w = latent(host, kind)["samples"].shape[-2:]
        cond = (node_helpers.conditioning_set_values(pos, {"area": (h, w // 2, 0, w // 2), "strength": 1.0,
                                                           "set_area_to_bounds": False}) + other, neg)
    rels = dataclasses.replace(relations(), fingerprint=fingerprint(pos))
    run = _works(host, model, kind, cond, rels)
    if setup == "area":
        maps = run.maps[0]
        assert maps[..., :, :4].abs().max() == 0 and maps[..., :, 4:].abs().max() > 0


def test_relations_from_prompt_through_a_real_llm_encoder_then_guided(host):
    """End to end through an LLM text encoder: ComfyUI's own CLIP object over Z-Image's tokenizer and a tiny Qwen3
    built from ComfyUI's class (the effect testbed's, benchmarks/testbed_zimage.py), PoS Relations from Prompt
    (template, encode, token indices), then PoS Guidance on a Z-Image-layout model reading that conditioning."""
    import sys
    from pathlib import Path

    import comfy.supported_models

    if not hasattr(comfy.supported_models, "ZImage"):
        pytest.skip("this ComfyUI has no ZImage (ComfyUI 0.33+)")
    sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import testbed_zimage
    from pos_spatial_pack.nodes.relations import PoSRelationsFromPrompt

    clip = testbed_zimage.make_clip("mixing", 0)
    with torch.inference_mode():
        cond, rels, text = PoSRelationsFromPrompt.execute("a photo of a cat to the left of a dog", clip).result
        neg = host.nodes.CLIPTextEncode().encode(clip, "")[0]
    assert cond[0][0].shape[1] == 3 + 11 + 5  # <|im_start|>user\n, the prompt, <|im_end|>\n<|im_start|>assistant\n
    assert rels.relations[0].subject_tokens == (3 + 4,) and rels.relations[0].object_tokens == (3 + 10,)
    import comfy.model_patcher

    model = testbed_zimage.build(0)
    m = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    g, run = guided(host, m, rels=rels)
    with torch.inference_mode():
        lat = host.nodes.EmptyLatentImage().generate(128, 128, 1)[0]
        out = host.nodes.common_ksampler(g, 1, 3, 3.0, "euler", "simple", cond, neg, lat)[0]["samples"]
    assert torch.isfinite(out).all() and 0 in run.deltas and not run.notes, run.notes
