"""The effect testbed's LLM-encoder model: Z-Image's architecture (ComfyUI's own NextDiT: refiners, then
single-stream layers over the caption padded to a multiple of 32, then the image) with a causal LLM text
encoder behind ComfyUI's own Z-Image tokenizer and chat template (ComfyUI 0.33+).

The text encoder is ComfyUI's Qwen3 class (the one Z-Image's 4 B encoder is built from) at a tiny width (3 layers,
256 wide, its real 151,936-token vocabulary and tokenizer), seeded and frozen, read at its second-to-last layer as
Z-Image reads it. `encoder` "mixing" keeps it causal as it is: every token mixes the tokens before it, as a
real LLM encoder does; "isolated" zeroes each attention output projection (tokens do not mix), the contrast the
UNet testbed found decisive (shared/TESTBED.md). The scenes, captions and latents are the UNet testbed's (SD1
latent space, 4 x 16 x 16, patchified 2 x 2 into 8 x 8 image tokens); sampling is FLOW, shift 1. Loaded
in-process: the MODEL from the trained transformer, the CLIP as ComfyUI's own CLIP object over the tokenizer and
encoder, the VAE from an SD1 testbed file built beside it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import comfy.latent_formats
import comfy.model_management
import comfy.model_patcher
import comfy.supported_models
import torch

import comfy_host
import testbed
from comfy_host import _init

# Z-Image's NextDiT layout (refiners, single-stream layers, caption and image padded to multiples of 32 with
# learned tokens) at width 128; Z-Image's own modulation needs a width of at least 256 (4x the cost per step on
# these CPUs), so the layers take Lumina 2's adaLN instead: the attention guidance reads is the same
ZIMAGE = dict(image_model="lumina2", patch_size=2, in_channels=4, dim=128, cap_feat_dim=256, n_layers=2,
              n_refiner_layers=1, n_heads=4, n_kv_heads=4, qk_norm=True, axes_dims=[8, 12, 12],
              axes_lens=[1536, 512, 512], rope_theta=256.0, ffn_dim_multiplier=8 / 3, z_image_modulation=False,
              time_scale=1000.0, pad_tokens_multiple=32)
# the text encoder: ComfyUI's Qwen3 config with these fields changed (head_dim stays 128: 2 heads x 128 = 256)
TE = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 3, "num_attention_heads": 2,
      "num_key_value_heads": 2}


def _zimage_class():
    base = getattr(comfy.supported_models, "ZImage", None)
    if base is None:
        raise RuntimeError("the Z-Image testbed needs ComfyUI 0.33+ (supported_models.ZImage)")

    class PoSTestbedZImage(base):
        """Z-Image's model class and FLOW sampling (shift 1), in SD1's 4-channel latent space."""

        latent_format = comfy.latent_formats.SD15
        sampling_settings = {"multiplier": 1.0, "shift": 1.0}

    return PoSTestbedZImage


def te_class():
    """The tiny Qwen3 text encoder as a ComfyUI text-encoder class (Z-Image's, at TE's sizes)."""
    import comfy.text_encoders.z_image as z_image

    class TinyQwen3(z_image.Qwen3_4BModel):
        def __init__(self, device="cpu", layer="hidden", layer_idx=-2, dtype=None, attention_mask=True, model_options={}):
            import comfy.sd1_clip
            import comfy.text_encoders.llama

            comfy.sd1_clip.SDClipModel.__init__(
                self, device=device, layer=layer, layer_idx=layer_idx, textmodel_json_config=dict(TE), dtype=dtype,
                special_tokens={"pad": 151643}, layer_norm_hidden_state=False,
                model_class=comfy.text_encoders.llama.Qwen3_4B, enable_attention_masks=attention_mask,
                return_attention_masks=attention_mask, model_options=model_options)

    class TinyZImageTE(z_image.ZImageTEModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            import comfy.sd1_clip

            comfy.sd1_clip.SD1ClipModel.__init__(self, device=device, dtype=dtype, name="qwen3_4b", clip_model=TinyQwen3,
                                                 model_options=model_options)

    return TinyZImageTE


def te_state_dict(encoder: str, seed: int, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Seeded weights for the encoder (the fixtures' rule: N(0, 0.02) matrices, unit norms); "isolated": every
    attention output projection zeroed, so no token reads another."""
    if encoder not in ("isolated", "mixing"):
        raise ValueError(f"encoder must be 'isolated' or 'mixing', got {encoder!r}")
    gen = torch.Generator().manual_seed(seed + 7)
    sd = {k: comfy_host.seeded(k, s, gen) for k, s in shapes.items()}
    if encoder == "isolated":
        for k in sd:
            if k.endswith("self_attn.o_proj.weight"):
                sd[k] = torch.zeros_like(sd[k])
    return sd


def make_clip(encoder: str, seed: int):
    """ComfyUI's CLIP object over Z-Image's tokenizer and the tiny encoder, with the seeded weights."""
    import comfy.sd
    import comfy.text_encoders.z_image as z_image

    class Target:
        params = {}
        clip = te_class()
        tokenizer = z_image.ZImageTokenizer

    clip = comfy.sd.CLIP(Target, model_options={"dtype": torch.float32})
    inner = clip.cond_stage_model.qwen3_4b.transformer
    shapes = {k: v.shape for k, v in inner.state_dict().items()}
    clip.load_sd(te_state_dict(encoder, seed, shapes))
    return clip


def checkpoint_path(cfg: testbed.Config, cache: Path = testbed.CACHE) -> Path:
    return cache / f"{cfg.key().replace('pos_testbed_', 'pos_testbed_zimage_', 1)}.safetensors"


def build(seed: int):
    """The Z-Image transformer, seeded (ComfyUI allocates its pad tokens empty: seeded too)."""
    model = _zimage_class()(dict(ZIMAGE)).get_model({}, device="cpu")
    _init(model.diffusion_model, torch.Generator().manual_seed(seed))
    return model


def companion(path: Path, cfg: testbed.Config) -> Path:
    """An SD1-family testbed file (its VAE is what the Z-Image testbed decodes with)."""
    out = path.with_name(path.stem + ".vae.safetensors")
    return out if out.exists() else testbed.write_sd1(out, cfg)


def contexts(cfg: testbed.Config, cache: Path) -> list[torch.Tensor]:
    """Every training caption's (and, last, the empty prompt's) encoding through the template and the tiny
    encoder, as ComfyUI encodes a prompt for Z-Image: [L, 256] each, L varying with the caption (no padding)."""
    import hashlib

    texts = [c[0] for c in testbed.captions(cfg)] + [""]
    tag = hashlib.sha1(json.dumps([cfg.encoder, cfg.seed, testbed.VERSION, TE, texts]).encode()).hexdigest()[:12]
    ctx_file = cache / f"contexts_zimage_{cfg.encoder}_{tag}.pt"
    if ctx_file.exists():
        return torch.load(ctx_file)
    clip = make_clip(cfg.encoder, cfg.seed)
    out = []
    with torch.inference_mode():
        for t in texts:
            cond = clip.encode_from_tokens_scheduled(clip.tokenize(t))
            out.append(cond[0][0][0].float().clone())
    out = [c.clone() for c in out]
    cache.mkdir(parents=True, exist_ok=True)
    tmp = ctx_file.with_suffix(f".tmp{os.getpid()}")
    torch.save(out, tmp)
    tmp.replace(ctx_file)
    return out


def _batch(cfg: testbed.Config, caps, ctx: list[torch.Tensor], gen: torch.Generator):
    """A training batch as the UNet testbed draws it (its scenes, the empty prompt at cfg.dropout), with each
    row's caption index; rows grouped by caption length (the model pads each caption itself)."""
    x0, c = testbed.sample_batch(cfg, caps, torch.arange(len(ctx), dtype=torch.float32).view(-1, 1), gen)
    idx = c[:, 0].long()
    groups: dict[int, list[int]] = {}
    for row, i in enumerate(idx.tolist()):
        groups.setdefault(int(ctx[i].shape[0]), []).append(row)
    return x0, idx, groups


def train(cfg: testbed.Config, cache: Path = testbed.CACHE, progress: Callable[[int, int, float], None] | None = None,
          time_limit: float | None = None) -> testbed.TrainReport:
    """Rectified flow on the testbed's scenes, as the Flux testbed trains: x_t = (1 - t) x0 + t eps, the model
    predicts eps - x0, t logit-normal; each caption length its own forward (the model pads captions itself)."""
    path = checkpoint_path(cfg, cache)
    if path.exists():
        meta = json.loads(path.with_suffix(".json").read_text())
        return testbed.TrainReport(str(path), float(meta["seconds"]), int(meta["steps"]), meta["losses"])
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.time()
    ctx = contexts(cfg, cache)
    caps = testbed.captions(cfg)
    net = build(cfg.seed).diffusion_model
    differentiable = comfy_host.load_pack().nodes.families.base.differentiable
    params = list(net.parameters())
    for p in params:  # ComfyUI 0.33 builds parameters with requires_grad off
        p.requires_grad_(True)
    opt, sched = testbed.optimizer(params, cfg)
    net.train()
    losses: list[float] = []
    steps_done = 0
    for step in range(cfg.steps):
        x0, idx, groups = _batch(cfg, caps, ctx, gen)
        t = torch.sigmoid(torch.randn(cfg.batch, generator=gen))
        eps = torch.randn(x0.shape, generator=gen)
        tt = t.view(-1, 1, 1, 1)
        xt = (1 - tt) * x0 + tt * eps
        opt.zero_grad(set_to_none=True)
        total = 0.0
        with differentiable():  # ComfyUI 0.33's training flag: its fused rms-norm + rope has no backward
            for length, rows in groups.items():
                r = torch.tensor(rows)
                c = torch.stack([ctx[int(idx[i])] for i in rows])
                pred = net(xt[r], t[r], c, num_tokens=length)
                loss = torch.nn.functional.mse_loss(pred, (eps - x0)[r]) * len(rows) / cfg.batch
                loss.backward()
                total += float(loss)
        opt.step()
        sched.step()
        losses.append(total)
        steps_done = step + 1
        if progress is not None:
            progress(steps_done, cfg.steps, losses[-1])
        if time_limit is not None and time.time() - start > time_limit:
            break
    seconds = time.time() - start
    meta = {"pos_testbed": testbed.VERSION, "arch": "zimage", "zimage": ZIMAGE, "te": TE, "config": asdict(cfg),
            "seconds": round(seconds, 1), "steps": steps_done, "losses": testbed.loss_curve(losses)}
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({f"model.diffusion_model.{k}": v.float().contiguous() for k, v in net.state_dict().items()}, str(tmp),
              metadata={"pos_testbed": testbed.VERSION, "arch": "zimage"})
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return testbed.TrainReport(str(path), seconds, steps_done, meta["losses"])


def load(path: Path):
    """(MODEL, CLIP, VAE): the trained Z-Image testbed, its tokenizer + encoder as ComfyUI's CLIP, the SD1 VAE."""
    from safetensors.torch import load_file

    meta = json.loads(path.with_suffix(".json").read_text())
    cfg = testbed.Config(**meta["config"])
    model = build(cfg.seed)
    prefix = "model.diffusion_model."
    sd = {k[len(prefix):]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    model.diffusion_model.load_state_dict(sd)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                               offload_device=comfy.model_management.unet_offload_device())
    _, _, vae = testbed.load(companion(path, cfg))
    return patcher, make_clip(cfg.encoder, cfg.seed), vae
