"""The PSG model patch: attention capture on one UNet level and the per-step latent update.

Attention: attn2 replace patches on the layers of the chosen level record the fp32 softmax of the
relation tokens (conditional rows only). Guidance: a PREDICT_NOISE wrapper runs, on guided steps,
one extra conditional forward pass with gradients that stops after the last captured layer, takes
grad_z of the PoS loss, moves the latent (z-space step mapped to ComfyUI's x) and then lets the
sampler predict from the moved latent, adding the term that makes an Euler step exact.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch

import comfy.model_management
import comfy.patcher_extension
import comfy.samplers
from comfy.ldm.modules.attention import SpatialTransformer, optimized_attention
from comfy.ldm.modules.diffusionmodules.openaimodel import Downsample, UNetModel, Upsample

from ..pos_core import attention, guidance
from ..pos_core.tokens import RelationSet
from .common import require_relations

KEY = "pos_spatial"
LEVELS = ("auto", "latent/1", "latent/2", "latent/4", "latent/8")
log = logging.getLogger("pos_spatial")


class _StopForward(Exception):
    """Raised after the last captured layer of the guidance pass: later layers are not needed."""


@dataclass
class Settings:
    """What the guidance node was asked for."""

    scale: float = guidance.SCALE
    fraction: float = guidance.GUIDED_FRACTION
    loss_scale: float = 1.0
    smoothing: bool = True


@dataclass
class Run:
    """State of one patched model: shared by its closures, reset at the start of every sampling."""

    relations: RelationSet
    settings: Settings
    targets: list[tuple[str, int, int]]
    groups: list[tuple[int, ...]] = field(default_factory=list)
    pairs: list[tuple[int, int, str]] = field(default_factory=list)
    guided_pairs: list[tuple[int, int, str]] = field(default_factory=list)  # the 2D ones PSG can move
    active: bool = False
    guiding: bool = False
    layer_maps: list[torch.Tensor] = field(default_factory=list)
    maps: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> [B, G, h, w] (cpu)
    losses: dict[int, list[float]] = field(default_factory=dict)  # step -> loss per image before update
    deltas: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> latent update x_new - x (cpu)
    skipped: list[int] = field(default_factory=list)
    num_steps: int = 0
    _aliases: list | None = None

    def __post_init__(self):
        self.groups = attention.token_groups(self.relations.relations)
        self.pairs = attention.relation_pairs(self.relations.relations, self.groups)
        self.guided_pairs = attention.guidable_pairs(self.pairs)

    def reset(self) -> None:
        self.layer_maps, self.maps, self.losses, self.deltas, self.skipped = [], {}, {}, {}, []
        self._aliases = None


def model_family(model) -> str:
    """sd1, sd2 or sdxl from a MODEL, or ValueError for models PSG cannot guide."""
    inner = model.model
    unet = getattr(inner, "diffusion_model", None)
    if not isinstance(unet, UNetModel) or not attention_layers(unet):
        raise ValueError(f"PoS Guidance works on UNet models with cross-attention (SD1.x, SD2.x, SDXL); "
                         f"this model is {type(inner).__name__}. DiT models such as SD3 or Flux have no "
                         "such layers.")
    context = (getattr(getattr(inner, "model_config", None), "unet_config", None) or {}).get("context_dim")
    return {2048: "sdxl", 1280: "sdxl", 1024: "sd2"}.get(context, "sd1")


def attention_layers(unet: UNetModel) -> list[tuple[str, int, int, int]]:
    """(block, number, transformer index, level) of every cross-attention layer, level 0 = latent."""
    out = []
    level = 0
    for i, blk in enumerate(unet.input_blocks):
        for m in blk:
            if isinstance(m, SpatialTransformer):
                out += [("input", i, t, level) for t, b in enumerate(m.transformer_blocks) if b.attn2 is not None]
            if isinstance(m, Downsample):
                level += 1
    for m in unet.middle_block:
        if isinstance(m, SpatialTransformer):
            out += [("middle", 0, t, level) for t, b in enumerate(m.transformer_blocks) if b.attn2 is not None]
    for i, blk in enumerate(unet.output_blocks):
        for m in blk:
            if isinstance(m, SpatialTransformer):
                out += [("output", i, t, level) for t, b in enumerate(m.transformer_blocks) if b.attn2 is not None]
        if any(isinstance(m, Upsample) for m in blk):
            level -= 1
    return out


def target_layers(unet: UNetModel, level: str) -> list[tuple[str, int, int]]:
    """Layers of the chosen level; "auto" is the authors' choice: the coarsest level of the
    encoder that has cross-attention (16 x 16 for SD1 at 512 px, 32 x 32 for SDXL at 1024 px)."""
    layers = attention_layers(unet)
    have = sorted({lv for b, _, _, lv in layers if b == "input"})
    if not have:
        raise ValueError("this UNet has no cross-attention layers to guide")
    if level == "auto":
        lv = have[-1]
    elif level in LEVELS:
        lv = int(math.log2(int(level.split("/")[1])))
    else:
        raise ValueError(f"attention_level must be one of {', '.join(LEVELS)}, got {level!r}")
    chosen = [(b, n, t) for b, n, t, l in layers if l == lv]
    if not chosen:
        names = ", ".join(f"latent/{2 ** x}" for x in sorted({l for *_, l in layers}))
        raise ValueError(f"attention_level {level} has no cross-attention in this model; it has: {names}")
    return chosen


def _cond_rows(extra_options: dict, batch: int) -> torch.Tensor | slice:
    flags = extra_options.get("cond_or_uncond") or [0]
    per = batch // len(flags)
    if all(f == 0 for f in flags):
        return slice(None)
    return torch.cat([torch.arange(i * per, (i + 1) * per) for i, f in enumerate(flags) if f == 0])


def make_attn2(run: Run, previous, last: bool):
    """attn2 replace for one captured layer; `previous` is the replace it wraps, if any."""

    def attn2(q, k, v, extra_options):
        if run.active:
            h, w = extra_options["activations_shape"][-2:]
            rows = slice(None) if run.guiding else _cond_rows(extra_options, q.shape[0])
            run.layer_maps.append(
                attention.token_maps(q[rows], k[rows], extra_options["n_heads"], run.groups, h, w))
            if run.guiding and last:
                raise _StopForward
        if previous is not None:
            return previous(q, k, v, extra_options)
        return optimized_attention(q, k, v, extra_options["n_heads"])

    return attn2


def mean_over_layers(layer_maps: list[torch.Tensor], layers: int) -> torch.Tensor:
    """Average maps over the captured layers; model calls that split the batch are re-joined."""
    calls = [layer_maps[i:i + layers] for i in range(0, len(layer_maps), layers)]
    return torch.cat([torch.stack(c).mean(dim=0) for c in calls if len(c) == layers], dim=0)


def step_of(sample_sigmas: torch.Tensor, sigma: float) -> tuple[int, bool]:
    """Index of the sampler step a model call belongs to, and whether it is the step's first call."""
    s = sample_sigmas.detach().float().cpu()
    tol = 1e-4 * max(1.0, abs(sigma))
    i = int((s[:-1] >= sigma - tol).sum()) - 1
    i = max(0, min(i, len(s) - 2))
    return i, abs(float(s[i]) - sigma) <= tol


class _WeightAliases:
    """Zero-copy autograd-usable views of a UNet's inference-mode weights, swapped in for one pass."""

    def __init__(self, module: torch.nn.Module):
        self.items = []
        with torch.inference_mode(False):
            for m in module.modules():
                for name, p in m._parameters.items():
                    if p is not None and p.is_inference():
                        try:
                            alias = torch.from_dlpack(p)
                        except (RuntimeError, TypeError, BufferError):
                            alias = p.detach().clone()  # dtypes DLPack lacks (fp8): one copy
                        self.items.append((m, name, p, alias))

    def __enter__(self):
        for m, name, _, alias in self.items:
            m._parameters[name] = alias

    def __exit__(self, *exc):
        for m, name, p, _ in self.items:
            m._parameters[name] = p


def _guided_latent(run: Run, guider, x, timestep, model_options, step: int) -> torch.Tensor:
    """x moved by one PSG step, or x itself when the gradient is unusable."""
    model = guider.inner_model
    conds = guider.conds.get("positive")
    if conds is None:
        return x
    sigma = timestep.detach()
    if run._aliases is None:
        run._aliases = _WeightAliases(model.diffusion_model)
    with torch.inference_mode(False), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        t = sigma.clone()
        run.layer_maps, run.guiding = [], True
        try:
            with run._aliases:
                comfy.samplers.calc_cond_batch(model, [conds], xg, t, model_options)
        except _StopForward:
            pass
        finally:
            run.guiding = False
        if not run.layer_maps:
            return x
        maps = mean_over_layers(run.layer_maps, len(run.targets))
        run.layer_maps = []
        loss = attention.maps_loss(maps, run.guided_pairs, run.settings.smoothing) * run.settings.loss_scale
        if not loss.requires_grad:
            # the maps did not depend on the latent (e.g. another patch replaced the attention
            # with constants): nothing to follow, so leave the step as the sampler has it
            run.skipped.append(step)
            log.warning("PoS Guidance: the attention loss does not depend on the latent at step %d; "
                        "step left unguided", step)
            return x
        grad_x, = torch.autograd.grad(loss.sum(), xg, allow_unused=True)
    run.losses[step] = [float(v) for v in loss.detach()]
    if grad_x is None:
        run.skipped.append(step)
        log.warning("PoS Guidance: no gradient reached the latent at step %d; step left unguided", step)
        return x
    grad_x = grad_x.detach().float()
    if not bool(torch.isfinite(grad_x).all()):
        run.skipped.append(step)
        log.warning("PoS Guidance: non-finite gradient at step %d, step left unguided", step)
        return x
    # z = c_in * x: grad_z = grad_x / c_in, and z - a * grad_z maps back to x - a * grad_z / c_in
    ones = torch.ones_like(x[:1], dtype=torch.float32)
    c_in = model.model_sampling.calculate_input(sigma.float().reshape(-1)[:1], ones).flatten()[0]
    alpha = guidance.step_sizes(run.num_steps, run.settings.scale)[step]
    x_new = guidance.x_update(x.float(), grad_x / c_in, alpha, c_in).to(x.dtype)
    run.deltas[step] = (x_new - x).float().cpu()
    return x_new


def make_predict_noise(run: Run):
    """PREDICT_NOISE wrapper: the PSG update on guided steps, attention recording on all."""

    def predict_noise(executor, x, timestep, model_options, seed):
        sample_sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
        if not run.active or sample_sigmas is None:
            return executor(x, timestep, model_options, seed)
        comfy.model_management.throw_exception_if_processing_interrupted()
        sigma = float(timestep.reshape(-1)[0])
        run.num_steps = len(sample_sigmas) - 1
        step, first_call = step_of(sample_sigmas, sigma)
        sigma_next = float(sample_sigmas[step + 1])
        x_new = x
        if (first_call and run.settings.scale > 0 and sigma_next > 0 and run.guided_pairs
                and step < guidance.guided_steps(run.num_steps, run.settings.fraction)):
            x_new = _guided_latent(run, executor.class_obj, x, timestep, model_options, step)
        run.layer_maps = []
        out = executor(x_new, timestep, model_options, seed)
        if first_call and run.layer_maps:
            run.maps[step] = mean_over_layers(run.layer_maps, len(run.targets)).cpu()
        run.layer_maps = []
        if x_new is not x:
            out = out + guidance.euler_correction(x, x_new, sigma, sigma_next).to(out.dtype)
        return out

    return predict_noise


def make_outer_sample(run: Run):
    """OUTER_SAMPLE wrapper: fresh state for every sampling run, switched off after it."""

    def outer_sample(executor, *args, **kwargs):
        run.reset()
        run.active = True
        try:
            return executor(*args, **kwargs)
        finally:
            run.active = False
            run.guiding = False
            run._aliases = None

    return outer_sample


def patch(model, relations: RelationSet, settings: Settings, level: str = "auto"):
    """A clone of `model` that records (and, with scale > 0, guides) the relations' attention."""
    require_relations(relations)
    if any(not r.subject_tokens or not r.object_tokens for r in relations.relations):
        raise ValueError("relations have no token indices: connect your checkpoint's CLIP to the clip input of "
                         "PoS Relations from Prompt")
    unet = model.model.diffusion_model
    targets = target_layers(unet, level)
    run = Run(relations, settings, targets)
    m = model.clone()
    to = m.model_options.setdefault("transformer_options", {})
    existing = to.get("patches_replace", {}).get("attn2", {})
    for i, key in enumerate(targets):
        previous = existing.get(key, existing.get(key[:2]))
        m.set_model_attn2_replace(make_attn2(run, previous, last=i == len(targets) - 1), *key)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY, make_outer_sample(run))
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, KEY, make_predict_noise(run))
    return m, run
