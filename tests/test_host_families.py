"""Guidance on the UNet layouts of SD2.x (linear transformers, v-prediction) and SDXL (deep transformer
stacks, middle block at the guided level, ADM conditioning): small random-weight models built from
ComfyUI's own model classes, with random conditioning of the right shapes (no text encoder needed),
sampled through ComfyUI's KSampler code path."""

from __future__ import annotations

import pytest
import torch

from comfy_host import _init, sample


def relations():
    from pos_spatial_pack.pos_core.tokens import RelationSet, TokenRelation

    return RelationSet("a cat to the left of a dog", (TokenRelation("cat", "left", "dog", (2,), (8,)),))


def build(kind: str):
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models

    common = dict(in_channels=4, out_channels=4, image_size=32, model_channels=64, channel_mult=[1, 2, 4],
                  num_res_blocks=[1, 1, 1], use_spatial_transformer=True, legacy=False,
                  use_linear_in_transformer=True, use_temporal_attention=False, use_temporal_resblock=False,
                  num_heads=-1, num_head_channels=32)
    if kind == "sdxl":
        cfg = dict(common, context_dim=2048, adm_in_channels=2816, num_classes="sequential", transformer_depth=[0, 1, 2],
                   transformer_depth_output=[0, 0, 1, 1, 2, 2], transformer_depth_middle=2)
        model = comfy.supported_models.SDXL(cfg).get_model({}, device="cpu")
        ctx, extra = 2048, {"pooled_output": torch.randn(1, 1280, generator=torch.Generator().manual_seed(1)),
                            "width": 256, "height": 256}
    else:
        cfg = dict(common, context_dim=1024, adm_in_channels=None, transformer_depth=[1, 1, 1],
                   transformer_depth_output=[1, 1, 1, 1, 1, 1], transformer_depth_middle=1)
        model = comfy.model_base.BaseModel(comfy.supported_models.SD20(cfg),
                                           model_type=comfy.model_base.ModelType.V_PREDICTION, device="cpu")
        ctx, extra = 1024, {}
    _init(model.diffusion_model, torch.Generator().manual_seed(0))
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"),
                                               offload_device=torch.device("cpu"))
    g = torch.Generator().manual_seed(2)
    cond = [[torch.randn(1, 77, ctx, generator=g), dict(extra)]]
    neg = [[torch.zeros(1, 77, ctx), dict(extra)]]
    return patcher, cond, neg


@pytest.mark.parametrize("kind,family", [("sdxl", "sdxl"), ("sd2", "sd2")])
def test_guidance_on_family_layouts(host, kind, family):
    patch = host.patch
    with torch.inference_mode():
        model, cond, neg = build(kind)
    assert patch.model_family(model) == family
    targets = patch.target_layers(model.model.diffusion_model, "auto")
    if kind == "sdxl":  # coarsest encoder level (latent/4) holds input 2-deep stacks and the middle block
        assert {("input", 5, 1), ("middle", 0, 1), ("output", 0, 1), ("output", 1, 1)} <= set(targets)
        assert not any(b == "input" and n < 5 for b, n, _ in targets)
    with torch.inference_mode():
        guided, run = host.guidance.PoSGuidance.execute(model, relations(), 20.0, 0.5, -1.0, True, "auto").result
    assert run.settings.loss_scale == (1000.0 if family == "sdxl" else 1.0)
    old_neg = host.neg
    host.neg = neg
    try:
        out = sample(host, guided, cond, seed=0, steps=4, cfg=5.0)
    finally:
        host.neg = old_neg
    assert torch.isfinite(out).all()
    assert sorted(run.deltas) == [0, 1] and float(run.deltas[0].abs().max()) > 0
    assert sorted(run.maps) == [0, 1, 2, 3] and run.maps[0].shape[-1] == 8  # 32 / 4
