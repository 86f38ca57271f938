"""The effect testbed: a small SD1-family text-to-latent model trained on synthetic two-object scenes.

Random-weight fixtures prove plumbing and maths; this model has *learned* what objects look like and,
partly, where the prompt puts them, so the pack's guidance and search can be measured on it. Scenes
live in SD1's latent space (4 x 16 x 16, 128 px images): each class is a constant latent vector on a
5 x 5 patch, two objects a scene placed by left / right / above / below. Text comes from a frozen,
seeded, random-weight CLIP-L (ComfyUI's SD1 CLIP), so PoS Relations from Prompt binds real token
indices. The VAE is built, not trained: its decoder maps each latent vector to a flat colour, so
images show the scene and objects are segmented exactly (by latent pattern, or by colour).

Used by benchmarks/effect.py (train / eval), its host test and the demo. Imports ComfyUI, so it lives
outside pos_core; the caller puts COMFYUI_PATH on sys.path and sets ComfyUI's --cpu flag first.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after ComfyUI: its `nodes` module must win over this pack's nodes/ folder
if str(ROOT / "tests") not in sys.path:
    sys.path.append(str(ROOT / "tests"))

from comfy_host import _init  # noqa: E402  (the seeded explicit init of the test fixtures, reused)

from pos_core.scenes import (  # noqa: E402  (the scenes are pure torch and live in pos_core)
    AMPLITUDE, CLASSES, LATENT, PATCH, RELATIONS, SCALE_FACTOR, TEMPLATES, class_vectors, colors, eval_cases,
    masks_of, pair_split, place, prompt, scene, scene3, segment, training_prompts, training_prompts3)

__all__ = ["AMPLITUDE", "CLASSES", "LATENT", "PATCH", "RELATIONS", "SCALE_FACTOR", "TEMPLATES", "class_vectors",
           "colors", "eval_cases", "masks_of", "pair_split", "place", "prompt", "scene", "segment",
           "training_prompts", "Config", "train", "load", "encode", "checkpoint_path"]

CACHE = Path(os.environ.get("POS_TESTBED_CACHE", Path.home() / ".cache" / "pos_spatial_testbed"))
VERSION = "1"


@dataclass
class Config:
    """What a testbed model is trained with (its hash names the cached checkpoint)."""

    encoder: str = "isolated"  # "isolated": CLIP with every self_attn.out_proj zeroed; "mixing": as is
    steps: int = 2400
    batch: int = 32
    lr: float = 1e-3
    relation_noise: float = 0.0  # fraction of training scenes placed at random whatever the caption says
    dropout: float = 0.1  # empty-prompt fraction, for classifier-free guidance
    channels: int = 64
    seed: int = 0
    init: str = ""  # continue from this testbed checkpoint's UNet (its file name enters the cache key)
    three: float = 0.0  # fraction of training scenes with three objects and two relations (scenes.scene3)

    def key(self) -> str:
        fields = {**asdict(self), "init": Path(self.init).name if self.init else "", "version": VERSION}
        if not self.three:  # fields added later enter the key only when set, so cached checkpoints keep their names
            del fields["three"]
        blob = json.dumps(fields, sort_keys=True)
        return f"pos_testbed_{self.encoder}_{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def checkpoint_path(cfg: Config, cache: Path = CACHE) -> Path:
    return cache / f"{cfg.key()}.safetensors"


# ----------------------------------------------------------------------------------- model weights

def unet_config(channels: int = 64) -> dict:
    """ComfyUI UNetModel arguments: two levels (16 x 16 and 8 x 8) of one res block each; cross-attention
    on the 8 x 8 level (encoder and decoder) and in the middle, as SD1 leaves its finest level to convs
    for cost. 8 x 8 is the level PoS Guidance's "auto" picks (the encoder's coarsest with attention)."""
    return dict(image_size=LATENT, in_channels=4, out_channels=4, model_channels=channels, num_res_blocks=[1, 1],
                channel_mult=[1, 2], num_heads=4, num_head_channels=-1, use_spatial_transformer=True,
                transformer_depth=[0, 1], transformer_depth_output=[0, 0, 1, 1], transformer_depth_middle=1,
                context_dim=768, legacy=False, use_linear_in_transformer=False, adm_in_channels=None)


def clip_state_dict(encoder: str, seed: int) -> dict[str, torch.Tensor]:
    """A seeded random CLIP-L text model (transformers layout, as SD1 checkpoints store it). "isolated"
    zeroes every self-attention output projection, so no token reads another: each token's feature
    depends on its own word and position only (see README, Measured effect, for why that matters)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    if encoder not in ("isolated", "mixing"):
        raise ValueError(f"encoder must be 'isolated' or 'mixing', got {encoder!r}")
    gen = torch.Generator().manual_seed(seed + 1)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12,
                                        max_position_embeddings=77, hidden_act="quick_gelu"))
    _init(clip, gen)
    sd = clip.state_dict()
    if encoder == "isolated":
        for k in sd:
            if ".self_attn.out_proj." in k:
                sd[k] = torch.zeros_like(sd[k])
    return {f"cond_stage_model.transformer.{k}": v for k, v in sd.items()}


def vae_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """SD1's VAE architecture with a built (not trained) decoder: latent channel g -> colour channel g.

    Every residual block and the attention block are identities (zeroed second conv / output
    projection), upsampling convs pass channels through, and the output GroupNorm sees each signal
    channel beside its negative and two +/-C constants, so its statistics are fixed (mean 0, std C/sqrt 2)
    whatever the image: colour = (latent_g * 0.18215 / AMPLITUDE) * AMPLITUDE mapped to [-1, 1].
    The encoder is seeded random (the testbed never encodes images).
    """
    from comfy.ldm.models.autoencoder import AutoencodingEngine

    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
        encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": ddconfig},
        decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": ddconfig})
    gen = torch.Generator().manual_seed(seed + 2)
    _init(vae, gen)
    sd = vae.state_dict()
    big = 1000.0
    with torch.no_grad():
        for k in sd:
            if not k.startswith("decoder."):
                continue
            if k.endswith(("conv2.weight", "conv2.bias", "proj_out.weight", "proj_out.bias")):
                sd[k].zero_()
            elif k.endswith(("nin_shortcut.weight", "upsample.conv.weight")):
                w = sd[k]
                w.zero_()
                n = min(w.shape[0], w.shape[1])
                centre = (w.shape[2] // 2, w.shape[3] // 2)
                w[torch.arange(n), torch.arange(n), centre[0], centre[1]] = 1.0
            elif k.endswith(("nin_shortcut.bias", "upsample.conv.bias")):
                sd[k].zero_()
        w, b = sd["decoder.conv_in.weight"], sd["decoder.conv_in.bias"]
        w.zero_()
        b.zero_()
        for g in range(3):  # group g of the output norm: [+signal, +C, -C, -signal]
            w[4 * g, g, 1, 1] = SCALE_FACTOR
            w[4 * g + 3, g, 1, 1] = -SCALE_FACTOR
            b[4 * g + 1], b[4 * g + 2] = big, -big
        gamma, beta = sd["decoder.norm_out.weight"], sd["decoder.norm_out.bias"]
        gamma.fill_(1.0)
        beta.zero_()
        shift = 10.0  # keeps the output SiLU in its linear range
        for g in range(3):
            gamma[4 * g] = big / math.sqrt(2.0)
            beta[4 * g] = shift
        ow, ob = sd["decoder.conv_out.weight"], sd["decoder.conv_out.bias"]
        ow.zero_()
        for g in range(3):
            ow[g, 4 * g, 1, 1] = 1.0
            ob[g] = -shift
    return {f"first_stage_model.{k}": v for k, v in sd.items()}


def load_registration() -> None:
    """Teach ComfyUI's checkpoint detection the testbed's UNet (nodes/testbed_model.py, loaded alone)."""
    spec = importlib.util.spec_from_file_location("pos_testbed_model", ROOT / "nodes" / "testbed_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.register()


def save_checkpoint(path: Path, unet: dict, clip: dict, vae: dict, meta: dict) -> None:
    """Write atomically: UNet fp32 (small), CLIP and VAE fp16, metadata as strings."""
    from safetensors.torch import save_file

    sd = {f"model.diffusion_model.{k}": v.float().contiguous() for k, v in unet.items()}
    sd.update({k: v.to(torch.float16).contiguous() for k, v in {**clip, **vae}.items() if v.is_floating_point()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(sd, str(tmp), metadata={k: str(v) for k, v in meta.items()})
    tmp.replace(path)


def load(path: Path):
    """(MODEL, CLIP, VAE) through ComfyUI's own checkpoint loader."""
    import comfy.sd

    load_registration()
    out = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)
    return out[0], out[1], out[2]


def encode(clip, texts: list[str], batch: int = 32) -> torch.Tensor:
    """[N, 77, 768] contexts of `texts` through ComfyUI's CLIP, as a sampler gets them. Prompts go
    through as the chunks of one long prompt (ComfyUI encodes a prompt's chunks as one batch), so
    each forward pass encodes `batch` prompts; every prompt must fit one 77-token chunk."""
    out = []
    for i in range(0, len(texts), batch):
        chunks = []
        for t in texts[i:i + batch]:
            tok = clip.tokenize(t)
            if len(tok["l"]) != 1:
                raise ValueError(f"testbed prompt longer than one CLIP chunk: {t!r}")
            chunks.append(tok["l"][0])
        cond = clip.encode_from_tokens({"l": chunks})
        out.append(cond.float().cpu().reshape(len(chunks), 77, -1))
    return torch.cat(out)


# ----------------------------------------------------------------------------------- training

@dataclass
class TrainReport:
    path: str
    seconds: float
    steps: int
    losses: list[float] = field(default_factory=list)


def sd1_alphas_cumprod() -> torch.Tensor:
    """SD1's noise schedule: scaled-linear betas 0.00085 -> 0.012 over 1000 steps."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, dim=0).float()


def new_unet(cfg: Config, gen: torch.Generator | None = None) -> torch.nn.Module:
    """The testbed's UNet with the fixtures' seeded weights (from `gen`, or seeded by cfg.seed)."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet = UNetModel(**unet_config(cfg.channels), dtype=torch.float32, device="cpu",
                     operations=comfy.ops.disable_weight_init)
    _init(unet, gen if gen is not None else torch.Generator().manual_seed(cfg.seed))
    return unet


def write_sd1(path: Path, cfg: Config, unet: dict | None = None) -> Path:
    """An SD1-family testbed file: `unet` (default: untrained) with cfg's frozen CLIP-L and built VAE."""
    save_checkpoint(path, unet if unet is not None else new_unet(cfg).state_dict(),
                    clip_state_dict(cfg.encoder, cfg.seed), vae_state_dict(cfg.seed), {"pos_testbed": VERSION})
    return path


def captions(cfg: Config) -> list[tuple]:
    """Every training caption: the two-object ones (prompt, s, rel, o), then with cfg.three the three-object
    ones (prompt, a, r1, b, r2, c) on training triples (pos_core.scenes.training_prompts3)."""
    caps: list[tuple] = list(training_prompts(cfg.seed))
    return caps + list(training_prompts3(cfg.seed)) if cfg.three else caps


def sample_batch(cfg: Config, caps: list, ctx: torch.Tensor, gen: torch.Generator):
    """(x0, contexts) of one training batch: random captions, their scenes, the empty prompt at cfg.dropout.
    With cfg.three, that fraction of the batch draws from the three-object captions (their scenes hold both
    relations), the rest from the two-object ones."""
    if cfg.three:
        two = [i for i, c in enumerate(caps) if len(c) == 4]
        three = [i for i, c in enumerate(caps) if len(c) == 6]
        pick3 = torch.rand(cfg.batch, generator=gen) < cfg.three
        i2 = torch.randint(0, len(two), (cfg.batch,), generator=gen)
        i3 = torch.randint(0, len(three), (cfg.batch,), generator=gen)
        idx = torch.tensor([three[j3] if p else two[j2] for p, j2, j3 in zip(pick3.tolist(), i2.tolist(), i3.tolist())])
    else:
        idx = torch.randint(0, len(caps), (cfg.batch,), generator=gen)
    x0 = torch.stack([scene3(*caps[i][1:], gen) if len(caps[i]) == 6
                      else scene(caps[i][1], caps[i][2], caps[i][3], gen, cfg.relation_noise) for i in idx.tolist()])
    c = ctx[idx].clone()
    c[torch.rand(cfg.batch, generator=gen) < cfg.dropout] = ctx[-1]
    return x0, c


def optimizer(params, cfg: Config):
    """AdamW at cfg.lr, 100 warm-up steps, then cosine decay over cfg.steps: (optimizer, scheduler)."""
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(i, cfg.steps) / cfg.steps)))
    return opt, sched


def loss_curve(losses: list[float]) -> list[float]:
    """Training loss averaged over windows of 50 steps (what the metadata keeps)."""
    return [round(sum(losses[i:i + 50]) / len(losses[i:i + 50]), 5) for i in range(0, len(losses), 50)]


def contexts(cfg: Config, cache: Path, path: Path, unet: dict | None = None) -> torch.Tensor:
    """[N + 1, 77, 768] contexts of every training caption (and the empty prompt, last) through ComfyUI's
    own CLIP, once per text encoder: cached beside the checkpoints, since encoding is most of a short
    training's time. `unet`: any UNet state dict for the draft checkpoint the CLIP is loaded from."""
    texts = [c[0] for c in captions(cfg)] + [""]
    tag = hashlib.sha1(json.dumps([cfg.encoder, cfg.seed, VERSION, texts]).encode()).hexdigest()[:12]
    ctx_file = cache / f"contexts_{cfg.encoder}_{tag}.pt"
    if ctx_file.exists():
        return torch.load(ctx_file)
    draft = write_sd1(path.with_name(path.stem + ".draft.safetensors"), cfg, unet)
    _, clip, _ = load(draft)
    with torch.inference_mode():
        ctx = encode(clip, texts)
    ctx = ctx.clone()  # a normal tensor, usable in training
    del clip
    draft.unlink(missing_ok=True)
    tmp = ctx_file.with_suffix(f".tmp{os.getpid()}")
    torch.save(ctx, tmp)
    tmp.replace(ctx_file)
    return ctx


def train(cfg: Config, cache: Path = CACHE, progress: Callable[[int, int, float], None] | None = None,
          time_limit: float | None = None, snapshots: tuple[int, ...] = ()) -> TrainReport:
    """Train (or reuse) the testbed checkpoint for `cfg`; progress(step, steps, loss) after each step.
    `snapshots`: steps after which an intermediate checkpoint `<name>.step<N>.safetensors` is written."""
    path = checkpoint_path(cfg, cache)
    if path.exists():
        meta = json.loads((path.with_suffix(".json")).read_text()) if path.with_suffix(".json").exists() else {}
        return TrainReport(str(path), float(meta.get("seconds", 0.0)), int(meta.get("steps", cfg.steps)),
                           meta.get("losses", []))
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.time()
    clip_sd, vae_sd = clip_state_dict(cfg.encoder, cfg.seed), vae_state_dict(cfg.seed)
    unet = new_unet(cfg, gen)
    if cfg.init:
        from safetensors.torch import load_file

        prefix = "model.diffusion_model."
        start_sd = {k[len(prefix):]: v for k, v in load_file(cfg.init).items() if k.startswith(prefix)}
        unet.load_state_dict(start_sd)
    caps = captions(cfg)
    ctx = contexts(cfg, cache, path, unet.state_dict())
    abar = sd1_alphas_cumprod()
    opt, sched = optimizer(unet.parameters(), cfg)
    unet.train()
    losses: list[float] = []
    steps_done = 0
    for step in range(cfg.steps):
        x0, c = sample_batch(cfg, caps, ctx, gen)
        t = torch.randint(0, 1000, (cfg.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        pred = unet(xt, timesteps=t.float(), context=c)
        loss = torch.nn.functional.mse_loss(pred, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
        steps_done = step + 1
        if steps_done in snapshots:
            save_checkpoint(path.with_name(f"{path.stem}.step{steps_done}.safetensors"), unet.state_dict(),
                            clip_sd, vae_sd, {"pos_testbed": VERSION, "step": str(steps_done)})
        if progress is not None:
            progress(steps_done, cfg.steps, losses[-1])
        if time_limit is not None and time.time() - start > time_limit:
            break
    seconds = time.time() - start
    meta = {"pos_testbed": VERSION, "config": asdict(cfg), "seconds": round(seconds, 1), "steps": steps_done,
            "losses": loss_curve(losses)}
    save_checkpoint(path, unet.state_dict(), clip_sd, vae_sd,
                    {"pos_testbed": VERSION, "config": json.dumps(asdict(cfg))})
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return TrainReport(str(path), seconds, steps_done, meta["losses"])
