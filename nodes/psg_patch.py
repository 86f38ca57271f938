"""The PSG engine: attention capture and the per-step latent update, for every model family.

A family (nodes/families: UNet, Flux.1, SD3) says where the image-to-text attention is and installs
the patches that record it on every step (conditional rows only) and compute it with gradients in the
guidance pass. Guidance: a PREDICT_NOISE wrapper runs, on guided steps, one extra conditional forward
pass with gradients that stops after the last captured layer or block, takes grad_z of the PoS loss,
moves the latent (z-space step mapped to ComfyUI's x; z = x for flow-matching models, c_in = 1) and
then lets the sampler predict from the moved latent, adding the term that makes an Euler step exact.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import torch

import comfy.model_management
import comfy.patcher_extension
import comfy.samplers

from ..pos_core import attention, guidance
from ..pos_core.tokens import RelationSet
from . import conds
from .common import require_relations
from .families import Family, family_of
from .families.base import StopForward, WeightAliases, differentiable
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
    objective: str = "pos"  # what the gradient lowers: "pos" (PoS loss) or "center" (centroid hinge)
    max_step: float = 0.0  # > 0: each guided step's RMS capped at max_step * sigma (guidance.cap_step)


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
    layer_maps: list[tuple[torch.Tensor, tuple | None]] = field(default_factory=list)  # (maps, box) pieces
    maps: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> [B, G, h, w] (cpu)
    losses: dict[int, list[float]] = field(default_factory=dict)  # step -> loss per image before update
    deltas: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> latent update x_new - x (cpu)
    skipped: list[int] = field(default_factory=list)
    capped: list[int] = field(default_factory=list)  # guided steps whose move max_step shortened
    notes: list[str] = field(default_factory=list)  # what the user is told about this run
    num_steps: int = 0
    grid: tuple[int, int] | None = None  # the grid maps are combined on (UNet level / DiT token grid)
    latent_hw: tuple[int, int] | None = None
    selection: conds.Selection | None = None  # the positive conds that carry the relations' prompt
    straight: bool = False  # other patches' gradients taken as identity (after one failed exact pass)
    txt_len: int = 0  # DiT: text tokens of the current model call
    joint_len: int = -1  # Z-Image: caption + image tokens of the current model call (its main layers' length)
    node_id: str | None = None  # the guidance node, for notes shown on it
    control_aliases: dict = field(default_factory=dict)  # id(ControlNet module) -> WeightAliases, per run
    # blocks / attention_level "maps": targets start as every candidate and are narrowed on the first step
    by_maps: bool = False
    keep_choice: bool = False  # keep the first run's choice for later runs (PoS Seed Search's batches)
    scoring: bool = False  # the choice's recording pass: every candidate records into block_maps
    block_maps: dict = field(default_factory=dict)  # key -> [(maps, box)] of the recording pass
    choice: dict | None = None  # what was chosen, from which scores, at which step, in how many seconds
    candidate_targets: list[tuple] = field(default_factory=list)
    _aliases: WeightAliases | None = None

    def __post_init__(self):
        self.groups = attention.token_groups(self.relations.relations)
        self.pairs = attention.relation_pairs(self.relations.relations, self.groups)
        self.guided_pairs = attention.guidable_pairs(self.pairs)
        self.candidate_targets = list(self.targets)

    def reset(self) -> None:
        self.layer_maps, self.maps, self.losses, self.deltas, self.skipped, self.notes = [], {}, {}, {}, [], []
        self.capped = []
        self.selection, self.straight, self._aliases, self.control_aliases = None, False, None, {}
        self.scoring, self.block_maps = False, {}
        if self.by_maps and self.choice is not None:
            if self.keep_choice:  # the same blocks again, and the user told again
                self.notes.append(self.choice["note"])
            else:
                self.choice, self.targets = None, list(self.candidate_targets)

    def note(self, text: str, level: int = logging.WARNING) -> None:
        """Tell the user once per run: the log, and the guidance node's text in the front end."""
        if text in self.notes:
            return
        self.notes.append(text)
        log.log(level, text)
        if self.node_id is not None:
            try:
                from server import PromptServer

                PromptServer.instance.send_progress_text("\n".join(self.notes), self.node_id)
            except Exception:  # no server (a script run): the log has it
                pass


def model_family(model) -> str:
    """sd1, sd2, sdxl, flux or sd3 from a MODEL, or ValueError naming what PSG supports."""
    return family_of(model).name


def step_of(sample_sigmas: torch.Tensor, sigma: float) -> tuple[int, bool]:
    """Index of the sampler step a model call belongs to, and whether it is the step's first call."""
    s = sample_sigmas.detach().float().cpu()
    tol = 1e-4 * max(1.0, abs(sigma))
    i = int((s[:-1] >= sigma - tol).sum()) - 1
    i = max(0, min(i, len(s) - 2))
    return i, abs(float(s[i]) - sigma) <= tol


def combined_maps(run: Run) -> torch.Tensor:
    """The captured pieces of one model evaluation on the run's grid (mean over layers and conds)."""
    return attention.canvas_mean(run.layer_maps, run.grid)


def _tensors(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def _straight_through(inputs: list, outputs):
    """The patch's values with the gradient of the identity: out_i = in_i + (value_i - in_i) where the
    shapes agree; a resized output keeps its value and passes no gradient."""

    def one(i, o):
        if i < len(inputs) and inputs[i].shape == o.shape:
            return inputs[i] + (o.detach() - inputs[i].detach())
        return o.detach()

    if isinstance(outputs, torch.Tensor):
        return one(0, outputs)
    if isinstance(outputs, (tuple, list)):
        out, at = [], 0
        for o in outputs:
            if isinstance(o, torch.Tensor):
                out.append(one(at, o))
                at += 1
            else:
                out.append(o)
        return type(outputs)(out)
    return outputs


def gradient_safe(fn, run: Run):
    """A model patch (FreeU, Deep Shrink, HyperTile, ...) as the gradient pass calls it. It runs on
    copies of its tensor inputs, so a patch that writes into them cannot spoil what autograd saved;
    if it did write into them (its own graph is then unusable), or after an exact pass has failed,
    its values are kept and its gradient is taken as the identity (straight-through)."""

    def wrapped(*args, **kwargs):
        if not run.guiding or not torch.is_grad_enabled():
            return fn(*args, **kwargs)
        ins = [a for a in args if isinstance(a, torch.Tensor)]
        if run.straight:
            with torch.no_grad():
                out = fn(*[a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args], **kwargs)
            return _straight_through(ins, out)
        copies = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
        versions = [c._version for c in copies if isinstance(c, torch.Tensor)]
        out = fn(*copies, **kwargs)
        if [c._version for c in copies if isinstance(c, torch.Tensor)] != versions:
            return _straight_through(ins, out)
        return out

    return wrapped


def _gradient_options(model_options: dict, run: Run) -> dict:
    """model_options for the gradient pass: every patch list wrapped by `gradient_safe`."""
    to = dict(model_options.get("transformer_options", {}))
    patches = {k: [gradient_safe(f, run) for f in v] if isinstance(v, list) else v
               for k, v in (to.get("patches") or {}).items()}
    # the UNet keeps each input block's output for its skip connection and later adds a ControlNet's
    # residual to it in place; the next block must read a copy, or autograd's saved input is overwritten
    patches["input_block_patch_after_skip"] = [_own_copy, *patches.get("input_block_patch_after_skip", [])]
    to["patches"] = patches
    # wrappers other nodes put around the model call (caches such as EasyCache skip the model and keep
    # state per step) must not see the extra pass: the gradient is taken through the model itself
    wrappers = to.get("wrappers")
    if wrappers:
        to["wrappers"] = {k: v for k, v in wrappers.items() if k not in MODEL_CALL_WRAPPERS}
    return dict(model_options, transformer_options=to)


MODEL_CALL_WRAPPERS = (comfy.patcher_extension.WrappersMP.CALC_COND_BATCH, comfy.patcher_extension.WrappersMP.APPLY_MODEL,
                       comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL)


def _own_copy(h: torch.Tensor, transformer_options: dict) -> torch.Tensor:
    """The skip tensor stays with the UNet, the next block reads a copy (gradient pass only)."""
    return h.clone() if h.requires_grad else h


def control_modules(conds: list[dict]) -> list[torch.nn.Module]:
    """The networks of the ControlNets (chained ones included) that conds carry: the gradient pass runs
    them on the latent, so their inference-mode weights need autograd-usable aliases as the model's do."""
    out = []
    for cond in conds:
        ctrl, seen = cond.get("control"), 0
        while ctrl is not None and seen < 64:
            for name in ("control_model", "t2i_model"):
                module = getattr(ctrl, name, None)
                if isinstance(module, torch.nn.Module) and all(module is not m for m in out):
                    out.append(module)
            ctrl, seen = getattr(ctrl, "previous_controlnet", None), seen + 1
    return out


def _grad_pass(run: Run, guider, x, timestep, model_options):
    """Loss per image and grad_x of one gradient pass over the chosen positive conds (one pass per
    cond, each stopped after the last captured layer), or None when no map was captured."""
    model = guider.inner_model
    chosen = [c for c in guider.conds.get("positive") or []
              if run.selection is None or run.selection.uuids is None or c.get("uuid") in run.selection.uuids]
    options = _gradient_options(model_options, run)
    with torch.inference_mode(False), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        t = timestep.detach().clone()
        run.layer_maps, run.guiding = [], True
        try:
            with run.family.grad_pass(run), differentiable(), contextlib.ExitStack() as stack:
                for module in control_modules(chosen):  # a ControlNet runs on the latent too
                    if id(module) not in run.control_aliases:
                        run.control_aliases[id(module)] = WeightAliases(module)
                    stack.enter_context(run.control_aliases[id(module)])
                for cond in chosen:
                    try:
                        comfy.samplers.calc_cond_batch(model, [[cond]], xg, t, options)
                    except StopForward:
                        pass
        finally:
            run.guiding = False
        if not run.layer_maps:
            return None
        maps = combined_maps(run)
        run.layer_maps = []
        loss = attention.maps_loss(maps, run.guided_pairs, run.settings.smoothing,
                                   run.settings.objective) * run.settings.loss_scale
        if not loss.requires_grad:
            return loss, None
        grad_x, = torch.autograd.grad(loss.sum(), xg, allow_unused=True)
    return loss, grad_x


def _choose_targets(run: Run, guider, x, timestep, model_options, step: int) -> None:
    """blocks / attention_level "maps": one recording pass (no gradient) over the chosen positive conds in
    which every candidate block (UNet: level) records its maps; each is scored by `attention.map_sharpness`
    (concentrated and distinct object maps) and the best are kept as the run's targets. Told once."""
    t0 = time.perf_counter()
    model = guider.inner_model
    chosen = [c for c in guider.conds.get("positive") or []
              if run.selection is None or run.selection.uuids is None or c.get("uuid") in run.selection.uuids]
    options = _gradient_options(model_options, run)  # without caches' wrappers, as the gradient pass
    run.block_maps, run.layer_maps, run.scoring = {}, [], True
    try:
        with torch.no_grad():
            for cond in chosen:
                comfy.samplers.calc_cond_batch(model, [[cond]], x, timestep, options)
    except comfy.model_management.InterruptProcessingException:
        raise
    except Exception as e:  # another node's patch the extra pass trips on: choose nothing, never stop the queue
        log.info("PoS Guidance: maps: the recording pass failed (%s)", e)
        run.block_maps = {}
    finally:
        run.scoring = False
    pieces, run.block_maps, run.layer_maps = run.block_maps, {}, []
    labels, keys, scores, parts = [], [], [], []
    for label, cand in run.family.candidates():
        got = [p for k in cand for p in pieces.get(k, [])]
        if not got:
            continue
        sharp = attention.map_sharpness(attention.canvas_mean(got, run.family.candidate_grid(cand, run.latent_hw)),
                                        run.pairs)
        labels.append(label)
        keys.append(cand)
        scores.append(float(sharp["score"].mean()))
        parts.append((float(sharp["concentration"].mean()), float(sharp["overlap"].mean())))
    seconds = time.perf_counter() - t0
    if not scores:
        run.targets = list(run.family.fallback)
        run.family.chose(run.targets)
        text = (f"PoS Guidance: maps: no candidate's maps were recorded on step {step} (no positive prompt "
                "carried the relations, or another node's patch stopped the extra pass); using the auto choice.")
        run.choice = {"step": step, "kept": [], "scores": {}, "seconds": seconds, "note": text}
        run.note(text)
        return
    kept = attention.pick_best(scores, most=run.family.maps_most)
    run.targets = [k for i in kept for k in keys[i]]
    run.family.chose(run.targets)
    run.grid = run.family.grid(run.latent_hw)
    what = "attention_level" if run.family.name in ("sd1", "sd2", "sdxl") else "blocks"
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:6]
    text = (f"PoS Guidance: {what}=maps kept {','.join(labels[i] for i in kept)}, chosen on step {step} from "
            f"{len(scores)} candidates' maps in {seconds:.2f} s (score = concentration x (1 - overlap): "
            + ", ".join(f"{labels[i]} {scores[i]:.3f}" for i in ranked) + (", ..." if len(scores) > 6 else "") + ")")
    run.choice = {"step": step, "kept": [labels[i] for i in kept], "seconds": seconds, "note": text,
                  "scores": {lb: {"score": sc, "concentration": c, "overlap": o}
                             for lb, sc, (c, o) in zip(labels, scores, parts)}}
    run.note(text, logging.INFO)


def _grad_pass_beside(run: Run, guider, x, timestep, model_options, step: int):
    """_grad_pass, retried once with other patches' gradients taken as the identity when another node's patch
    cannot be differentiated through; (result, True), or (None, False) with a note: never the queue's problem."""
    while True:
        try:
            return _grad_pass(run, guider, x, timestep, model_options), True
        except comfy.model_management.InterruptProcessingException:
            raise
        except Exception as e:
            run.guiding, run.layer_maps = False, []
            if not run.straight and not isinstance(e, torch.OutOfMemoryError):
                run.straight = True
                log.info("PoS Guidance: gradient pass failed (%s); retrying with other patches' gradients "
                         "taken as the identity", e)
                continue
            run.skipped.append(step)
            run.note(f"PoS Guidance: the gradient could not be computed beside this graph's other nodes "
                     f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); those steps ran unguided.")
            return None, False


def _guided_latent(run: Run, guider, x, timestep, model_options, step: int) -> torch.Tensor:
    """x moved by one PSG step, or x itself (with a note) when no usable gradient can be had."""
    model = guider.inner_model
    if guider.conds.get("positive") is None:
        return x
    result, ok = _grad_pass_beside(run, guider, x, timestep, model_options, step)
    if not ok or result is None:  # failed (noted), or no chosen cond ran at this step (outside its range)
        return x
    loss, grad_x = result
    run.losses[step] = [float(v) for v in loss.detach()]
    if grad_x is None:
        # the maps did not depend on the latent (e.g. another patch replaced the attention with constants)
        run.skipped.append(step)
        run.note("PoS Guidance: the attention maps do not depend on the latent in this graph (another node "
                 "replaces the captured attention); those steps ran unguided.")
        return x
    grad_x = grad_x.detach().float()
    if not bool(torch.isfinite(grad_x).all()):
        run.skipped.append(step)
        run.note(f"PoS Guidance: non-finite gradient at step {step}; that step ran unguided.")
        return x
    # z = c_in * x: grad_z = grad_x / c_in, and z - a * grad_z maps back to x - a * grad_z / c_in
    sigma = timestep.detach()
    ones = torch.ones_like(x[:1], dtype=torch.float32)
    c_in = model.model_sampling.calculate_input(sigma.float().reshape(-1)[:1], ones).flatten()[0]
    alpha = guidance.step_sizes(run.num_steps, run.settings.scale)[step]
    x_new = guidance.x_update(x.float(), grad_x / c_in, alpha, c_in)
    if run.settings.max_step > 0:
        delta = x_new - x.float()
        capped = guidance.cap_step(delta, float(sigma.reshape(-1)[0]), run.settings.max_step)
        if not torch.equal(capped, delta):
            run.capped.append(step)
            if len(run.capped) == 1:  # the log only: a capped step is the rule working, not a problem to show
                log.info("PoS Guidance: max_step %g shortened guided steps (the first at step %d); raise it for a "
                         "stronger push, if the images stay clean.", run.settings.max_step, step)
        x_new = x.float() + capped
    x_new = x_new.to(x.dtype)
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
        run.latent_hw = (int(x.shape[-2]), int(x.shape[-1]))
        run.grid = run.family.grid(run.latent_hw)
        if run.selection is None:
            guider = executor.class_obj
            positive = getattr(guider, "conds", {}).get("positive")
            run.selection = conds.select(positive, run.relations.fingerprint, run.latent_hw)
            if run.selection.note:
                run.note(run.selection.note)
        step, first_call = step_of(sample_sigmas, sigma)
        sigma_next = float(sample_sigmas[step + 1])
        if run.by_maps and run.choice is None and first_call:
            _choose_targets(run, executor.class_obj, x, timestep, model_options, step)
        x_new = x
        if (first_call and run.settings.scale > 0 and sigma_next > 0 and run.guided_pairs
                and step < guidance.guided_steps(run.num_steps, run.settings.fraction)):
            x_new = _guided_latent(run, executor.class_obj, x, timestep, model_options, step)
        run.layer_maps = []
        out = executor(x_new, timestep, model_options, seed)
        if first_call and run.layer_maps:
            run.maps[step] = combined_maps(run).detach().cpu()
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
            run._aliases, run.control_aliases = None, {}

    return outer_sample


def patch(model, relations: RelationSet, settings: Settings, level: str = "auto", blocks: str = "auto",
          node_id: str | None = None):
    """A clone of `model` that records (and, with scale > 0, guides) the relations' attention.

    `level` picks the UNet level (attention_level), `blocks` the DiT blocks; each family reads its own."""
    require_relations(relations)
    if any(not r.subject_tokens or not r.object_tokens for r in relations.relations):
        raise ValueError("relations have no token indices: connect your checkpoint's CLIP to the clip input of "
                         "PoS Relations from Prompt")
    if settings.softmax not in SOFTMAX:
        raise ValueError(f"softmax must be one of {', '.join(SOFTMAX)}, got {settings.softmax!r}")
    if settings.objective not in guidance.OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(guidance.OBJECTIVES)}, got {settings.objective!r}")
    family = family_of(model)
    run = Run(relations, settings, family.targets(level, blocks), family, node_id=node_id, by_maps=family.by_maps)
    m = model.clone()
    family.install(m, run)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY, make_outer_sample(run))
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, KEY, make_predict_noise(run))
    return m, run
