"""PoS Distill LoRA: the pack's guided sampling (PoS Guidance, PoS Layout from Relations, or both) distilled
into a LoRA of the user's own model. The teacher samples trajectories in-process; the student (the model
plus a LoRA, stock sampling, no guidance, no area conds) learns the teacher's denoised prediction at every
recorded state, through the same CFG the sampler applies. ComfyUI's LoRA pieces as PoS Train LoRA uses."""

from __future__ import annotations

import logging
import os
import time
from contextlib import nullcontext

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import folder_paths
import node_helpers
import numpy as np
import torch
from comfy_api.latest import io, ui
from PIL import Image, ImageDraw

from ..pos_core import distill
from ..pos_core.guidance import GUIDED_FRACTION, SCALE
from ..pos_core.layout import MARGIN
from ..pos_core.relations import parse
from .common import CATEGORY
from .families import family_of
from .families.base import WeightAliases, differentiable
from .guidance import PoSGuidance
from .layout import PoSLayoutFromRelations
from .relations import PoSRelationsFromPrompt
from .train_lora import (
    DIT_FAMILIES,
    PoSTrainLoRA,
    batch_cond,
    caption_of,
    comfy_training,
    dataset_files,
    trainable_family,
)

log = logging.getLogger("pos_spatial")

PREVIEW = "a cat to the left of a dog"
# the integer inputs' ranges: the schema's min / max and the check execute() makes for calls that bypass it
LIMITS = {"rank": (1, 128), "train_steps": (1, 100000), "batch_size": (1, 1024), "trajectories": (1, 256),
          "steps": (1, 200)}


def bounds(name: str) -> dict[str, int]:
    """An integer input's min and max for its schema entry."""
    lo, hi = LIMITS[name]
    return {"min": lo, "max": hi}


def distill_prompts(prompts: str, objects: str, phrasings: str, dataset_folder: str) -> list[str]:
    """The distillation prompts: typed lines, object lists crossed with phrasings, and the captions of a
    dataset folder (SR4G Spatial Captions' export), in that order, duplicates dropped."""
    out = [line.strip() for line in (prompts or "").splitlines() if line.strip()]
    if distill.split_list(objects):
        try:
            out += distill.crossed_prompts(distill.split_list(objects),
                                           [p for p in (phrasings or "").splitlines() if p.strip()] or distill.PHRASINGS)
        except ValueError as e:
            raise ValueError(str(e)) from None
    name = (dataset_folder or "").strip()
    if name:
        root = os.path.realpath(folder_paths.get_input_directory())
        folder = os.path.realpath(name if os.path.isabs(name) else os.path.join(root, name))
        if not os.path.isdir(folder):
            raise ValueError(f"dataset_folder {dataset_folder!r} is not a folder in ComfyUI's input folder: give the "
                             "folder SR4G Spatial Captions wrote, or leave it empty")
        caps = [caption_of(f) for f in dataset_files(folder)]
        if not any(caps):
            raise ValueError(f"dataset_folder {dataset_folder!r} has no captions (.txt beside its images)")
        out += [c for c in caps if c]
    out = list(dict.fromkeys(out))
    if not out:
        raise ValueError("prompts, objects and dataset_folder are all empty: type the prompts to distil on, one a "
                         "line (e.g. 'a cat to the left of a dog'), or object names to cross with the phrasings")
    return out


def latent_rgb(model, samples: torch.Tensor, vae=None) -> torch.Tensor:
    """IMAGE [B, H, W, 3] of stored latents: decoded by the VAE where one is connected, else ComfyUI's
    latent-to-RGB preview factors of the model's latent format (a rough colour preview)."""
    if vae is not None:
        return vae.decode(samples)[..., :3].float().cpu().clamp(0, 1)
    fmt = model.get_model_object("latent_format")
    f = getattr(fmt, "latent_rgb_factors", None)
    if f is None:  # no factors: the latent's norm, grey
        g = samples.float().norm(dim=1, keepdim=True)
        g = g / g.amax(dim=(-1, -2), keepdim=True).clamp_min(1e-6)
        img = g.movedim(1, -1).repeat(1, 1, 1, 3)
    else:
        w = torch.tensor(f, dtype=torch.float32).transpose(0, 1)
        b = getattr(fmt, "latent_rgb_factors_bias", None)
        b = torch.tensor(b, dtype=torch.float32) if b is not None else None
        img = ((torch.nn.functional.linear(samples.float().cpu().movedim(1, -1), w, b) + 1) / 2).clamp(0, 1)
    scale = max(1, 256 // img.shape[1])
    return img.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)


def side_by_side(images: list[tuple[str, torch.Tensor]], caption: str) -> torch.Tensor:
    """One IMAGE [1, H, W, 3] of labelled panels (each [1, h, w, 3]) and a caption line under them."""
    panels = [Image.fromarray((255 * im[0].numpy()).astype(np.uint8)) for _, im in images]
    h, pad, top = max(p.height for p in panels), 8, 22
    w = sum(p.width for p in panels) + pad * (len(panels) + 1)
    out = Image.new("RGB", (w, h + top + 24), "white")
    d = ImageDraw.Draw(out)
    x = pad
    for (label, _), p in zip(images, panels):
        d.text((x, 4), label, fill="black")
        out.paste(p, (x, top))
        x += p.width + pad
    d.text((pad, h + top + 6), caption[:120], fill="black")
    return torch.from_numpy(np.asarray(out, dtype=np.float32) / 255.0)[None]


def loss_graph(losses: list[float]) -> torch.Tensor:
    """The distillation loss per step as an IMAGE [1, H, W, 3] (log scale: it falls over decades)."""
    w, h, m = 720, 360, 48
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.line([(m, 10), (m, h - m), (w - 10, h - m)], fill="black", width=1)
    d.text((w // 2 - 20, h - m + 18), "step", fill="black")
    vals = [max(v, 1e-12) for v in losses]
    if vals:
        lo, hi = np.log10(min(vals)), np.log10(max(vals))
        span = max(hi - lo, 1e-6)
        d.text((4, 10), f"{max(vals):.3g}", fill="black")
        d.text((4, h - m - 8), f"{min(vals):.3g}", fill="black")
        if len(vals) > 1:
            pts = [(m + (w - m - 10) * i / (len(vals) - 1), h - m - (h - m - 10) * (np.log10(v) - lo) / span)
                   for i, v in enumerate(vals)]
            d.line(pts, fill=(30, 90, 200), width=2)
    d.text((w - 260, 14), "-- distillation loss (log scale)", fill=(30, 90, 200))
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]


def make_trainer(nodes_train, records: distill.Records, batches: list[list[int]], optimizer, dtype, losses: dict,
                 pbar, mutation: bool):
    """A comfy Sampler whose `sample` is the distillation loop: the guider's CFG'd prediction (the student:
    model + LoRA, cond and uncond) at each batch's recorded states against the teacher's."""

    class PoSDistillSampler(comfy.samplers.Sampler):
        def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                   disable_pbar=False):
            model_wrap.conds = nodes_train.process_cond_list(model_wrap.conds)
            conds = model_wrap.conds["positive"]  # one entry per prompt
            device = latent_image.device
            for idx in batches:
                comfy.model_management.throw_exception_if_processing_interrupted()
                t0 = time.perf_counter()
                x, sig, target, prompts = records.batch(idx)
                model_wrap.conds["positive"] = [batch_cond([conds[p] for p in prompts])]
                # Flux's and SD3's stock blocks add in place to tensors autograd saved (as PoS Train LoRA)
                with torch.autograd.graph.allow_mutation_on_saved_tensors() if mutation else nullcontext():
                    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                        pred = model_wrap(x.to(device, latent_image.dtype), sig.to(device), **extra_args)
                    loss = distill.distill_loss(pred, target.to(pred.device))
                    loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                losses["loss"].append(loss.item())
                losses["seconds"].append(time.perf_counter() - t0)
                pbar.update(1)
            return torch.zeros_like(latent_image)

    return PoSDistillSampler()


def record_trajectory(model, positive, negative, latent: torch.Tensor, seed: int, sampler_name: str, scheduler: str,
                      steps: int, cfg: float, sigmas: list[float], records: distill.Records, prompt: int) -> torch.Tensor:
    """Samples one trajectory with stock KSampler code and records each step's state, sigma and the
    denoised prediction the sampler used (the teacher's effective one: CFG and any guidance folded in)."""

    def record(i, x0, x, total):
        records.add(x[0], sigmas[i], x0[0], prompt)

    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent,
                               denoise=1.0, callback=record, disable_pbar=True, seed=seed)


def distill_train(model, records: distill.Records, positive: list, negative: list, cfg: float, rank: int,
                  steps: int, batch_size: int, learning_rate: float, seed: int, dtype, checkpointing: bool, pbar):
    """(the model with the LoRA, the LoRA's state dict, losses): ComfyUI's LoRA adapters on every weight of a
    clone, trained `steps` AdamW steps so the clone's CFG'd prediction at each recorded state matches the
    teacher's. `positive[i]` is prompt i's conditioning entry (records name prompts by index)."""
    nodes_train, adapter_maps = comfy_training()
    family = family_of(model)
    mp = model.clone()
    mp.set_model_compute_dtype(dtype)
    losses: dict[str, list[float]] = {"loss": [], "seconds": []}
    with torch.inference_mode(False):
        lora_sd, adapters = PoSTrainLoRA._adapters(mp, nodes_train, adapter_maps["LoRA"], rank, torch.float32, seed)
        opt = torch.optim.AdamW(lora_sd.values(), lr=learning_rate)
        if checkpointing:
            for m in nodes_train.find_all_highest_child_module_with_forward(mp.model.diffusion_model):
                nodes_train.patch(m)
        mp.model.requires_grad_(False)
        comfy.model_management.load_models_gpu([mp], memory_required=1e20, force_full_load=True)
        sampler = make_trainer(nodes_train, records, distill.batches(len(records), batch_size, steps, seed),
                               opt, dtype, losses, pbar, family.name in DIT_FAMILIES)
        guider = comfy.samplers.CFGGuider(mp)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        lat = records.x[0][None].to(dtype)
        aliases = WeightAliases(mp.model.diffusion_model)
        try:  # the sampler is the training loop; the latent and sigmas only start ComfyUI's sampling code
            with aliases, differentiable():
                guider.sample(torch.zeros_like(lat), lat, sampler, torch.tensor([1.0, 0.0]), seed=seed)
        finally:
            for m in mp.model.modules():
                nodes_train.unpatch(m)
        for a in adapters:
            a.requires_grad_(False)
        lora_sd = {k: v.detach().float() for k, v in lora_sd.items()}
    return mp, lora_sd, losses


class PoSDistillLoRA(io.ComfyNode):
    """Distil PoS Guidance / PoS Layout sampling into a LoRA: the relations at the unguided price."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PoSDistillLoRA",
            display_name="PoS Distill LoRA",
            category=CATEGORY,
            is_experimental=True,
            description="Samples the teacher (this model with PoS Guidance, PoS Layout from Relations, or both) on "
                        "the prompts, then trains a LoRA so that the model alone, with a stock KSampler, makes the "
                        "teacher's prediction at every recorded step. No images needed. SD1.x, SD2.x, SDXL, Flux.1 "
                        "and SD3 / SD3.5.",
            inputs=[
                io.Model.Input("model", tooltip="The model to distil into (the teacher and the student's base)."),
                io.Clip.Input("clip", tooltip="The model's CLIP: encodes the prompts and finds their relations."),
                io.String.Input("prompts", multiline=True, default="a dog to the left of a cat\na cup above a clock",
                                tooltip="Distillation prompts, one a line, each with a relation (left, right, above, "
                                        "below for layout). Keep your test prompts out of them."),
                io.String.Input("objects", multiline=True, default="", optional=True,
                                tooltip="Object names (one a line or comma-separated): every ordered pair is put in "
                                        "every phrasing and added to the prompts."),
                io.String.Input("phrasings", multiline=True, default="\n".join(distill.PHRASINGS), optional=True,
                                tooltip="Relation phrasings for the objects, one a line: {a} is the subject, {b} "
                                        "the object."),
                io.String.Input("dataset_folder", default="", optional=True,
                                tooltip="A caption folder in ComfyUI's input folder (SR4G Spatial Captions' export): "
                                        "its captions are added to the prompts (no images are used)."),
                io.Combo.Input("teacher", options=list(distill.TEACHERS), default="psg",
                               tooltip="psg: PoS Guidance; layout: PoS Layout from Relations' area prompts; "
                                       "layout+psg: both; none: the base's own sampling (a control LoRA)."),
                io.Float.Input("scale", default=SCALE, min=0.0, max=1000.0, step=0.5,
                               tooltip="PoS Guidance's scale in the teacher (psg, layout+psg)."),
                io.Float.Input("guided_fraction", default=GUIDED_FRACTION, min=0.0, max=1.0, step=0.05,
                               tooltip="PoS Guidance's guided fraction of the steps in the teacher."),
                io.Float.Input("layout_margin", default=MARGIN, min=0.0, max=0.2, step=0.0125,
                               tooltip="PoS Layout's gap between the objects' regions (layout, layout+psg)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler",
                               tooltip="The sampler the teacher samples with; use the one you will sample the LoRA "
                                       "with (a first-order sampler such as euler records each step's state)."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="The teacher's scheduler."),
                io.Int.Input("steps", default=20, **bounds("steps"), tooltip="The teacher's sampling steps."),
                io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1,
                               tooltip="CFG of the teacher and of the student's training passes (1 for Flux)."),
                io.Int.Input("width", default=512, min=64, max=4096, step=8, tooltip="Teacher image width."),
                io.Int.Input("height", default=512, min=64, max=4096, step=8, tooltip="Teacher image height."),
                io.Int.Input("trajectories", default=4, **bounds("trajectories"),
                             tooltip="Teacher trajectories (seeds) per prompt."),
                io.Float.Input("base_fraction", default=0.0, min=0.0, max=1.0, step=0.05,
                               tooltip="The fraction of each prompt's trajectories sampled by the base instead of "
                                       "the teacher, to keep the LoRA close to the base."),
                io.Int.Input("rank", default=8, **bounds("rank"), tooltip="LoRA rank."),
                io.Int.Input("train_steps", default=300, **bounds("train_steps"), tooltip="Training steps."),
                io.Int.Input("batch_size", default=8, **bounds("batch_size"),
                             tooltip="Recorded states per training step (each one cond and one uncond pass)."),
                io.Float.Input("learning_rate", default=5e-4, min=1e-7, max=1.0, step=1e-5,
                               tooltip="AdamW learning rate."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFF,
                             tooltip="Seeds the teacher's noise, the LoRA's start and the batches."),
                io.Combo.Input("training_dtype", options=["bf16", "fp32"], default="bf16",
                               tooltip="Compute dtype of training (fp32 on a CPU)."),
                io.Boolean.Input("gradient_checkpointing", default=False,
                                 tooltip="Recompute activations in backward: less memory, slower (SDXL, Flux)."),
                io.String.Input("preview_prompt", default=PREVIEW, optional=True,
                                tooltip="A prompt not among the distillation prompts: base, teacher and LoRA are "
                                        "sampled on it at one seed for the preview."),
                io.String.Input("negative", default="", optional=True,
                                tooltip="The negative prompt of the teacher and of training."),
                io.Vae.Input("vae", optional=True,
                             tooltip="Decodes the preview; without it the preview is the latent's rough colours."),
            ],
            outputs=[
                io.Model.Output(display_name="model_with_lora", tooltip="The model with the distilled LoRA."),
                io.LoraModel.Output(display_name="lora", tooltip="The LoRA: connect Save LoRA Weights, or Load LoRA "
                                                                 "Model to use it now."),
                io.LossMap.Output(display_name="loss", tooltip="Per step: loss and seconds."),
                io.Int.Output(display_name="steps", tooltip="Steps trained, for Save LoRA Weights' file name."),
                io.Image.Output(display_name="loss_graph", tooltip="The distillation loss per step."),
                io.Image.Output(display_name="preview",
                                tooltip="Base, teacher and LoRA on the preview prompt at one seed."),
                io.String.Output(display_name="summary",
                                 tooltip="Prompts, trajectories, recorded steps, seconds and losses."),
            ],
        )

    @classmethod
    def execute(cls, model, clip, prompts: str, teacher: str, scale: float, guided_fraction: float,
                layout_margin: float, sampler_name: str, scheduler: str, steps: int, cfg: float, width: int,
                height: int, trajectories: int, base_fraction: float, rank: int, train_steps: int, batch_size: int,
                learning_rate: float, seed: int, training_dtype: str, gradient_checkpointing: bool,
                preview_prompt: str = PREVIEW, negative: str = "", vae=None, objects: str = "", phrasings: str = "",
                dataset_folder: str = "") -> io.NodeOutput:
        comfy_training()  # a clear error where this ComfyUI has no LoRA trainer
        if model is None or clip is None:
            raise ValueError(f"{'model' if model is None else 'clip'} is empty: connect the checkpoint's MODEL and CLIP")
        trainable_family(model, "PoS Distill LoRA")
        if teacher not in distill.TEACHERS:
            raise ValueError(f"teacher must be one of {', '.join(distill.TEACHERS)}, got {teacher!r}")
        if sampler_name not in comfy.samplers.KSampler.SAMPLERS or scheduler not in comfy.samplers.KSampler.SCHEDULERS:
            raise ValueError(f"sampler_name / scheduler: {sampler_name!r} / {scheduler!r} is not one this ComfyUI has")
        if width % 8 or height % 8:
            raise ValueError(f"width and height must be multiples of 8, got {width} x {height}")
        values = {"rank": rank, "train_steps": train_steps, "batch_size": batch_size, "trajectories": trajectories,
                  "steps": steps}
        for name, (lo, hi) in LIMITS.items():  # the schema bounds a queued prompt; a script can pass anything
            if not lo <= values[name] <= hi:
                raise ValueError(f"{name} must be from {lo} to {hi}, got {values[name]}")
        texts = distill_prompts(prompts, objects, phrasings, dataset_folder)
        steps_total = len(texts) * trajectories
        pbar = comfy.utils.ProgressBar(steps_total + train_steps + 3)
        t0 = time.perf_counter()
        records, positive, neg, guided = cls._teacher(model, clip, texts, teacher, scale, guided_fraction,
                                                      layout_margin, sampler_name, scheduler, steps, cfg, width,
                                                      height, trajectories, base_fraction, seed, negative, pbar)
        teach_secs = time.perf_counter() - t0
        if teacher != "none" and not guided:
            raise ValueError(f"prompts: none of the {len(texts)} prompts has a relation the {teacher} teacher can "
                             "guide (left, right, above, below" + ("" if teacher == "psg" else " for a layout") +
                             "): write prompts such as 'a dog to the left of a cat'")
        mp, lora_sd, losses = distill_train(model, records, positive, neg, cfg, rank, train_steps, batch_size,
                                            learning_rate, seed, node_helpers.string_to_torch_dtype(training_dtype),
                                            gradient_checkpointing, pbar)
        preview = cls._preview(model, mp, clip, teacher, scale, guided_fraction, layout_margin, sampler_name,
                               scheduler, steps, cfg, width, height, seed, negative, preview_prompt or PREVIEW, texts,
                               vae, pbar)
        summary = cls._summary(texts, guided, trajectories, base_fraction, records, teacher, teach_secs, losses)
        log.info("[PoS spatial] PoS Distill LoRA: %s", summary.replace("\n", "; "))
        graph = loss_graph(losses["loss"])
        return io.NodeOutput(mp, lora_sd, losses, train_steps, graph, preview, summary,
                             ui=ui.PreviewImage(preview, cls=cls))

    @staticmethod
    def _encode(text: str, clip):
        """(the prompt's conditioning, its relations or None): a prompt without a relation is encoded as CLIP
        Text Encode would (the teacher samples it as the base does)."""
        if not parse(text):
            return clip.encode_from_tokens_scheduled(clip.tokenize(text)), None
        cond, rels, _ = PoSRelationsFromPrompt.execute(text, clip).result
        return cond, rels

    @staticmethod
    def _teacher_setup(model, clip, text, teacher, scale, guided_fraction, layout_margin, width, height):
        """(the teacher's model, its positive conditioning, the student's positive, guided?) for one prompt.
        A prompt the teacher cannot guide is sampled by the base (and counted)."""
        cond, rels = PoSDistillLoRA._encode(text, clip)
        model_t, pos_t, guided = model, cond, False
        if teacher in ("layout", "layout+psg") and rels is not None:
            try:
                pos_t = PoSLayoutFromRelations.execute(clip, cond, rels, margin=layout_margin, width=width,
                                                       height=height).result[0]
                guided = True
            except ValueError:  # no relation with a side in the image plane (front, behind, near)
                pass
        if teacher in ("psg", "layout+psg") and rels is not None:
            try:
                model_t = PoSGuidance.execute(model, rels, scale, guided_fraction, -1.0, True, "auto", "auto").result[0]
                guided = True
            except ValueError:
                pass
        return model_t, pos_t, cond, guided

    @classmethod
    def _teacher(cls, model, clip, texts, teacher, scale, guided_fraction, layout_margin, sampler_name, scheduler,
                 steps, cfg, width, height, trajectories, base_fraction, seed, negative, pbar):
        """Samples every trajectory and records (state, sigma, teacher's denoised prediction, prompt)."""
        records = distill.Records()
        neg = clip.encode_from_tokens_scheduled(clip.tokenize(negative or ""))
        positive, guided = [], 0
        n_base = round(base_fraction * trajectories)
        ks = comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler=sampler_name,
                                     scheduler=scheduler, denoise=1.0)
        sigmas = ks.sigmas.float().cpu().tolist()
        for p, text in enumerate(texts):
            # teacher "none" (the control): the base model and prompt, as for a prompt no teacher can guide
            model_t, pos_t, cond, g = cls._teacher_setup(model, clip, text, teacher, scale, guided_fraction,
                                                         layout_margin, width, height)
            guided += g
            if len(cond) != 1:
                raise ValueError(f"prompt {text!r} encodes to {len(cond)} conditionings; give one plain prompt a line")
            positive += cond
            for j in range(trajectories):
                comfy.model_management.throw_exception_if_processing_interrupted()
                use_base = j < n_base
                s = seed + p * trajectories + j
                latent = comfy.sample.fix_empty_latent_channels(model, torch.zeros([1, 4, height // 8, width // 8]))
                record_trajectory(model if use_base else model_t, cond if use_base else pos_t, neg, latent, s,
                                  sampler_name, scheduler, steps, cfg, sigmas, records, p)
                pbar.update(1)
        return records, positive, neg, guided

    @classmethod
    def _preview(cls, model, mp, clip, teacher, scale, guided_fraction, layout_margin, sampler_name, scheduler,
                 steps, cfg, width, height, seed, negative, text, texts, vae, pbar):
        """Base, teacher and LoRA on the preview prompt at one seed, side by side."""
        neg = clip.encode_from_tokens_scheduled(clip.tokenize(negative or ""))
        latent = comfy.sample.fix_empty_latent_channels(model, torch.zeros([1, 4, height // 8, width // 8]))
        noise = comfy.sample.prepare_noise(latent, seed)
        model_t, pos_t, cond, _ = cls._teacher_setup(model, clip, text, teacher, scale, guided_fraction,
                                                     layout_margin, width, height)
        panels = []
        for label, m, pos in (("base", model, cond), (f"teacher ({teacher})", model_t, pos_t), ("LoRA", mp, cond)):
            out = comfy.sample.sample(m, noise, steps, cfg, sampler_name, scheduler, pos, neg, latent, denoise=1.0,
                                      disable_pbar=True, seed=seed)
            panels.append((label, latent_rgb(model, out, vae)))
            pbar.update(1)
        note = f"'{text}', seed {seed}" + (" (a distillation prompt: not held out)" if text in texts else "")
        return side_by_side(panels, note)

    @staticmethod
    def _summary(texts, guided, trajectories, base_fraction, records, teacher, teach_secs, losses) -> str:
        n = len(texts) * trajectories
        secs = losses["seconds"][1:] or losses["seconds"]
        tail = max(1, len(losses["loss"]) // 10)
        first, last = losses["loss"][:tail], losses["loss"][-tail:]
        mean = lambda v: sum(v) / len(v) if v else float("nan")
        return "\n".join([
            f"prompts: {len(texts)}; the {teacher} teacher guided {guided} of them" +
            ("" if teacher == "none" else " (the others: the base's own trajectories)"),
            (f"trajectories: {n} ({trajectories} a prompt, {round(base_fraction * trajectories)} of them the base's); "
            f"recorded steps: {len(records)}"),
            f"teacher sampling: {teach_secs:.1f} s ({teach_secs / max(1, n):.2f} s a trajectory)",
            (f"training: {len(losses['loss'])} steps, {mean(secs):.3f} s a step; loss first 10 % {mean(first):.5f}, "
            f"last 10 % {mean(last):.5f}"),
        ])


NODES = [PoSDistillLoRA]
