"""Random-weight files under the official Flux.1-dev and SD3.5-medium names, for running the shipped DiT
workflows through the stock loaders (UNETLoader, DualCLIPLoader, TripleCLIPLoader, VAELoader,
CheckpointLoaderSimple) on the CPU.

The stock loaders fix most shapes whatever a file holds: Flux detection fixes width 3072 (so the Flux
file has that width, with one double and one single block), and T5-XXL, CLIP-L and CLIP-G are built
from ComfyUI's fixed configs (so those files are full size: T5-XXL is 4.7 B parameters, stored as fp8,
4.8 GB). SD3 detection reads the width, so the SD3.5 checkpoint is tiny. Weights are seeded
N(0, 0.02) matrices, unit norms, zero biases; files are cached outside the repository (POS_TEST_CACHE)
and never committed. Run `python tests/dit_files.py` to build them ahead of a test run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_host import CACHE, seeded  # noqa: E402

VERSION = "2"  # 2: the SD3.5 file's pos_embed seeded (was uninitialised memory)
# files rebuilt since, each in a folder of its own version (the others are not rebuilt)
FILE_VERSIONS = {"flux1-dev.safetensors": "3"}  # 3: q/k norms named `.scale`, as the official file (ComfyUI 0.33's
                                                # classes name them `.weight`, which 0.3.64's detection rejects)
DIR = CACHE / "dit_files"
# official file name -> (models/ folder, builder name)
FILES = {
    "flux1-dev.safetensors": ("diffusion_models", "flux_dev"),
    "ae.safetensors": ("vae", "flux_vae"),
    "clip_l.safetensors": ("text_encoders", "clip_l"),
    "clip_g.safetensors": ("text_encoders", "clip_g"),
    "t5xxl_fp16.safetensors": ("text_encoders", "t5xxl"),
    "sd3.5_medium.safetensors": ("checkpoints", "sd35_medium"),
    "Chroma1-HD.safetensors": ("diffusion_models", "chroma_hd"),
    "z_image_turbo_bf16.safetensors": ("diffusion_models", "z_image_turbo"),
    "qwen_3_4b.safetensors": ("text_encoders", "qwen3_4b"),
    "qwen_image_fp8_e4m3fn.safetensors": ("diffusion_models", "qwen_image_dit"),
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": ("text_encoders", "qwen25_vl_7b"),
    "qwen_image_vae.safetensors": ("vae", "qwen_image_vae"),
}
# files of families a ComfyUI may lack (Z-Image: 0.33+): built and linked only where its classes exist
NEEDS = {"z_image_turbo_bf16.safetensors": "ZImage", "qwen_3_4b.safetensors": "ZImage",
         "qwen_image_fp8_e4m3fn.safetensors": "QwenImage", "qwen_2.5_vl_7b_fp8_scaled.safetensors": "QwenImage",
         "qwen_image_vae.safetensors": "QwenImage"}
VAE16 = {"double_z": True, "z_channels": 16, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
         "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def _random(shapes: dict[str, torch.Size], seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Seeded weights (the fixtures' rule) for parameter `shapes`, one tensor at a time, cast to `dtype`:
    shapes, not modules, since a full-size T5-XXL in fp32 would not fit in memory."""
    gen = torch.Generator().manual_seed(seed)
    return {name: seeded(name, shape, gen).to(dtype).contiguous() for name, shape in shapes.items()}


def _shapes(module: torch.nn.Module) -> dict[str, torch.Size]:
    return {k: p.shape for k, p in module.named_parameters()}


def t5xxl() -> dict:
    """T5-XXL encoder in ComfyUI's layout, fp8 e4m3fn (the dtype ComfyUI keeps, as for t5xxl_fp8 files)."""
    import json

    import comfy.ops
    import comfy.text_encoders.t5 as t5

    cfg = json.loads((Path(t5.__file__).parent / "t5_config_xxl.json").read_text())
    with torch.device("meta"):
        model = t5.T5(cfg, torch.float32, "meta", comfy.ops.manual_cast)
    return _random(_shapes(model), 11, torch.float8_e4m3fn)


def _clip(seed: int, **cfg) -> dict:
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    with torch.device("meta"):
        model = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, **cfg))
    return _random(_shapes(model), seed, torch.float16)


def clip_l() -> dict:
    return _clip(12, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 projection_dim=768, hidden_act="quick_gelu")


def clip_g() -> dict:
    return _clip(13, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                 projection_dim=1280, hidden_act="gelu")


def _vae16(seed: int) -> dict:
    from comfy.ldm.models.autoencoder import AutoencodingEngine

    with torch.device("meta"):
        vae = AutoencodingEngine(
            regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
            encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": VAE16},
            decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": VAE16})
    return _random(_shapes(vae), seed, torch.float16)


def flux_vae() -> dict:
    return _vae16(14)


def flux_dev() -> dict:
    """Flux.1-dev at its real width (3072, 24 heads; what detection assumes) with 1 double + 1 single block."""
    import comfy.supported_models
    from dit_fixtures import FLUX_WIDE, flux_config

    conf = comfy.supported_models.Flux(flux_config(dict(FLUX_WIDE, depth=1, depth_single_blocks=1, guidance_embed=True)))
    with torch.device("meta"):
        model = conf.get_model({}, device="meta")
    sd = _random(_shapes(model.diffusion_model), 15, torch.bfloat16)
    # the official layout: RMSNorm `scale` (ComfyUI 0.33's own RMSNorm says `weight`; both versions load `scale`)
    return {k[:-len(".weight")] + ".scale" if k.endswith(("query_norm.weight", "key_norm.weight")) else k: v
            for k, v in sd.items()}


def _rms_scale(sd: dict) -> dict:
    """RMSNorm weights under the official files' `.scale` names (ComfyUI 0.33's classes say `.weight`; both
    versions load `.scale`, 0.3.64's detection needs it)."""
    import re

    return {re.sub(r"(query_norm|key_norm|norms\.\d+)\.weight$", r"\1.scale", k): v for k, v in sd.items()}


def chroma_hd() -> dict:
    """Chroma1-HD at its real width (3072, 24 heads; detection fixes the approximator) with 1 double + 1 single."""
    import comfy.supported_models
    from dit_fixtures import flux_config

    cfg = dict(image_model="chroma", in_channels=64, out_channels=64, context_in_dim=4096, hidden_size=3072,
               mlp_ratio=4.0, num_heads=24, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56], theta=10000,
               patch_size=2, qkv_bias=True, in_dim=64, out_dim=3072, hidden_dim=5120, n_layers=5)
    import dataclasses

    import comfy.ldm.chroma.model as chroma_model

    fields = {f.name for f in dataclasses.fields(chroma_model.ChromaParams)}
    cfg = {k: v for k, v in flux_config(dict(cfg, vec_in_dim=None)).items() if k in fields or k == "image_model"}
    with torch.device("meta"):
        model = comfy.supported_models.Chroma(cfg).get_model({}, device="meta")
    return _rms_scale(_random(_shapes(model.diffusion_model), 18, torch.bfloat16))


def z_image_turbo() -> dict:
    """Z-Image-Turbo at its real width (3840, 30 heads; what detection assumes) with 2 main layers (detection reads
    the second-to-last) and its 2 + 2 refiner layers."""
    import comfy.supported_models

    cfg = dict(image_model="lumina2", patch_size=2, in_channels=16, dim=3840, cap_feat_dim=2560, n_layers=2,
               n_heads=30, n_kv_heads=30, qk_norm=True, axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512],
               rope_theta=256.0, ffn_dim_multiplier=8 / 3, z_image_modulation=True, time_scale=1000.0,
               pad_tokens_multiple=32)
    with torch.device("meta"):
        model = comfy.supported_models.ZImage(cfg).get_model({}, device="meta")
    return _random(_shapes(model.diffusion_model), 19, torch.bfloat16)


def qwen3_4b() -> dict:
    """Qwen3-4B (Z-Image's and Flux.2 klein 4B's text encoder) in ComfyUI's layout: ComfyUI builds it from a
    fixed config, so the file is full size (4 B parameters), stored as fp8 e4m3fn (4 GB), norms at 1."""
    import comfy.ops
    import comfy.text_encoders.llama as llama

    with torch.device("meta"):
        model = llama.Qwen3_4B({}, torch.float32, "meta", comfy.ops.manual_cast)
    shapes = _shapes(model)
    sd = _random({k: v for k, v in shapes.items() if "norm" not in k}, 20, torch.float8_e4m3fn)
    sd.update({k: torch.ones(v, dtype=torch.bfloat16) for k, v in shapes.items() if "norm" in k})
    return sd


def qwen_image_dit() -> dict:
    """Qwen-Image at its real width (24 heads x 128, text 3584; detection counts only the blocks) with 1 block."""
    import comfy.supported_models

    cfg = dict(image_model="qwen_image", patch_size=2, in_channels=64, out_channels=16, num_layers=1,
               attention_head_dim=128, num_attention_heads=24, joint_attention_dim=3584, axes_dims_rope=(16, 56, 56))
    with torch.device("meta"):
        model = comfy.supported_models.QwenImage(cfg).get_model({}, device="meta")
    return _random(_shapes(model.diffusion_model), 21, torch.bfloat16)


def qwen25_vl_7b() -> dict:
    """Qwen2.5-VL 7B's language model (Qwen-Image's text encoder) in ComfyUI's layout: built from a fixed config,
    so full size (7.1 B parameters, fp8 e4m3fn, 7.6 GB); the vision tower, unused for text, is left out."""
    import comfy.ops
    import comfy.text_encoders.llama as llama

    with torch.device("meta"):
        model = llama.Qwen25_7BVLI({}, torch.float32, "meta", comfy.ops.manual_cast)
    shapes = {k: v for k, v in _shapes(model).items() if not k.startswith("visual.")}
    sd = _random({k: v for k, v in shapes.items() if "norm" not in k and not k.endswith("bias")}, 22,
                 torch.float8_e4m3fn)
    sd.update({k: (torch.ones(v) if "norm" in k else torch.zeros(v)).to(torch.bfloat16)
               for k, v in shapes.items() if "norm" in k or k.endswith("bias")})
    return sd


def qwen_image_vae() -> dict:
    """The Wan 2.1 VAE layout Qwen-Image uses (dim 96, z 16), fp16."""
    import comfy.ldm.wan.vae as wan_vae

    with torch.device("meta"):
        vae = wan_vae.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                             temperal_downsample=[False, True, True], dropout=0.0)
    return _random(_shapes(vae), 23, torch.float16)


def sd35_medium() -> dict:
    """A tiny MMDiT in SD3.5-medium layout (attn2 in block 0, RMS qk-norm) plus a 16-channel VAE, as the
    official single file holds them (no text encoders)."""
    from dit_fixtures import sd3_state_dict

    sd = {f"model.diffusion_model.{k}": v.to(torch.float16) for k, v in sd3_state_dict(depth=2, seed=16).items()}
    sd.update({f"first_stage_model.{k}": v for k, v in _vae16(17).items()})
    return sd


def build(name: str) -> Path:
    """The cached file `name` (one of FILES), built on first use."""
    from safetensors.torch import save_file

    path = DIR / FILE_VERSIONS.get(name, VERSION) / name
    if path.exists():
        return path
    sd = globals()[FILES[name][1]]()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(sd, str(tmp), metadata={"pos_fixture": "random weights, not a real model"})
    tmp.replace(path)
    return path


def available(name: str) -> bool:
    """Whether this ComfyUI has the model classes file `name` is built from."""
    import comfy.supported_models

    return name not in NEEDS or hasattr(comfy.supported_models, NEEDS[name])


def install(models: Path) -> None:
    """Link every file this ComfyUI can build into a ComfyUI models/ folder under its official name."""
    for name, (folder, _) in FILES.items():
        if not available(name):
            continue
        (models / folder).mkdir(parents=True, exist_ok=True)
        link = models / folder / name
        if not link.exists():
            link.symlink_to(build(name))


if __name__ == "__main__":
    import time

    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui:
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout (the files are built from its model classes)")
    sys.path.insert(0, comfyui)
    from comfy.cli_args import args

    args.cpu = args.cpu or not torch.cuda.is_available()
    for n in FILES:
        if not available(n):
            print(f"{n}: this ComfyUI lacks its classes")
            continue
        t = time.time()
        p = build(n)
        print(f"{n}: {p.stat().st_size / 1e9:.2f} GB, {time.time() - t:.0f} s")
