"""The effect testbed's Flux-family model: the same scenes, captions and frozen isolated CLIP-L as the UNet
testbed (benchmarks/testbed.py), learned by a small Flux.1 transformer (ComfyUI's own class: double- and
single-stream joint attention, RoPE, rectified flow), so PoS Guidance's DiT path (joint-attention maps,
the flow-matching update) is measured on a model that has learned something.

The text stream is the CLIP-L context (77 tokens, as an SD1 checkpoint encodes it) instead of T5-XXL: a
random T5-XXL mixes its tokens (the testbed's finding: then guidance has no lever) and costs 24 s a prompt
on a CPU. The pooled vector is not used (vector_in is zero and frozen), so only token attention can say
where the objects go. Latents are the UNet testbed's (SD1 latent space, 4 x 16 x 16), patchified 2 x 2
into an 8 x 8 image stream; sampling is FLOW (schnell's), shift 1. Loaded in-process (no stock loader
detects a 128-wide Flux), with CLIP and VAE from an SD1 checkpoint built beside it.
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

import testbed
import comfy_host
from comfy_host import _init
from dit_fixtures import flux_config

FLUX = dict(image_model="flux", in_channels=4, out_channels=4, vec_in_dim=768, context_in_dim=768, hidden_size=128,
            mlp_ratio=4.0, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[16, 24, 24], theta=10000,
            patch_size=2, qkv_bias=True, guidance_embed=False)


class PoSTestbedFlux(comfy.supported_models.FluxSchnell):
    """Flux.1 schnell's model class and FLOW sampling (shift 1), in SD1's 4-channel latent space."""

    latent_format = comfy.latent_formats.SD15
    sampling_settings = {"multiplier": 1.0, "shift": 1.0}


def checkpoint_path(cfg: testbed.Config, cache: Path = testbed.CACHE) -> Path:
    return cache / f"{cfg.key().replace('pos_testbed_', 'pos_testbed_flux_', 1)}.safetensors"


def build(seed: int):
    """The Flux transformer, seeded; vector_in zeroed (the pooled vector stays unused)."""
    model = PoSTestbedFlux(flux_config(FLUX)).get_model({}, device="cpu")
    net = model.diffusion_model
    _init(net, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for p in net.vector_in.parameters():
            p.zero_()
    return model


def companion(path: Path, cfg: testbed.Config) -> Path:
    """An SD1-family testbed file holding the same frozen CLIP-L and built VAE (and an untrained UNet),
    from which the Flux testbed's CLIP and VAE are loaded through ComfyUI's stock checkpoint loader."""
    out = path.with_name(path.stem + ".clip_vae.safetensors")
    return out if out.exists() else testbed.write_sd1(out, cfg)


def norm_names(sd: dict, want: set[str]) -> dict:
    """A checkpoint trained on either ComfyUI for this one's names: Flux's q/k RMSNorm weight is `.scale` in
    ComfyUI 0.3.x and `.weight` in 0.33 (operations.RMSNorm); the cached testbed serves both versions."""
    out = {}
    for k, v in sd.items():
        if k not in want and k.endswith(".scale") and k[:-6] + ".weight" in want:
            k = k[:-6] + ".weight"
        elif k not in want and k.endswith(".weight") and k[:-7] + ".scale" in want:
            k = k[:-7] + ".scale"
        out[k] = v
    return out


def load(path: Path):
    """(MODEL, CLIP, VAE): the trained Flux testbed as a MODEL, CLIP and VAE through the stock loader."""
    from safetensors.torch import load_file

    meta = json.loads(path.with_suffix(".json").read_text())
    cfg = testbed.Config(**meta["config"])
    model = build(cfg.seed)
    prefix = "model.diffusion_model."
    sd = {k[len(prefix):]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    model.diffusion_model.load_state_dict(norm_names(sd, set(model.diffusion_model.state_dict())))
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                               offload_device=comfy.model_management.unet_offload_device())
    _, clip, vae = testbed.load(companion(path, cfg))
    return patcher, clip, vae


def train(cfg: testbed.Config, cache: Path = testbed.CACHE, progress: Callable[[int, int, float], None] | None = None,
          time_limit: float | None = None) -> testbed.TrainReport:
    """Rectified flow on the testbed's scenes: x_t = (1 - t) x0 + t eps, the model predicts eps - x0, t
    logit-normal (as SD3 trains); the contexts are the UNet testbed's cached CLIP-L contexts."""
    path = checkpoint_path(cfg, cache)
    if path.exists():
        meta = json.loads(path.with_suffix(".json").read_text())
        return testbed.TrainReport(str(path), float(meta["seconds"]), int(meta["steps"]), meta["losses"])
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.time()
    ctx = testbed.contexts(cfg, cache, path)
    caps = testbed.captions(cfg)
    net = build(cfg.seed).diffusion_model
    differentiable = comfy_host.load_pack().nodes.families.base.differentiable
    params = [p for n, p in net.named_parameters() if not n.startswith("vector_in.")]
    for p in params:  # ComfyUI 0.33 builds parameters with requires_grad off
        p.requires_grad_(True)
    for p in net.vector_in.parameters():
        p.requires_grad_(False)
    opt, sched = testbed.optimizer(params, cfg)
    net.train()
    losses: list[float] = []
    y = torch.zeros(cfg.batch, FLUX["vec_in_dim"])
    steps_done = 0
    for step in range(cfg.steps):
        x0, c = testbed.sample_batch(cfg, caps, ctx, gen)
        t = torch.sigmoid(torch.randn(cfg.batch, generator=gen))
        eps = torch.randn(x0.shape, generator=gen)
        tt = t.view(-1, 1, 1, 1)
        # the stock blocks add to their streams in place: autograd's mutation mode clones what they overwrite;
        # differentiable(): ComfyUI 0.33's training flag, without which its Flux code is not differentiable
        with torch.autograd.graph.allow_mutation_on_saved_tensors(), differentiable():
            pred = net(((1 - tt) * x0 + tt * eps), t, c, y=y)
            loss = torch.nn.functional.mse_loss(pred, eps - x0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
        steps_done = step + 1
        if progress is not None:
            progress(steps_done, cfg.steps, losses[-1])
        if time_limit is not None and time.time() - start > time_limit:
            break
    seconds = time.time() - start
    meta = {"pos_testbed": testbed.VERSION, "arch": "flux", "flux": FLUX, "config": asdict(cfg),
            "seconds": round(seconds, 1), "steps": steps_done,
            "losses": testbed.loss_curve(losses)}
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({f"model.diffusion_model.{k}": v.float().contiguous() for k, v in net.state_dict().items()}, str(tmp),
              metadata={"pos_testbed": testbed.VERSION, "arch": "flux"})
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return testbed.TrainReport(str(path), seconds, steps_done, meta["losses"])
