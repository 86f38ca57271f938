"""Tiny (and real-width, reduced-depth) random-weight Flux.1 and SD3 models for host tests and benchmarks.

SD3 goes through ComfyUI's own detection (`comfy.sd.load_diffusion_model_state_dict`); Flux detection
hard-codes the full model's width, so Flux is built from ComfyUI's model classes with explicit small
parameters. Weights are seeded N(0, 0.02), so runs are reproducible; no file is written.
"""

from __future__ import annotations

import torch

from comfy_host import _init

FLUX_TINY = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
                 hidden_size=64, mlp_ratio=4.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12],
                 theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True)
FLUX_WIDE = dict(FLUX_TINY, hidden_size=3072, num_heads=24, depth=2, depth_single_blocks=4, axes_dim=[16, 56, 56])


def flux_config(cfg: dict) -> dict:
    """A Flux.1 config for this ComfyUI's FluxParams: newer ComfyUI (0.33) added the required `txt_ids_dims`
    (which text-id axes carry positions; [] for Flux.1, as its model detection sets), older ones lack it."""
    import dataclasses

    import comfy.ldm.flux.model

    fields = {f.name for f in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}
    return dict(cfg, txt_ids_dims=[]) if "txt_ids_dims" in fields and "txt_ids_dims" not in cfg else dict(cfg)


def _patcher(model):
    import comfy.model_patcher

    cpu = torch.device("cpu")
    dev = torch.device("cuda") if torch.cuda.is_available() else cpu
    return comfy.model_patcher.ModelPatcher(model, load_device=dev, offload_device=cpu)


def flux(schnell: bool = False, wide: bool = False, seed: int = 0, dtype: torch.dtype = torch.float32, **over):
    """A random Flux.1 (dev: guidance embedding, FLUX sampling; schnell: none, FLOW sampling) as a MODEL.
    fp8 weights are stored as such and computed in fp32 through ComfyUI's manual cast, as it loads them."""
    import comfy.supported_models

    cfg = dict(FLUX_WIDE if wide else FLUX_TINY, **over)
    cls = comfy.supported_models.FluxSchnell if schnell else comfy.supported_models.Flux
    cfg["guidance_embed"] = not schnell
    conf = cls(flux_config(cfg))
    fp8 = dtype in (torch.float8_e4m3fn, torch.float8_e5m2)
    conf.set_inference_dtype(dtype, torch.float32 if fp8 else None)
    model = conf.get_model({}, device="cpu")
    _init(model.diffusion_model, torch.Generator().manual_seed(seed))
    return _patcher(model)


def flux2(seed: int = 0):
    """A tiny random Flux.2 MODEL from ComfyUI's own supported_models.Flux2 (the config its detection gives a
    Flux.2 file, at width 64); ComfyUI without Flux.2 (0.3.x): pytest skips."""
    import comfy.supported_models
    import pytest

    if not hasattr(comfy.supported_models, "Flux2"):
        pytest.skip("this ComfyUI has no Flux.2 (supported_models.Flux2, ComfyUI 0.33+)")
    cfg = dict(image_model="flux2", in_channels=128, out_channels=128, vec_in_dim=None, context_in_dim=64,
               hidden_size=64, mlp_ratio=3.0, num_heads=2, depth=1, depth_single_blocks=1, axes_dim=[8, 8, 8, 8],
               theta=2000, patch_size=1, qkv_bias=False, guidance_embed=True, global_modulation=True,
               mlp_silu_act=True, ops_bias=False, default_ref_method="index", ref_index_scale=10.0,
               txt_ids_dims=[3])
    model = comfy.supported_models.Flux2(cfg).get_model({}, device="cpu")
    _init(model.diffusion_model, torch.Generator().manual_seed(seed))
    return _patcher(model)


def _family_model(cls_name: str, cfg: dict, seed: int, since: str = "0.33"):
    """A tiny random MODEL from ComfyUI's own supported_models.<cls_name> built with `cfg` (all parameters
    seeded; several are allocated empty); pytest skips on a ComfyUI without that class."""
    import comfy.supported_models
    import pytest

    cls = getattr(comfy.supported_models, cls_name, None)
    if cls is None:
        pytest.skip(f"this ComfyUI has no {cls_name} (supported_models.{cls_name}, ComfyUI {since}+)")
    conf = cls(cfg)
    conf.set_inference_dtype(torch.float32, None)
    model = conf.get_model({}, device="cpu")
    _init(model.diffusion_model, torch.Generator().manual_seed(seed))
    return _patcher(model)


def klein(seed: int = 0):
    """A tiny random Flux.2 klein MODEL (no guidance embedding), from supported_models.Flux2."""
    cfg = dict(image_model="flux2", in_channels=128, out_channels=128, vec_in_dim=None, context_in_dim=64,
               hidden_size=64, mlp_ratio=3.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 8, 8, 8],
               theta=2000, patch_size=1, qkv_bias=False, guidance_embed=False, global_modulation=True,
               mlp_silu_act=True, ops_bias=False, default_ref_method="index", ref_index_scale=10.0,
               txt_ids_dims=[3])
    return _family_model("Flux2", cfg, seed)


def chroma(seed: int = 0):
    """A tiny random Chroma MODEL (19 + 38 blocks cut to 2 + 2, width 64) from supported_models.Chroma."""
    cfg = dict(image_model="chroma", in_channels=64, out_channels=64, context_in_dim=4096, hidden_size=64,
               mlp_ratio=4.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12], theta=10000,
               patch_size=2, qkv_bias=True, in_dim=64, out_dim=64, hidden_dim=64, n_layers=1, guidance_embed=False)
    import dataclasses

    import comfy.ldm.chroma.model as chroma_model

    fields = {f.name for f in dataclasses.fields(chroma_model.ChromaParams)}
    cfg = {k: v for k, v in dict(cfg, txt_ids_dims=[], vec_in_dim=None).items() if k in fields or k == "image_model"}
    return _family_model("Chroma", cfg, seed, "0.3.40")


def qwen_image(seed: int = 0, layers: int = 4):
    """A tiny random Qwen-Image MODEL (60 blocks cut to `layers`, 2 heads x 32) from supported_models.QwenImage."""
    cfg = dict(image_model="qwen_image", patch_size=2, in_channels=64, out_channels=16, num_layers=layers,
               attention_head_dim=32, num_attention_heads=2, joint_attention_dim=64, axes_dims_rope=(8, 12, 12))
    return _family_model("QwenImage", cfg, seed, "0.3.50")


def z_image(seed: int = 0, layers: int = 4):
    """A tiny random Z-Image MODEL (NextDiT, 30 layers cut to `layers`, width 256: its modulation needs 256)
    from supported_models.ZImage."""
    cfg = dict(image_model="lumina2", patch_size=2, in_channels=16, dim=256, cap_feat_dim=64, n_layers=layers,
               n_refiner_layers=1, n_heads=8, n_kv_heads=8, qk_norm=True, axes_dims=[8, 12, 12],
               axes_lens=[1536, 512, 512], rope_theta=256.0, ffn_dim_multiplier=8 / 3, z_image_modulation=True,
               time_scale=1000.0, pad_tokens_multiple=32)
    return _family_model("ZImage", cfg, seed, "0.33")


FAMILY_TEXT = {"flux2": (64, 3.5), "klein": (64, None), "chroma": (4096, None), "qwen_image": (64, None),
               "z_image": (64, None)}  # text width of the tiny models, distilled guidance in the cond


def family_conds(family: str, tokens: int = 24, seed: int = 2):
    """(positive, negative) CONDITIONING for a tiny model of a 2026 family: random text features."""
    g = torch.Generator().manual_seed(seed)
    width, guidance = FAMILY_TEXT[family]
    extra = {} if guidance is None else {"guidance": guidance}
    if family == "chroma":
        extra["pooled_output"] = None  # what ComfyUI's T5-only text encode gives (0.3.x's Chroma reads the key)
    pos = [[torch.randn(1, tokens, width, generator=g), dict(extra)]]
    neg = [[torch.zeros(1, tokens, width), dict(extra)]]
    return pos, neg


def sd3_state_dict(depth: int = 2, self_attn: tuple[int, ...] = (0,), qk_norm: str | None = "rms", seed: int = 0,
                   num_blocks: int | None = None, context_dim: int = 4096, pooled_dim: int = 2048) -> dict:
    """State dict of a random MMDiT in SD3 / SD3.5 layout (hidden 64 x depth, depth heads; SD3.5-medium style
    attn2 in `self_attn` blocks and RMS qk-norm). context_dim / pooled_dim 768: text from an SD1 CLIP."""
    import comfy.supported_models

    cfg = {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": depth, "pos_embed_max_size": 32,
           "num_patches": 1024, "adm_in_channels": pooled_dim, "pos_embed_scaling_factor": None, "input_size": None,
           "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": context_dim,
                                                                               "out_features": 64 * depth}},
           "x_block_self_attn_layers": list(self_attn), "qk_norm": qk_norm}
    if num_blocks is not None:
        cfg["num_blocks"] = num_blocks
    model = comfy.supported_models.SD3(cfg).get_model({}, device="cpu")
    gen = torch.Generator().manual_seed(seed)
    _init(model.diffusion_model, gen)
    with torch.no_grad():  # a buffer ComfyUI allocates empty (real files hold it): seeded too, or runs differ
        model.diffusion_model.pos_embed.copy_(torch.randn(model.diffusion_model.pos_embed.shape, generator=gen) * 0.02)
    return model.diffusion_model.state_dict()


def sd3(seed: int = 0, dtype: torch.dtype | None = None, **kw):
    """A random SD3 / SD3.5 MODEL loaded through ComfyUI's detection (Load Diffusion Model's path)."""
    import comfy.sd

    opts = {"dtype": dtype} if dtype is not None else {}
    return comfy.sd.load_diffusion_model_state_dict(sd3_state_dict(seed=seed, **kw), model_options=opts)


def sd3_wide(seed: int = 0):
    """SD3.5-medium width (hidden 1536, 24 heads, attn2 in the first blocks) with 4 blocks, from the classes."""
    import comfy.supported_models

    cfg = {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 24, "num_blocks": 4,
           "pos_embed_max_size": 96, "num_patches": 9216, "adm_in_channels": 2048, "pos_embed_scaling_factor": None,
           "input_size": None, "context_embedder_config": {"target": "torch.nn.Linear",
                                                            "params": {"in_features": 4096, "out_features": 1536}},
           "x_block_self_attn_layers": [0, 1, 2], "qk_norm": "rms"}
    conf = comfy.supported_models.SD3(cfg)
    conf.set_inference_dtype(torch.float32, None)
    model = conf.get_model({}, device="cpu")
    _init(model.diffusion_model, torch.Generator().manual_seed(seed))
    return _patcher(model)


def conds(family: str, tokens: int | None = None, seed: int = 2, guidance: float | None = 3.5):
    """(positive, negative) CONDITIONING of the right shapes for `family` ("flux" or "sd3"), random text."""
    g = torch.Generator().manual_seed(seed)
    t = tokens or (256 if family == "flux" else 154)
    pooled = 768 if family == "flux" else 2048
    extra = {"pooled_output": torch.randn(1, pooled, generator=g)}
    if family == "flux" and guidance is not None:
        extra["guidance"] = guidance
    pos = [[torch.randn(1, t, 4096, generator=g), dict(extra)]]
    neg = [[torch.zeros(1, t, 4096), {k: torch.zeros_like(v) if torch.is_tensor(v) else v for k, v in extra.items()}]]
    return pos, neg
