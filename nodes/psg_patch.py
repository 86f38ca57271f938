"""The PSG engine: attention capture and the per-step latent update, for every model family.

A family (nodes/families: UNet, Flux.1, SD3) says where the image-to-text attention is and installs
the patches that record it on every step (conditional rows only) and compute it with gradients in the
guidance pass. Guidance: a PREDICT_NOISE wrapper runs, on guided steps, one extra conditional forward
pass with gradients that stops after the last captured layer or block, takes grad_z of the PoS loss,
moves the latent (z-space step mapped to ComfyUI's x; z = x for flow-matching models, c_in = 1) and
then lets the sampler predict from the moved latent, adding the term that makes an Euler step exact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

import comfy.model_management
import comfy.patcher_extension
import comfy.samplers

from ..pos_core import attention, guidance
from ..pos_core.tokens import RelationSet
from .common import require_relations
from .families import Family, family_of
from .families.base import StopForward, WeightAliases
from .families.unet import LEVELS, attention_layers, target_layers  # noqa: F401  (UNet helpers, re-exported)

KEY = "pos_spatial"
SOFTMAX = attention.SOFTMAX
log = logging.getLogger("pos_spatial")


@dataclass
class Settings:
    """What the guidance node was asked for."""

    scale: float = guidance.SCALE
    fraction: float = guidance.GUIDED_FRACTION
    loss_scale: float = 1.0
    smoothing: bool = True
    softmax: str = "text"  # DiT maps: softmax over the text keys ("text") or the full joint row ("joint")


@dataclass
class Run:
    """State of one patched model: shared by its closures, reset at the start of every sampling."""

    relations: RelationSet
    settings: Settings
    targets: list[tuple]
    family: Family | None = None
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
    grid: tuple[int, int] | None = None  # DiT: image-token grid of the latent being sampled
    txt_len: int = 0  # DiT: text tokens of the current model call
    _aliases: WeightAliases | None = None

    def __post_init__(self):
        self.groups = attention.token_groups(self.relations.relations)
        self.pairs = attention.relation_pairs(self.relations.relations, self.groups)
        self.guided_pairs = attention.guidable_pairs(self.pairs)

    def reset(self) -> None:
        self.layer_maps, self.maps, self.losses, self.deltas, self.skipped = [], {}, {}, {}, []
        self._aliases = None


def model_family(model) -> str:
    """sd1, sd2, sdxl, flux or sd3 from a MODEL, or ValueError naming what PSG supports."""
    return family_of(model).name


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


def _guided_latent(run: Run, guider, x, timestep, model_options, step: int) -> torch.Tensor:
    """x moved by one PSG step, or x itself when the gradient is unusable."""
    model = guider.inner_model
    conds = guider.conds.get("positive")
    if conds is None:
        return x
    sigma = timestep.detach()
    with torch.inference_mode(False), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        t = sigma.clone()
        run.layer_maps, run.guiding = [], True
        try:
            with run.family.grad_pass(run):
                comfy.samplers.calc_cond_batch(model, [conds], xg, t, model_options)
        except StopForward:
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
        run.grid = run.family.grid(x.shape[-2:])
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


def patch(model, relations: RelationSet, settings: Settings, level: str = "auto", blocks: str = "auto"):
    """A clone of `model` that records (and, with scale > 0, guides) the relations' attention.

    `level` picks the UNet level (attention_level), `blocks` the DiT blocks; each family reads its own."""
    require_relations(relations)
    if any(not r.subject_tokens or not r.object_tokens for r in relations.relations):
        raise ValueError("relations have no token indices: connect your checkpoint's CLIP to the clip input of "
                         "PoS Relations from Prompt")
    if settings.softmax not in SOFTMAX:
        raise ValueError(f"softmax must be one of {', '.join(SOFTMAX)}, got {settings.softmax!r}")
    family = family_of(model)
    run = Run(relations, settings, family.targets(level, blocks), family)
    m = model.clone()
    family.install(m, run)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY, make_outer_sample(run))
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, KEY, make_predict_noise(run))
    return m, run
