"""PoS Train LoRA: ComfyUI's own LoRA training (comfy_extras/nodes_train.py: its weight adapters, its
sampler-driven loop, its LoRA format) with the PoS loss of each caption's relations added on the
cross-attention maps (UNet) or joint-attention maps (Flux, SD3) of the same forward pass, so relations
come out right with no guidance later."""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import comfy.model_management
import comfy.samplers
import comfy.utils
import folder_paths
import node_helpers
import numpy as np
import torch
from comfy.ldm.modules.attention import SpatialTransformer, optimized_attention
from comfy_api.latest import io
from PIL import Image, ImageDraw

from ..pos_core import training
from ..pos_core.relations import Relation, canonical_relation
from ..pos_core.sr4g.dataset import RELATIONS_FILE
from ..pos_core.tokens import find_phrase
from .common import CATEGORY
from .families import family_of
from .families.base import WeightAliases, differentiable
from .families.dit import MAPS, block_label, heads_view
from .families.unet import LEVELS
from .relations import clip_layout

log = logging.getLogger("pos_spatial")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")  # what Load Image and Text Dataset from Folder reads
TRAIN_LEVELS = [lv for lv in LEVELS if lv != "maps"]  # a fixed level: PoS Guidance's per-run choice is not for training
UNET_FAMILIES = ("sd1", "sd2", "sdxl")
DIT_FAMILIES = ("flux", "sd3")  # joint attention: maps from chosen blocks (nodes/families/flux.py, sd3.py)


def comfy_training():
    """ComfyUI's LoRA training module and adapters; a clear error where this ComfyUI has none."""
    try:
        from comfy.weight_adapter import adapter_maps
        from comfy_extras import nodes_train
    except ImportError as e:
        raise RuntimeError("PoS Train LoRA is built on ComfyUI's own LoRA training (comfy_extras/nodes_train.py "
                           f"and comfy.weight_adapter, ComfyUI 0.3.64 or later), which this ComfyUI lacks ({e}): "
                           "update ComfyUI") from None
    return nodes_train, adapter_maps


def trainable_family(model, node: str):
    """The model's family where `node` can train it (UNets, Flux.1, SD3); ValueError naming `model` otherwise."""
    try:
        family = family_of(model)
    except ValueError as e:
        raise ValueError(f"model: {e}") from None
    if family.name not in DIT_FAMILIES + UNET_FAMILIES:
        raise ValueError(f"model: {node} trains SD1.x, SD2.x, SDXL, Flux.1 and SD3 / SD3.5 models; this is "
                         f"{family.label}, which PoS Guidance and PoS Layout guide at sampling time instead")
    return family


def dataset_files(folder: str) -> list[str]:
    """The image files of an input folder in the order Load Image and Text Dataset from Folder loads them
    (os.listdir order; kohya-style `<repeats>_<name>` subfolders repeated), so caption i is latent i."""
    files = []
    for item in os.listdir(folder):
        path = os.path.join(folder, item)
        if item.lower().endswith(IMAGE_EXTENSIONS):
            files.append(path)
        elif os.path.isdir(path):
            repeat = int(item.split("_")[0]) if item.split("_")[0].isdigit() else 1
            files += [os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS)] * repeat
    return files


def caption_of(image: str) -> str:
    """The caption beside an image (same name, .txt), "" where there is none, as the loader reads it."""
    path = os.path.splitext(image)[0] + ".txt"
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def triplets_of(folder: str) -> dict[str, list[dict]]:
    """{image file name: its triplets} from an SR4G export's pos_relations.jsonl; {} where there is none."""
    path = os.path.join(folder, RELATIONS_FILE)
    if not os.path.exists(path):
        return {}
    out: dict[str, list[dict]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                out.setdefault(row["file_name"], []).append(row)
    return out


def triplet_relations(caption: str, rows: list[dict], where: str) -> list[Relation]:
    """Relations of SR4G triplets bound to the caption's words; ValueError naming the sample when a
    triplet's subject or object phrase is not in the caption (an edited caption, a stale folder)."""
    rels = []
    for row in rows:
        try:
            s, o = find_phrase(caption, row["subject_phrase"]), find_phrase(caption, row["object_phrase"])
        except ValueError as e:
            raise ValueError(f"{where}: its relation '{row['subject_phrase']} {row['relation']} {row['object_phrase']}' "
                             f"does not match its caption {caption!r} ({e}); rebuild the dataset with SR4G Spatial "
                             f"Captions or delete {RELATIONS_FILE} to parse the captions instead") from None
        try:
            rel = canonical_relation(row["relation"])
        except ValueError:
            rel = row["relation"]  # an SR4G relation PSG cannot guide (inside, wider, ...): diffusion loss only
        rels.append(Relation(row["subject_phrase"], rel, row["object_phrase"], s, o))
    return rels


def single(value):
    """A widget's value from an input list (is_input_list gives [value]; a value passed directly stays)."""
    return value[0] if isinstance(value, list) and value else value


def dataset_latents(latents) -> dict:
    """One LATENT of all training images from Make Training Dataset's list (one latent per image, ComfyUI
    0.33+) or one batched LATENT (VAE Encode, 0.3.x); ValueError naming `latents` for mixed sizes."""
    items = latents if isinstance(latents, list) else [latents]
    samples = [x["samples"] for x in items]
    if not samples:
        raise ValueError("latents is empty: connect the training images' latents")
    shapes = sorted({tuple(x.shape[1:]) for x in samples})
    if len(shapes) > 1:
        raise ValueError(f"latents: the training images have {len(shapes)} different sizes ({shapes[:3]}...): resize "
                         "them to one size before encoding (for example Upscale Image with crop center)")
    return {"samples": torch.cat(samples)}


def dataset_conditioning(positive) -> list:
    """The CONDITIONING entries, one per image: a list of conditionings (0.33+) flattened, one kept as is."""
    if isinstance(positive, list) and positive and isinstance(positive[0], list) and positive[0] and \
            isinstance(positive[0][0], list):
        return [entry for cond in positive for entry in cond]
    return positive


@dataclass
class Capture:
    """Head-mean attention of the chosen level's layers, recorded during the training forward only."""

    enabled: bool = False  # the whole run: maps are computed in every forward, recomputations included
    recording: bool = False  # this step's forward: they are kept
    probs: list[torch.Tensor] = field(default_factory=list)
    hw: tuple[int, int] = (0, 0)  # the maps' grid (UNet: set by the layers; DiT: by the sampler per batch)
    joint: bool = False  # Flux / SD3: joint-attention maps of chosen blocks
    txt_len: int = 0  # DiT: text tokens at the start of the joint sequence (set by the double blocks)
    softmax: str = "text"  # DiT: as PoS Guidance's softmax input


def make_attn2(cap: Capture, previous):
    """attn2 replace of one layer of the level: records its attention (with gradients) and attends as usual."""

    def attn2(q, k, v, extra_options):
        if cap.enabled:  # gradient checkpointing's recomputation must run the same ops as the forward
            probs = training.head_mean_probs(q, k, extra_options["n_heads"])
            if cap.recording:  # the forward, not the recomputation in backward
                cap.probs.append(probs)
                cap.hw = tuple(int(s) for s in extra_options["activations_shape"][-2:])
        if previous is not None:
            return previous(q, k, v, extra_options)
        return optimized_attention(q, k, v, extra_options["n_heads"])

    return attn2


def make_joint_override(cap: Capture, previous):
    """optimized_attention_override of a chosen DiT block: records its image-to-text attention (with
    gradients; text first, then the image grid) and attends exactly as it would have."""

    def override(func, *args, **kwargs):
        if cap.enabled:  # as make_attn2: the same ops in checkpointing's recomputation
            heads = kwargs.get("heads", args[3] if len(args) > 3 else None)
            skip = kwargs.get("skip_reshape", False)
            q, k = heads_view(args[0], heads, skip), heads_view(args[1], heads, skip)
            t, n = cap.txt_len, cap.hw[0] * cap.hw[1]
            if t and q.shape[2] >= t + n:  # not SD3.5-medium's image-only second attention
                probs = training.joint_head_mean_probs(q, k, (0, t), (t, t + n), cap.softmax)
                if cap.recording:
                    cap.probs.append(probs)
        if previous is not None:
            return previous(func, *args, **kwargs)
        return func(*args, **kwargs)

    return override


def make_dit_patch(cap: Capture, previous, capture: bool):
    """"dit" block replace: a double block notes the text length; a chosen block records its maps."""

    def patch(args, extra):
        if "txt" in args:
            cap.txt_len = int(args["txt"].shape[1])
        if capture and cap.enabled:
            to = dict(args.get("transformer_options") or {})
            to["optimized_attention_override"] = make_joint_override(cap, to.get("optimized_attention_override"))
            args = dict(args, transformer_options=to)
        if previous is not None:
            return previous(args, extra)
        return extra["original_block"](args)

    return patch


def install_capture(mp, family, targets, cap: Capture) -> None:
    """The capture patches on the clone: attn2 replaces on the UNet level's layers, or "dit" replaces on
    the chosen Flux / SD3 blocks (and on double block 0, which gives the text length to single blocks)."""
    patches = mp.model_options.get("transformer_options", {}).get("patches_replace", {})
    if not cap.joint:
        existing = patches.get("attn2", {})
        for key in targets:
            mp.set_model_attn2_replace(make_attn2(cap, existing.get(key, existing.get(key[:2]))), *key)
        return
    existing = patches.get("dit", {})
    for key in sorted(set(targets) | {("double_block", 0)}):
        mp.set_model_patch_replace(make_dit_patch(cap, existing.get(key), key in targets), "dit", *key)


def level_modules(dm, targets) -> set[int]:
    """ids of the SpatialTransformers holding the captured layers. Gradient checkpointing leaves them out:
    its recomputation reads `transformer_options` after the forward has moved its block key on, so an
    attn2 patch would land on another layer (or none) and the recomputed graph would not match."""
    out = set()
    for block, number, _ in targets:
        blk = {"input": lambda i: dm.input_blocks[i], "middle": lambda i: dm.middle_block,
               "output": lambda i: dm.output_blocks[i]}[block](number)
        out |= {id(m) for m in blk.modules() if isinstance(m, SpatialTransformer)}
    return out


def batch_cond(conds: list[dict]) -> dict:
    """One cond whose model inputs stack the batch's captions row by row, so latent i is denoised with
    caption i (a list of conds would give every latent the mean of all the batch's captions)."""
    merged = dict(conds[0])
    mc = {}
    for key, c in conds[0]["model_conds"].items():
        mc[key] = c._copy_with(c.concat([x["model_conds"][key] for x in conds[1:]])) if len(conds) > 1 else c
    merged["model_conds"] = mc
    return merged


def make_sampler(nodes_train, cap: Capture, samples: list, weight: float, criterion, optimizer, batch_size: int,
                 steps: int, grad_acc: int, seed: int, dtype, losses: dict, pbar, noise_levels: float = 1.0,
                 grid=None):
    """A comfy Sampler whose `sample` is the training loop: diffusion loss (ComfyUI's: x0 prediction against
    the clean latent at a uniform random noise level; for flow models, Flux and SD3, the flow-matching loss
    weighted by t^2) + weight x PoS loss of the same forward's maps, for the samples whose noise level is in
    the noisiest `noise_levels` fraction (where layout is decided). `grid`: a DiT's image-token grid."""

    class PoSTrainSampler(comfy.samplers.Sampler):
        def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                   disable_pbar=False):
            model_wrap.conds = nodes_train.process_cond_list(model_wrap.conds)
            conds = model_wrap.conds["positive"]
            n = latent_image.shape[0]
            ms = model_wrap.inner_model.model_sampling
            gen = torch.Generator().manual_seed(seed)
            for i in range(steps * grad_acc):
                comfy.model_management.throw_exception_if_processing_interrupted()
                t0 = time.perf_counter()
                idx = torch.randperm(n, generator=gen)[:batch_size].tolist()
                x0 = torch.stack([latent_image[j] for j in idx])
                eps = torch.randn(x0.shape, generator=gen).to(x0)
                pct = [float(torch.rand((), generator=gen)) for _ in idx]  # 0 = the noisiest
                sig = torch.tensor([float(ms.percent_to_sigma(p)) for p in pct]).to(x0.device)
                xt = ms.noise_scaling(sig, eps, x0, False)
                target = ms.noise_scaling(torch.zeros_like(sig), torch.zeros_like(eps), x0, False)
                model_wrap.conds["positive"] = [batch_cond([conds[j] for j in idx])]
                args = nodes_train.make_batch_extra_option_dict(extra_args, idx, full_size=n)
                batch = [samples[j] if p < noise_levels else None for j, p in zip(idx, pct)]
                cap.probs, cap.recording = [], weight > 0 and any(s is not None for s in batch)
                if grid is not None:
                    cap.hw = grid(x0.shape[-2:])
                # Flux's and SD3's stock blocks add to their streams in place, over tensors autograd saved:
                # its mutation mode keeps a copy where they do (as the Flux testbed trains)
                mutation = torch.autograd.graph.allow_mutation_on_saved_tensors() if cap.joint else nullcontext()
                with mutation:
                    try:
                        with torch.autocast(xt.device.type, dtype=dtype, enabled=dtype != torch.float32):
                            pred = model_wrap(xt, sig, **args)
                            diff = criterion(pred, target)
                    finally:
                        cap.recording = False
                    pos = diff.new_zeros(())
                    if cap.probs:
                        probs = torch.stack(cap.probs).mean(dim=0)  # the level's layers / blocks, as PSG averages
                        pos = training.batch_loss(training.attention_loss(probs, *cap.hw, batch), batch)
                    loss = diff + weight * pos
                    (loss / grad_acc).backward()
                cap.probs = []
                if (i + 1) % grad_acc == 0:
                    optimizer.step()
                    optimizer.zero_grad()
                losses["loss"].append(loss.item())
                losses["diffusion"].append(diff.item())
                losses["pos"].append(pos.item())
                losses["seconds"].append(time.perf_counter() - t0)
                pbar.update(1)
            return torch.zeros_like(latent_image)

    return PoSTrainSampler()


def loss_graph(losses: dict, weight: float) -> torch.Tensor:
    """Both parts of the loss per step (diffusion, weight x PoS, their sum) as an IMAGE [1, H, W, 3]."""
    w, h, m = 720, 360, 48
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    series = [("total", losses["loss"], (0, 0, 0)), ("diffusion", losses["diffusion"], (30, 90, 200)),
              (f"{weight:g} x PoS", [weight * v for v in losses["pos"]], (220, 60, 40))]
    top = max([max(v) for _, v, _ in series if v] + [1e-12])
    d.line([(m, 10), (m, h - m), (w - 10, h - m)], fill="black", width=1)
    d.text((4, 10), f"{top:.3g}", fill="black")
    d.text((4, h - m - 8), "0", fill="black")
    d.text((w // 2 - 20, h - m + 18), "step", fill="black")
    for k, (name, vals, col) in enumerate(series):
        if len(vals) > 1:
            pts = [(m + (w - m - 10) * i / (len(vals) - 1), h - m - (h - m - 10) * v / top) for i, v in enumerate(vals)]
            d.line(pts, fill=col, width=2)
        d.text((w - 170, 14 + 16 * k), f"-- {name}", fill=col)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]


class PoSTrainLoRA(io.ComfyNode):
    """Train a LoRA whose cross-attention lays out each caption's relations (PoS loss) as it denoises."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        try:
            algorithms = list(comfy_training()[1].keys())
        except RuntimeError:  # no trainer in this ComfyUI: the node still registers; running it says why
            algorithms = ["LoRA"]
        return io.Schema(
            node_id="PoSTrainLoRA",
            display_name="PoS Train LoRA",
            category=CATEGORY,
            is_experimental=True,
            is_input_list=True,  # as Train LoRA: the dataset nodes of ComfyUI 0.33+ give one latent per image
            description="ComfyUI's LoRA training with the PoS loss of each caption's relations added on the "
                        "attention maps of the same forward pass: a LoRA that draws relations right without "
                        "PoS Guidance at sampling time. SD1.x, SD2.x, SDXL (cross-attention), Flux.1 and "
                        "SD3 / SD3.5 (joint attention).",
            inputs=[
                io.Model.Input("model", tooltip="The model to train the LoRA on (SD1.x, SD2.x, SDXL, Flux.1, SD3 / "
                                                 "SD3.5)."),
                io.Latent.Input("latents", tooltip="The training images as latents: Make Training Dataset's latents "
                                                   "(ComfyUI 0.33+), or VAE Encode of the dataset loader's IMAGE "
                                                   "(0.3.x). All the same size."),
                io.Conditioning.Input("positive", tooltip="Their captions, encoded, one per latent in the same order: "
                                                          "Make Training Dataset's conditioning (0.33+), or the "
                                                          "dataset loader's CONDITIONING (0.3.x)."),
                io.Clip.Input("clip", tooltip="The CLIP that encoded the captions: finds each object's tokens."),
                io.String.Input("dataset_folder", default="",
                                tooltip="The folder the dataset loader read (SR4G Spatial Captions' folder output, "
                                        "or its name in ComfyUI's input folder): captions are read from its .txt "
                                        "files in the loader's order, relations from its pos_relations.jsonl "
                                        "(SR4G) or parsed from the captions. Empty: use captions below."),
                io.String.Input("captions", default="", multiline=True,
                                tooltip="Used when dataset_folder is empty: one caption a line, in the order of "
                                        "the latents; relations are parsed from them."),
                io.Float.Input("pos_weight", default=1.0, min=0.0, max=1000.0, step=0.01,
                               tooltip="Weight of the PoS loss beside the diffusion loss. 0 = plain LoRA "
                                       "training (the control)."),
                io.Float.Input("pos_noise_levels", default=1.0, min=0.01, max=1.0, step=0.01,
                               tooltip="The PoS loss is applied to samples drawn at the noisiest fraction of noise "
                                       "levels: 1 = all; 0.5 = the noisier half, where PoS Guidance acts and the "
                                       "layout is decided. Other samples train on the diffusion loss alone."),
                io.Combo.Input("attention_level", options=TRAIN_LEVELS, default="auto",
                               tooltip="UNet models: the level whose cross-attention maps the PoS loss reads: auto "
                                       "= the level PoS Guidance uses (SD1 16 x 16 at 512 px, SDXL 32 x 32 at "
                                       "1024 px). Flux / SD3: leave auto and choose blocks."),
                io.Int.Input("batch_size", default=1, min=1, max=10000,
                             tooltip="Samples a step; each latent is denoised with its own caption."),
                io.Int.Input("grad_accumulation_steps", default=1, min=1, max=1024,
                             tooltip="Steps whose gradients are summed before each optimiser step."),
                io.Int.Input("steps", default=16, min=1, max=100000, tooltip="Optimiser steps to train."),
                io.Float.Input("learning_rate", default=0.0005, min=0.0000001, max=1.0, step=0.000001,
                               tooltip="The learning rate."),
                io.Int.Input("rank", default=8, min=1, max=128, tooltip="The rank of the LoRA layers."),
                io.Combo.Input("optimizer", options=["AdamW", "Adam", "SGD", "RMSprop"], default="AdamW",
                               tooltip="The optimiser."),
                io.Combo.Input("loss_function", options=["MSE", "L1", "Huber", "SmoothL1"], default="MSE",
                               tooltip="The diffusion loss (on the predicted clean latent, as Train LoRA)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
                             tooltip="Seeds the LoRA's initial weights, the batches, noise and noise levels."),
                io.Combo.Input("training_dtype", options=["bf16", "fp32"], default="bf16",
                               tooltip="The dtype to train in (fp32 on a CPU)."),
                io.Combo.Input("lora_dtype", options=["bf16", "fp32"], default="bf16",
                               tooltip="The dtype of the LoRA's weights."),
                io.Combo.Input("algorithm", options=algorithms, default=algorithms[0],
                               tooltip="ComfyUI's weight adapter to train (LoRA, LoHa, LoKr, OFT, ...)."),
                io.Boolean.Input("gradient_checkpointing", default=True,
                                 tooltip="Recompute activations in the backward pass: less memory, slower."),
                io.String.Input("blocks", default="auto", optional=True,
                                tooltip="Flux / SD3 only: the joint-attention blocks whose maps the PoS loss "
                                        "reads, as PoS Guidance's blocks input: auto (the published best blocks "
                                        "of the family), all, or a list such as 11,12,14 (s3 = Flux single "
                                        "block 3). Use the blocks PoS Guidance works with on this model; maps "
                                        "(a per-run choice) is not for training."),
                io.Combo.Input("softmax", options=["text", "joint"], default="text", optional=True,
                               tooltip="Flux / SD3 only: text = each image query's softmax over the text keys "
                                       "(PoS Guidance's default); joint = the model's own softmax over the "
                                       "whole joint row."),
            ],
            outputs=[
                io.Model.Output(display_name="model_with_lora", tooltip="The model with the trained LoRA applied."),
                io.LoraModel.Output(display_name="lora", tooltip="The LoRA: connect Save LoRA Weights, or Load "
                                                                 "LoRA Model to use it now."),
                io.LossMap.Output(display_name="loss", tooltip="Per step: loss (the total, what Plot Loss Graph "
                                                               "draws), diffusion, pos and seconds."),
                io.Int.Output(display_name="steps", tooltip="Steps trained, for Save LoRA Weights' file name."),
                io.Image.Output(display_name="loss_graph", tooltip="Both parts of the loss per step."),
                io.String.Output(display_name="summary", tooltip="Samples with and without relations, losses "
                                                                 "and seconds per step."),
            ],
        )

    @classmethod
    def execute(cls, model, latents, positive, clip, dataset_folder, captions, pos_weight, pos_noise_levels,
                attention_level,
                batch_size, grad_accumulation_steps, steps, learning_rate, rank, optimizer, loss_function, seed,
                training_dtype, lora_dtype, algorithm, gradient_checkpointing, blocks="auto",
                softmax="text") -> io.NodeOutput:
        # every input arrives as a list (is_input_list): the widgets' single values, the dataset's items
        (model, clip, dataset_folder, captions, pos_weight, pos_noise_levels, attention_level, batch_size,
         grad_accumulation_steps, steps, learning_rate, rank, optimizer, loss_function, seed, training_dtype,
         lora_dtype, algorithm, gradient_checkpointing, blocks, softmax) = (
            single(v) for v in (model, clip, dataset_folder, captions, pos_weight, pos_noise_levels, attention_level,
                                batch_size, grad_accumulation_steps, steps, learning_rate, rank, optimizer,
                                loss_function, seed, training_dtype, lora_dtype, algorithm, gradient_checkpointing,
                                blocks, softmax))
        latents, positive = dataset_latents(latents), dataset_conditioning(positive)
        nodes_train, adapter_maps = comfy_training()
        family = trainable_family(model, "PoS Train LoRA")
        joint = family.name in DIT_FAMILIES
        if clip is None:
            raise ValueError("clip is empty: connect the CLIP that encoded the captions")
        texts, rows, where = cls._captions(dataset_folder, captions)
        n = latents["samples"].shape[0]
        if len(positive) == 1 and n > 1:
            positive = positive * n
        if len(texts) != n or len(positive) != n:
            raise ValueError(f"{n} latents, {len(positive)} conditionings and {len(texts)} captions: they must be "
                             "one per image, in the same order (connect the same dataset to all three)")
        cls._check_order(clip, texts, positive, where)
        layout = clip_layout(clip)
        samples, skipped = [], 0
        for i, text in enumerate(texts):
            rels = None
            if rows is not None:
                rels = triplet_relations(text, rows[i], where[i])
            try:
                s = training.caption_relations(text, layout, rels)
            except ValueError as e:
                raise ValueError(f"{where[i]}: caption {text!r}: {e}") from None
            samples.append(s)
            skipped += s.skipped if s else 0
        with_rel = sum(s is not None for s in samples)
        if pos_weight > 0 and not with_rel:
            raise ValueError("no caption has a left / right / above / below relation for the PoS loss: check the "
                             "captions, or set pos_weight to 0 for plain LoRA training")
        targets = cls._targets(family, joint, attention_level, blocks, softmax)
        mp = model.clone()
        dtype = node_helpers.string_to_torch_dtype(training_dtype)
        ldtype = node_helpers.string_to_torch_dtype(lora_dtype)
        mp.set_model_compute_dtype(dtype)
        cap = Capture(enabled=pos_weight > 0, joint=joint, softmax=softmax)
        install_capture(mp, family, targets, cap)
        losses = {"loss": [], "diffusion": [], "pos": [], "seconds": []}
        with torch.inference_mode(False):
            lora_sd, adapters = cls._adapters(mp, nodes_train, adapter_maps[algorithm], rank, ldtype, seed)
            opt = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam, "SGD": torch.optim.SGD,
                   "RMSprop": torch.optim.RMSprop}[optimizer](lora_sd.values(), lr=learning_rate)
            criterion = {"MSE": torch.nn.MSELoss, "L1": torch.nn.L1Loss, "Huber": torch.nn.HuberLoss,
                         "SmoothL1": torch.nn.SmoothL1Loss}[loss_function]()
            if gradient_checkpointing:  # a DiT's capture rides in each block call's own options: nothing to keep out
                keep = level_modules(mp.model.diffusion_model, targets) if pos_weight > 0 and not joint else set()
                for m in nodes_train.find_all_highest_child_module_with_forward(mp.model.diffusion_model):
                    if not keep & {id(x) for x in m.modules()}:
                        nodes_train.patch(m)
            mp.model.requires_grad_(False)
            comfy.model_management.load_models_gpu([mp], memory_required=1e20, force_full_load=True)
            pbar = comfy.utils.ProgressBar(steps * grad_accumulation_steps)
            log.info("[PoS spatial] PoS Train LoRA: training %d steps on %d samples (%d with relations), "
                     "pos_weight %g", steps, n, with_rel, pos_weight)
            sampler = make_sampler(nodes_train, cap, samples, pos_weight, criterion, opt, batch_size, steps,
                                   grad_accumulation_steps, seed, dtype, losses, pbar, pos_noise_levels,
                                   family.grid if joint else None)
            from comfy_extras.nodes_custom_sampler import Guider_Basic

            guider = Guider_Basic(mp)
            guider.set_conds(positive)
            data = latents["samples"].to(dtype)
            # weights ComfyUI loaded in inference mode and no adapter wraps (Flux's RMSNorm scales, for one)
            # cannot be saved for backward: zero-copy autograd-usable aliases stand in for them while training
            aliases = WeightAliases(mp.model.diffusion_model)
            try:  # ComfyUI's trainer passes one dummy sigma per image: the loop draws its own noise levels
                with aliases, differentiable():
                    guider.sample(torch.zeros_like(data), data, sampler, torch.arange(n), seed=seed)
            finally:
                for m in mp.model.modules():
                    nodes_train.unpatch(m)
            for a in adapters:
                a.requires_grad_(False)
            lora_sd = {k: v.detach().to(ldtype) for k, v in lora_sd.items()}
        summary = cls._summary(n, with_rel, skipped, pos_weight, losses, targets, pos_noise_levels, joint)
        log.info("[PoS spatial] PoS Train LoRA: %s", summary.replace("\n", "; "))
        return io.NodeOutput(mp, lora_sd, losses, steps, loss_graph(losses, pos_weight), summary)

    @staticmethod
    def _targets(family, joint: bool, attention_level: str, blocks: str, softmax: str) -> list[tuple]:
        """The layers (UNet level) or blocks (Flux / SD3) whose maps the PoS loss reads; ValueError naming
        the input for a choice that does not fit the model or training."""
        blocks = (blocks or "auto").strip()
        if attention_level not in TRAIN_LEVELS:
            raise ValueError(f"attention_level must be one of {', '.join(TRAIN_LEVELS)} for training, got "
                             f"{attention_level!r}")
        if softmax not in ("text", "joint"):
            raise ValueError(f"softmax must be text or joint, got {softmax!r}")
        if not joint:
            if blocks.lower() != "auto":
                raise ValueError(f"blocks applies to Flux / SD3 models; this is {family.name} (a UNet): leave blocks "
                                 "auto and choose attention_level")
            return family.targets(attention_level, "auto")
        if attention_level != "auto":
            raise ValueError(f"attention_level applies to UNet models; this is {family.name}: leave it auto and "
                             "choose blocks")
        if blocks.lower() == MAPS:
            raise ValueError("blocks 'maps' is PoS Guidance's per-run choice, not for training: give the blocks "
                             "(for example those 'maps' picks in PoS Guidance's log on this model), or auto")
        return family.targets("auto", blocks)

    @staticmethod
    def _captions(dataset_folder: str, captions: str):
        """(captions, SR4G triplet rows per sample or None, a name per sample for messages)."""
        name = (dataset_folder or "").strip()
        if not name:
            texts = [line.strip() for line in (captions or "").splitlines() if line.strip()]
            if not texts:
                raise ValueError("dataset_folder and captions are both empty: connect the dataset's folder (SR4G "
                                 "Spatial Captions' folder output) or type one caption a line")
            return texts, None, [f"caption line {i + 1}" for i in range(len(texts))]
        root = os.path.realpath(folder_paths.get_input_directory())
        folder = os.path.realpath(name if os.path.isabs(name) else os.path.join(root, name))
        if not os.path.isdir(folder):
            raise ValueError(f"dataset_folder {dataset_folder!r} is not a folder in ComfyUI's input folder: connect "
                             "the folder output of SR4G Spatial Captions or type the folder the dataset loader reads")
        files = dataset_files(folder)
        if not files:
            raise ValueError(f"dataset_folder {dataset_folder!r} has no images (.png, .jpg, .jpeg, .webp)")
        triplets = triplets_of(folder)
        rows = [triplets.get(os.path.basename(f), []) for f in files] if triplets else None
        where = [f"sample {i} ({os.path.relpath(f, folder)})" for i, f in enumerate(files)]
        return [caption_of(f) for f in files], rows, where

    @staticmethod
    def _check_order(clip, texts, positive, where) -> None:
        """Caption 0 and the last must encode to conditioning 0 and the last: a wrong folder or order would
        otherwise train each latent toward another caption's relations."""
        for i in sorted({0, len(texts) - 1}):
            mine = clip.encode_from_tokens_scheduled(clip.tokenize(texts[i]))[0][0]
            theirs = positive[i][0]
            if mine.shape != theirs.shape or not torch.allclose(mine.float().cpu(), theirs.float().cpu(), atol=1e-3):
                raise ValueError(f"{where[i]}: its caption {texts[i]!r} does not encode to conditioning {i}: the "
                                 "captions must be the dataset's, in the loader's order (connect the same folder "
                                 "and CLIP to the dataset loader and to this node)")

    @staticmethod
    def _adapters(mp, nodes_train, adapter_cls, rank: int, ldtype, seed: int):
        """Train adapters on every weight, as Train LoRA puts them: the algorithm's adapter on 2-D+ weights,
        a trained difference on 1-D weights and biases; keys in the LoRA format Load LoRA reads."""
        lora_sd, adapters = {}, []
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, without touching ComfyUI's own RNG
            torch.manual_seed(seed)
            for name, m in mp.model.named_modules():
                PoSTrainLoRA._adapt(mp, nodes_train, adapter_cls, rank, ldtype, name, m, lora_sd, adapters)
        return lora_sd, adapters

    @staticmethod
    def _adapt(mp, nodes_train, adapter_cls, rank, ldtype, name, m, lora_sd, adapters) -> None:
        """The adapters of one module (none where ComfyUI's ops cannot wrap its weights)."""
        if not hasattr(m, "weight_function"):
            return
        if m.weight is not None:
            key = f"{name}.weight"
            if m.weight.ndim >= 2:
                a = adapter_cls.create_train(m.weight, rank=rank, alpha=1.0).to(ldtype)
                for pname, p in a.named_parameters():
                    lora_sd[f"{name}.{pname}"] = p
            else:
                p = torch.nn.Parameter(torch.zeros(m.weight.shape, dtype=ldtype, requires_grad=True))
                a = nodes_train.BiasDiff(p)
                lora_sd[f"{name}.diff"] = p
            mp.add_weight_wrapper(key, a)
            adapters.append(a)
        if getattr(m, "bias", None) is not None:
            p = torch.nn.Parameter(torch.zeros(m.bias.shape, dtype=ldtype, requires_grad=True))
            a = nodes_train.BiasDiff(p)
            lora_sd[f"{name}.diff_b"] = p
            mp.add_weight_wrapper(f"{name}.bias", a)
            adapters.append(a)

    @staticmethod
    def _summary(n, with_rel, skipped, weight, losses, targets, noise_levels=1.0, joint=False) -> str:
        secs = losses["seconds"][1:] or losses["seconds"]
        tail = max(1, len(losses["loss"]) // 10)
        mean = lambda v: sum(v[-tail:]) / len(v[-tail:]) if v else float("nan")
        return "\n".join([
            (f"samples: {n}; with a left/right/above/below relation (PoS loss): {with_rel}; without "
             f"(diffusion loss only): {n - with_rel}; relations PSG cannot guide, left out: {skipped}"),
            (f"pos_weight {weight:g} on the noisiest {100 * noise_levels:g} % of noise levels; "
             + (f"blocks: {','.join(block_label(k) for k in targets)}" if joint else
                f"attention layers: {len(targets)}") + f"; steps: {len(losses['loss'])}"),
            (f"last 10 %: diffusion {mean(losses['diffusion']):.5f}, PoS {mean(losses['pos']):.5f}, "
             f"total {mean(losses['loss']):.5f}"),
            f"seconds a step: {sum(secs) / max(1, len(secs)):.3f}",
        ])


NODES = [PoSTrainLoRA]
