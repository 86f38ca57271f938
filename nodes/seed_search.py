"""PoS Seed Search: generate several initial noises, score them, keep the best (PAPER.md section 5)."""

from __future__ import annotations

import json

import numpy as np
import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
from comfy_api.latest import io, ui

from ..pos_core import attention
from ..pos_core.evaluate import image_score
from ..pos_core.seeds import candidate_seeds
from ..pos_core.tokens import RelationSet
from . import psg_patch
from .common import CATEGORY, PosDepth, PosDetector, PosRelations, require_relations
from .guidance import dit_inputs
from .render import caption, grid, render_tile, to_tensor
from .scoring import score_images

MODES = ("attention", "pse")
# samplers whose step i+1 depends on the latent at step i alone (no history, no injected noise): a
# candidate's search-step latent can be finished from where the search left it
RESUMABLE = frozenset({"euler", "heun", "dpm_2", "ddim"})


def auto_batch(model, latent: torch.Tensor, candidates: int, requested: int) -> int:
    """Candidates per batch: as asked, or as many as the free memory of the model's device holds."""
    if requested > 0:
        return min(requested, candidates)
    free = comfy.model_management.get_free_memory(model.load_device)
    shape = list(latent.shape)
    for b in range(candidates, 0, -1):
        shape[0] = 2 * b  # conditional and unconditional rows
        # a guided or recorded pass keeps activations for backward: budget about three forwards
        if 3 * model.model.memory_required(shape) <= 0.8 * free:
            return b
    return 1


def span_sampler(sampler_name: str, first: int, last: int, start: torch.Tensor | None = None,
                 keep: dict | None = None) -> comfy.samplers.KSAMPLER:
    """The named sampler run over steps [first, last) of a full schedule, from `start` (the latent at
    step `first`) when given; `keep["x"]` gets the latent it ends on. ComfyUI and patches such as PoS
    Guidance still see the full schedule, so guided steps and step sizes are those of a whole run."""
    base = comfy.samplers.sampler_object(sampler_name)

    def run(model, x, sigmas, extra_args=None, callback=None, disable=None, **options):
        if start is not None:
            x = start.to(device=x.device, dtype=x.dtype)
        shifted = None if callback is None else (lambda d: callback({**d, "i": d["i"] + first}))
        x = base.sampler_function(model, x, sigmas[first:last + 1], extra_args=extra_args, callback=shifted,
                                  disable=disable, **options)
        if keep is not None:
            keep["x"] = x
        return x

    return comfy.samplers.KSAMPLER(run, base.extra_options, base.inpaint_options)


def searched_maps(run, k: int) -> torch.Tensor:
    """Attention maps [B, G, h, w] of a search batch, averaged over its first k recorded steps."""
    steps = [s for s in sorted(run.maps) if s < k]
    if not steps:
        raise ValueError("no attention was recorded during the search steps")
    return torch.stack([run.maps[s] for s in steps]).mean(dim=0)


class PoSSeedSearch(io.ComfyNode):
    """Pick the initial noise whose generation best follows the relations."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PoSSeedSearch",
            display_name="PoS Seed Search",
            category=CATEGORY,
            description="Tries several seeds (candidates) and keeps the best: 'attention' runs the first steps "
                        "of each and scores the PoS loss of its cross-attention (cheap); 'pse' generates each fully, "
                        "decodes, detects and scores PSE. The candidates are the seed itself and seeds derived "
                        "from it (splitmix64), so runs with nearby seeds (seed+1, ...) try different noises. "
                        "Outputs the best latent, finished, and its seed: a KSampler with best_seed and the same "
                        "settings makes the same latent up to float rounding (the search samples in batches, "
                        "which round differently: on CPU float32 a few millionths of the latent's largest value).",
            inputs=[
                io.Model.Input("model", tooltip="Guided (PoS Guidance) or plain SD1.x / SD2.x / SDXL, Flux.1 or "
                                                "SD3 / SD3.5 model (Flux dev: cfg 1, FluxGuidance on the prompt)."),
                io.Conditioning.Input("positive", tooltip="The prompt's conditioning."),
                io.Conditioning.Input("negative", tooltip="The negative conditioning."),
                io.Latent.Input("latent_image", tooltip="The empty latent (its first image sets the size)."),
                PosRelations.Input("relations", tooltip="From PoS Relations from Prompt or PoS Relation."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Candidate 0 uses this seed; the others use seeds derived from it "
                                     "(splitmix64 of seed and index, below 2**48), so seed and seed+1 share "
                                     "no candidate. The table lists them."),
                io.Int.Input("candidates", default=8, min=1, max=256, tooltip="How many seeds to try."),
                io.Combo.Input("mode", options=list(MODES), default="attention",
                               tooltip="attention: score the first steps' cross-attention (cheap); pse: full "
                                       "generations scored by PSE (needs vae and detector)."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Sampling steps of a full generation."),
                io.Int.Input("search_steps", default=4, min=1, max=10000,
                             tooltip="attention mode: how many first steps each candidate runs (authors-style "
                                     "cheap score; 10 of 50 is 20 %)."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, tooltip="Classifier-free guidance."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler",
                               tooltip="Sampler, as in KSampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="Scheduler, as in KSampler."),
                io.Int.Input("batch_size", default=0, min=0, max=256,
                             tooltip="Candidates sampled together; 0 = as many as free memory allows."),
                io.Vae.Input("vae", optional=True, tooltip="Decodes candidates: required for pse mode; in "
                                                           "attention mode it shows their previews."),
                PosDetector.Input("detector", optional=True, tooltip="PoS Detector Loader: required for pse mode."),
                PosDepth.Input("depth_model", optional=True, tooltip="PoS Depth Loader: for front / behind in pse mode."),
                *dit_inputs(),  # attention mode on Flux / SD3 ranks by these blocks' maps
            ],
            outputs=[
                io.Latent.Output(display_name="LATENT", tooltip="The best candidate, fully sampled (what a KSampler "
                                                                 "with best_seed makes, up to float rounding)."),
                io.Int.Output(display_name="best_seed",
                              tooltip="Its seed (a derived one unless candidate 0 won): a KSampler with this seed "
                                      "and the same settings makes the same latent up to float rounding."),
                io.String.Output(display_name="table", tooltip="Every candidate's seed and score, best first."),
                io.Image.Output(display_name="grid", tooltip="All candidates with their scores."),
            ],
        )

    @classmethod
    def execute(cls, model, positive, negative, latent_image, relations: RelationSet, seed: int, candidates: int,
                mode: str, steps: int, search_steps: int, cfg: float, sampler_name: str, scheduler: str,
                batch_size: int = 0, vae=None, detector=None, depth_model=None, blocks: str = "auto",
                softmax: str = "text") -> io.NodeOutput:
        require_relations(relations)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "pse" and (vae is None or detector is None):
            raise ValueError("pse mode decodes and detects each candidate: connect vae and detector (PoS Detector "
                             "Loader), or use attention mode")
        if mode == "attention" and search_steps > steps:
            raise ValueError(f"search_steps ({search_steps}) must not exceed steps ({steps})")
        if mode == "attention" and not attention.guidable_pairs(
                [(0, 0, r.relation) for r in relations.relations]):
            raise ValueError("attention mode ranks left/right/above/below relations by their attention; this "
                             "prompt has only front/behind/near ones: use mode pse with a vae, a detector and a "
                             "PoS Depth Loader on depth_model")
        latent = comfy.sample.fix_empty_latent_channels(model, latent_image["samples"][:1])
        seeds = candidate_seeds(seed, candidates)
        per = auto_batch(model, latent, candidates, batch_size)
        run_steps = search_steps if mode == "attention" else steps
        # deterministic samplers finish the best candidate from its search-step latent; others
        # (ancestral, SDE, multistep) regenerate it from its seed
        resume = mode == "attention" and sampler_name in RESUMABLE
        sigmas = comfy.samplers.KSampler(model, steps, model.load_device, sampler_name, scheduler, 1.0,
                                         model.model_options).sigmas
        final_steps = (steps - run_steps if resume else steps) if mode == "attention" else 0
        pbar = comfy.utils.ProgressBar(candidates * run_steps + final_steps)
        searched, run = model, None
        if mode == "attention":
            searched, run = psg_patch.patch(model, relations, psg_patch.Settings(scale=0.0, softmax=softmax),
                                            blocks=blocks)
            run.keep_choice = True  # blocks=maps: every batch of candidates is ranked by the same blocks

        scores: list[float] = []
        previews: list[torch.Tensor] = []
        samples: list[torch.Tensor] = []
        maps: list[torch.Tensor] = []
        ends: list[torch.Tensor] = []  # attention mode: every candidate's latent at step search_steps
        for start in range(0, candidates, per):
            comfy.model_management.throw_exception_if_processing_interrupted()
            chunk = seeds[start:start + per]
            noise = torch.cat([comfy.sample.prepare_noise(latent, s) for s in chunk])
            x0 = {}

            def callback(step, x0_pred, x, total):
                x0["latest"] = x0_pred
                pbar.update(len(chunk))

            batch = latent.repeat(len(chunk), *[1] * (latent.ndim - 1))  # 5-D latents too (Qwen-Image)
            if mode == "attention":
                keep = {}
                comfy.sample.sample_custom(searched, noise, cfg, span_sampler(sampler_name, 0, run_steps, keep=keep),
                                           sigmas, positive, negative, batch, callback=callback, disable_pbar=True,
                                           seed=chunk[0])
                ends.append(keep["x"])
            else:
                out = comfy.sample.sample(searched, noise, steps, cfg, sampler_name, scheduler, positive, negative,
                                          batch, callback=callback, disable_pbar=True, seed=chunk[0])
            if mode == "attention":
                maps.append(searched_maps(run, run_steps))
                scores += [float(v) for v in attention.maps_loss(maps[-1], run.pairs)]
                if vae is not None and "latest" in x0:
                    previews.append(vae.decode(x0["latest"]))
            else:
                images = vae.decode(out)
                previews.append(images)
                samples.append(out)
                per_image = score_images(images, relations, detector, depth_model)
                scores += [image_score(rs) for rs in per_image]

        order = sorted(range(candidates), key=lambda i: (scores[i] if mode == "attention" else -scores[i], i))
        best = order[0]
        if mode == "attention":
            def final_callback(step, x0_pred, x, total):
                pbar.update(1)

            if resume:
                final = comfy.sample.sample_custom(
                    model, torch.zeros_like(latent), cfg,
                    span_sampler(sampler_name, run_steps, steps, start=torch.cat(ends)[best:best + 1]), sigmas,
                    positive, negative, latent, callback=final_callback, disable_pbar=True, seed=seeds[best])
            else:
                final = comfy.sample.sample(model, comfy.sample.prepare_noise(latent, seeds[best]), steps, cfg,
                                            sampler_name, scheduler, positive, negative, latent,
                                            callback=final_callback, disable_pbar=True, seed=seeds[best])
        else:
            final = torch.cat(samples)[best:best + 1]
        name = "attention loss (lower is better)" if mode == "attention" else "PSE (higher is better)"
        info = {"mode": mode, "score": name, "best_seed": seeds[best]}
        if run is not None and run.choice is not None:  # blocks=maps: which blocks ranked the candidates
            info["blocks"] = ",".join(run.choice["kept"]) or "auto"
        table = json.dumps({**info, "candidates": [{"seed": seeds[i], "score": scores[i]} for i in order]}, indent=1)
        pictures = cls._grid(previews, maps, run.pairs if run else None, scores, seeds, best, mode)
        out_latent = {"samples": final.to(comfy.model_management.intermediate_device())}
        return io.NodeOutput(out_latent, seeds[best], table, pictures, ui=ui.PreviewImage(pictures, cls=cls))

    @staticmethod
    def _grid(previews, maps, pairs, scores, seeds, best, mode) -> torch.Tensor:
        """Every candidate with its seed and score: decoded previews, or (attention mode without a VAE)
        the first relation's attention (subject red, object blue)."""
        cells = []
        images = torch.cat(previews)[..., :3].clamp(0, 1).cpu() if previews else None
        all_maps = torch.cat(maps) if maps else None
        for i in range(len(scores)):
            label = f"{'BEST ' if i == best else ''}seed {seeds[i]}  {'loss' if mode == 'attention' else 'PSE'} " \
                    f"{scores[i]:.4f}"
            if images is not None:
                cells.append(to_tensor(caption((images[i] * 255).byte().numpy(), label)))
            else:
                a, b = all_maps[i, pairs[0][0]].numpy(), all_maps[i, pairs[0][1]].numpy()
                cells.append(to_tensor(render_tile(np.zeros((128, 128, 3), np.uint8), a, b, label)))
        return grid(cells, min(4, len(cells)))[None]


NODES = [PoSSeedSearch]
