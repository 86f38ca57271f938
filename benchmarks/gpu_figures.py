"""GPU figures: seconds per image and peak memory of plain sampling, PoS Guidance and PoS Seed Search on
full-size random-weight SD1.5, SDXL, SD3.5-medium and FLUX.1-dev, in one run of under 10 minutes.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/gpu_figures.py [--steps 10] [--budget-s 540] [--out figures.json]
    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/gpu_figures.py --smoke      # same code, tiny models, CPU, ~1-2 min

Needs only this repository, its requirements and a ComfyUI checkout: no internet, no weights. Each model is
built from ComfyUI's own model classes (comfy.supported_models) with the configuration ComfyUI's detection
gives the real checkpoint (full mode checks that `model_config_from_unet_config` picks the same class for
SD1.5 / SDXL), in the dtype ComfyUI would choose for it on this device (`unet_dtype`), with seeded
N(0, 0.02) weights generated on the device. Text conditioning is random features of the real shapes
(SD1.5: 77 x 768; SDXL: 77 x 2048 + pooled 1280; SD3.5: 154 x 4096 + pooled 2048; Flux: 256 T5 tokens,
FluxGuidance 3.5, cfg 1), so no text encoder is built.

Per model, sampling goes through ComfyUI's KSampler code (nodes.common_ksampler), euler, one image:
  plain   the unpatched model;
  guided  PoS Guidance at its defaults (scale 20, half of the steps guided, blocks / attention_level auto:
          SD1.5 16 x 16 level, SDXL 32 x 32, SD3.5-medium joint blocks 5,7,8,9,10, FLUX.1-dev double blocks
          11,12,14,17,18);
  search  PoS Seed Search, attention mode, N = 8 candidates, search_steps = steps // 5 (20 %, the node's
          default ratio), the best finished; its time is the whole node's (one image out).
Each is timed after a warm-up run of the same variant (2 steps; search: 2 candidates), which is excluded.
Peak memory is torch.cuda.max_memory_allocated over the timed run (reset before it; the weights are
included, and listed separately). On the CPU (--smoke) it is the process's peak RSS, cumulative over the
whole run, so only the plumbing is checked there, not the figures.

Time budget: before each model the script prints an a-priori estimate (guesses for one H100; nothing is
known before the first run), and after the plain warm-up an estimate from the measured time per model call.
A model or variant whose estimate would overrun --budget-s is skipped with a note in the table and JSON.
Prints one Markdown table and writes JSON (--out, default gpu_figures.json).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a photo of a cat to the left of a dog"
CAT, DOG = (4,), (10,)  # token positions of cat / dog (any in-range positions do: the text is random)
CANDIDATES = 8
WARM_STEPS = 2
DISTILL_STEPS = 4  # PoS Distill LoRA training steps timed (after one excluded)
DISTILL_MODELS = ("sd15", "sdxl", "sd35m", "flux")  # the families PoS Distill LoRA trains

# ComfyUI's detection of the real checkpoints (comfy/model_detection.py, ComfyUI 0.3.x)
SD15 = dict(use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
            adm_in_channels=None, in_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
            transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], channel_mult=[1, 2, 4, 4], transformer_depth_middle=1,
            use_linear_in_transformer=False, context_dim=768, num_heads=8,
            transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
            use_temporal_attention=False, use_temporal_resblock=False)
SDXL = dict(use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
            num_classes="sequential", adm_in_channels=2816, in_channels=4, model_channels=320,
            num_res_blocks=[2, 2, 2], transformer_depth=[0, 0, 2, 2, 10, 10], channel_mult=[1, 2, 4],
            transformer_depth_middle=10, use_linear_in_transformer=True, context_dim=2048, num_head_channels=64,
            transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10],
            use_temporal_attention=False, use_temporal_resblock=False)
SD35M = {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 24, "input_size": None,
         "adm_in_channels": 2048, "pos_embed_max_size": 384, "num_patches": 147456, "qk_norm": "rms",
         "pos_embed_scaling_factor": None, "x_block_self_attn_layers": list(range(13)),
         "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 1536}}}
FLUX_DEV = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
                hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=19, depth_single_blocks=38,
                axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True)

# the 2026 families at their real sizes (ComfyUI 0.33's detection configs; Chroma and Qwen-Image exist on 0.3.x too)
FLUX2_DEV = dict(image_model="flux2", in_channels=128, out_channels=128, vec_in_dim=None, context_in_dim=15360,
                 hidden_size=6144, mlp_ratio=3.0, num_heads=48, depth=8, depth_single_blocks=48, axes_dim=[32] * 4,
                 theta=2000, patch_size=1, qkv_bias=False, guidance_embed=True, global_modulation=True,
                 mlp_silu_act=True, ops_bias=False, default_ref_method="index", ref_index_scale=10.0,
                 txt_ids_dims=[3])
CHROMA = dict(image_model="chroma", in_channels=64, out_channels=64, context_in_dim=4096, hidden_size=3072,
              mlp_ratio=4.0, num_heads=24, depth=19, depth_single_blocks=38, axes_dim=[16, 56, 56], theta=10000,
              patch_size=2, qkv_bias=True, in_dim=64, out_dim=3072, hidden_dim=5120, n_layers=5, vec_in_dim=None)
QWEN_IMAGE = dict(image_model="qwen_image", patch_size=2, in_channels=64, out_channels=16, num_layers=60,
                  attention_head_dim=128, num_attention_heads=24, joint_attention_dim=3584, axes_dims_rope=(16, 56, 56))
Z_IMAGE = dict(image_model="lumina2", patch_size=2, in_channels=16, dim=3840, cap_feat_dim=2560, n_layers=30,
               n_heads=30, n_kv_heads=30, qk_norm=True, axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512],
               rope_theta=256.0, ffn_dim_multiplier=8 / 3, z_image_modulation=True, time_scale=1000.0,
               pad_tokens_multiple=32)
# text width and a prompt's length as the model gets it (Flux.2 dev: padded to 512 by the model)
FAMILY_TEXT = {"flux2": (15360, 64), "chroma": (4096, 24), "qwen_image": (3584, 32), "z_image": (2560, 32)}

# --smoke: the same classes at tiny widths and depths
SD15_TINY = dict(SD15, model_channels=64, num_res_blocks=[1, 1], channel_mult=[1, 2], transformer_depth=[1, 1],
                 transformer_depth_output=[1, 1, 1, 1])
SDXL_TINY = dict(SDXL, model_channels=64, num_res_blocks=[1, 1], channel_mult=[1, 2], transformer_depth=[0, 1],
                 transformer_depth_middle=1, transformer_depth_output=[0, 0, 1, 1])
SD35M_TINY = dict(SD35M, depth=2, pos_embed_max_size=32, num_patches=1024, x_block_self_attn_layers=[0],
                  context_embedder_config={"target": "torch.nn.Linear",
                                           "params": {"in_features": 4096, "out_features": 128}})
FLUX_TINY = dict(FLUX_DEV, hidden_size=64, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12])
FLUX2_TINY = dict(FLUX2_DEV, context_in_dim=15360, hidden_size=64, num_heads=2, depth=1, depth_single_blocks=1,
                  axes_dim=[8, 8, 8, 8])
CHROMA_TINY = dict(CHROMA, hidden_size=64, num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[8, 12, 12],
                   out_dim=64, hidden_dim=64, n_layers=1)
QWEN_IMAGE_TINY = dict(QWEN_IMAGE, num_layers=2, attention_head_dim=32, num_attention_heads=2, axes_dims_rope=(8, 12, 12))
Z_IMAGE_TINY = dict(Z_IMAGE, dim=256, n_layers=2, n_refiner_layers=1, n_heads=8, n_kv_heads=8, axes_dims=[8, 12, 12])

# name, label, ComfyUI class, config, tiny config, size px, tiny size, cfg, scheduler, a-priori H100 seconds
MODELS = [
    ("sd15", "SD1.5 UNet", "SD15", SD15, SD15_TINY, 512, 64, 7.5, "normal", 25),
    ("sdxl", "SDXL UNet", "SDXL", SDXL, SDXL_TINY, 1024, 64, 7.0, "normal", 50),
    ("sd35m", "SD3.5-medium", "SD3", SD35M, SD35M_TINY, 1024, 128, 4.5, "simple", 60),
    ("flux", "FLUX.1-dev", "Flux", FLUX_DEV, FLUX_TINY, 1024, 128, 1.0, "simple", 150),
    ("chroma", "Chroma1-HD", "Chroma", CHROMA, CHROMA_TINY, 1024, 128, 4.0, "simple", 150),
    ("z_image", "Z-Image-Turbo", "ZImage", Z_IMAGE, Z_IMAGE_TINY, 1024, 128, 1.0, "simple", 80),
    ("qwen_image", "Qwen-Image", "QwenImage", QWEN_IMAGE, QWEN_IMAGE_TINY, 1024, 128, 2.5, "simple", 300),
    ("flux2", "FLUX.2-dev", "Flux2", FLUX2_DEV, FLUX2_TINY, 1024, 128, 1.0, "simple", 600),
]
NEW_FAMILIES = ("chroma", "z_image", "qwen_image", "flux2")  # --models default leaves them out: the first four fit
                                                              # one 15-minute GPU session; name them to measure them
SMOKE_GUESS = 15  # a-priori seconds per tiny model on one CPU thread


def setup() -> None:
    comfy = os.environ.get("COMFYUI_PATH")
    if not comfy or not Path(comfy, "comfy").is_dir():
        sys.exit("gpu_figures.py: set COMFYUI_PATH to a ComfyUI checkout")
    for p in (str(ROOT / "tests"), comfy):
        if p not in sys.path:
            sys.path.insert(0, p)
    import torch
    from comfy.cli_args import args

    args.cpu = args.cpu or not torch.cuda.is_available()
    if os.environ.get("POS_THREADS"):
        torch.set_num_threads(int(os.environ["POS_THREADS"]))


def init_weights(module, seed: int, device) -> None:
    """Seeded weights in place, drawn on the device: N(0, 0.02) matrices and kernels, zero biases, unit norms
    (the test fixtures' rule); SD3's positional table (a buffer ComfyUI allocates empty) N(0, 0.02) too."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.02, generator=gen)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
        pos = getattr(module, "pos_embed", None)
        if isinstance(pos, torch.Tensor) and not isinstance(pos, torch.nn.Parameter):
            pos.normal_(0.0, 0.02, generator=gen)


def build(name: str, cls_name: str, config: dict, smoke: bool, meta: bool = False):
    """A MODEL (ModelPatcher) of ComfyUI's class `cls_name` with `config`, random weights, on the device
    (meta: on PyTorch's meta device, no memory, to check a config and count its parameters)."""
    import comfy.model_detection
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    import torch

    cls = getattr(comfy.supported_models, cls_name, None)
    if cls is None:
        raise RuntimeError(f"{name}: this ComfyUI has no {cls_name} (supported_models.{cls_name}; ComfyUI 0.33+)")
    if cls_name == "Chroma":  # the fields this ComfyUI's ChromaParams has (0.33 added txt_ids_dims, vec_in_dim)
        import dataclasses

        import comfy.ldm.chroma.model as chroma_model

        fields = {f.name for f in dataclasses.fields(chroma_model.ChromaParams)}
        config = {k: v for k, v in dict(config, txt_ids_dims=[]).items() if k in fields or k == "image_model"}
    if cls_name in ("Flux", "FluxSchnell"):  # ComfyUI 0.33's FluxParams needs txt_ids_dims ([] for Flux.1)
        from dit_fixtures import flux_config

        config = flux_config(config)
    if not smoke:  # the config is one ComfyUI matches to the class it detects for the real file
        found = comfy.model_detection.model_config_from_unet_config(dict(config))
        if type(found) is not cls:
            raise RuntimeError(f"{name}: ComfyUI matches this config to {type(found).__name__}, not {cls_name}")
    conf = cls(dict(config))
    load = torch.device("meta") if meta else mm.get_torch_device()
    dtype = mm.unet_dtype(model_params=0, supported_dtypes=list(conf.supported_inference_dtypes))
    if smoke or load.type == "cpu":
        dtype = torch.float32
    conf.set_inference_dtype(dtype, None if meta else mm.unet_manual_cast(dtype, load, conf.supported_inference_dtypes))
    model = conf.get_model({}, device=load)
    if meta:
        return model, dtype
    init_weights(model.diffusion_model, 0, load)
    return comfy.model_patcher.ModelPatcher(model, load_device=load, offload_device=mm.unet_offload_device()), dtype


def empty_latent(model, size: int) -> dict:
    """An empty LATENT of the model's own format (Flux.2: 128 channels at 1/16; Qwen-Image: 5-D)."""
    import torch

    fmt = model.model.latent_format
    ratio = getattr(fmt, "spacial_downscale_ratio", 8)
    shape = (1, fmt.latent_channels, size // ratio, size // ratio)
    if getattr(fmt, "latent_dimensions", 2) == 3:
        shape = shape[:2] + (1,) + shape[2:]
    return {"samples": torch.zeros(shape)}


def depth(dm) -> str:
    """What a diffusion model is made of, in words: its blocks (DiT) or cross-attention layers (UNet)."""
    if hasattr(dm, "double_blocks"):
        return f"{len(dm.double_blocks)} double + {len(dm.single_blocks)} single blocks"
    if hasattr(dm, "joint_blocks"):
        return f"{len(dm.joint_blocks)} joint blocks"
    if hasattr(dm, "transformer_blocks"):
        return f"{len(dm.transformer_blocks)} dual-stream blocks"
    if hasattr(dm, "layers") and hasattr(dm, "noise_refiner"):
        return f"{len(dm.layers)} layers + {len(dm.noise_refiner)} + {len(dm.context_refiner)} refiners"
    return f"{sum(1 for m in dm.modules() if type(m).__name__ == 'CrossAttention') // 2} transformer blocks"


def full_configs() -> list[dict]:
    """Every full-size model built on the meta device (no memory): ComfyUI's class, blocks, parameters."""
    import torch

    out = []
    with torch.inference_mode():
        for name, label, cls_name, config, *_ in MODELS:
            try:
                model, _ = build(name, cls_name, config, smoke=False, meta=True)
            except RuntimeError as e:  # a family this ComfyUI lacks
                out.append({"model": name, "label": label, "note": str(e)})
                continue
            dm = model.diffusion_model
            out.append({"model": name, "label": label, "class": type(model).__name__, "depth": depth(dm),
                        "params": sum(p.numel() for p in dm.parameters())})
    return out


def conditioning(name: str, size: int):
    """(positive, negative) of the real shapes, random text features (seeded)."""
    import torch

    import dit_fixtures

    if name in ("flux", "sd35m"):
        return dit_fixtures.conds("flux" if name == "flux" else "sd3")
    if name in FAMILY_TEXT:
        g = torch.Generator().manual_seed(2)
        width, tokens = FAMILY_TEXT[name]
        extra = {"guidance": 4.0} if name == "flux2" else {"pooled_output": None} if name == "chroma" else {}
        return [[torch.randn(1, tokens, width, generator=g), dict(extra)]], [[torch.zeros(1, tokens, width), dict(extra)]]
    g = torch.Generator().manual_seed(2)
    width, extra = (768, {}) if name == "sd15" else (2048, {"pooled_output": torch.randn(1, 1280, generator=g),
                                                            "width": size, "height": size})
    pos = [[torch.randn(1, 77, width, generator=g), dict(extra)]]
    neg = [[torch.zeros(1, 77, width), {k: torch.zeros_like(v) if torch.is_tensor(v) else v for k, v in extra.items()}]]
    return pos, neg


class Meter:
    """Wall, process CPU time and peak memory of one timed run."""

    def __enter__(self):
        import torch

        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        self.seconds, self.cpu = time.perf_counter() - self.t, time.process_time() - self.c
        self.peak = (torch.cuda.max_memory_allocated() if self.cuda
                     else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    def result(self, **extra) -> dict:
        return {"seconds": self.seconds, "cpu_seconds": self.cpu, "peak_bytes": self.peak, **extra}


def run_model(spec, steps: int, smoke: bool, deadline: float) -> dict:
    """Build one model and time plain, guided and search on it; variants that would overrun are skipped."""
    import torch

    import comfy_host
    import nodes

    comfy_host.load_pack()
    from pos_spatial_pack.nodes.guidance import PoSGuidance
    from pos_spatial_pack.nodes.seed_search import PoSSeedSearch
    from pos_spatial_pack.pos_core.tokens import RelationSet, TokenRelation

    name, label, cls_name, config, tiny, size, tiny_size, cfg, scheduler, _ = spec
    size = tiny_size if smoke else size
    row = {"model": name, "label": label, "size": size, "steps": steps, "cfg": cfg, "notes": []}
    t0 = time.perf_counter()
    with torch.inference_mode():
        model, dtype = build(name, cls_name, tiny if smoke else config, smoke)
    row["build_seconds"] = time.perf_counter() - t0
    row["dtype"] = str(dtype).replace("torch.", "")
    row["params"] = sum(p.numel() for p in model.model.diffusion_model.parameters())
    row["depth"] = depth(model.model.diffusion_model)
    if torch.cuda.is_available():
        row["weights_bytes"] = torch.cuda.memory_allocated()
    rels = RelationSet(PROMPT, (TokenRelation("cat", "left", "dog", CAT, DOG),))
    pos, neg = conditioning(name, size)
    latent = empty_latent(model, size)
    guided_steps = steps // 2
    search_steps = max(1, steps // 5)
    calls = 2 if cfg != 1.0 else 1  # cond + uncond rows are one batched call, but twice the work

    def sample(m, n):
        return nodes.common_ksampler(m, 0, n, cfg, "euler", scheduler, pos, neg, latent)[0]["samples"]

    def search(m, n, candidates, k):
        return PoSSeedSearch.execute(m, pos, neg, latent, rels, 0, candidates, "attention", n, k, cfg, "euler",
                                     scheduler, 0).result

    def fits(what: str, estimate: float) -> bool:
        left = deadline - time.perf_counter()
        if estimate > left:
            row["notes"].append(f"{what} skipped: estimated {estimate:.0f} s, {left:.0f} s of the budget left")
            print(f"    {row['notes'][-1]}", flush=True)
            return False
        return True

    per_call = None
    with torch.inference_mode():
        try:
            with Meter() as w:
                sample(model, WARM_STEPS)
            per_call = w.seconds / WARM_STEPS
            est = {"plain": steps * per_call,
                   "guided": (WARM_STEPS + steps) * per_call + (1 + guided_steps) * 3 * per_call,
                   "search": (2 * search_steps + 2 + CANDIDATES * search_steps + steps - search_steps) * per_call,
                   "distill": (steps + 3 * guided_steps + 3 * (DISTILL_STEPS + 1)) * per_call}
            row["estimate_seconds"] = est
            print(f"    warm-up: {per_call:.2f} s per model call ({calls} rows); the rest of this model about "
                  f"{sum(est.values()):.0f} s", flush=True)
            if fits("plain", est["plain"]):
                with Meter() as m:
                    out = sample(model, steps)
                row["plain"] = m.result(finite=bool(torch.isfinite(out).all()))
        except Exception as e:  # noqa: BLE001  (one failing model must not cost the other models' figures)
            row["notes"].append(f"plain failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            traceback.print_exc()
            return row
        try:
            if fits("guided", est["guided"]):
                guided, run = PoSGuidance.execute(model, rels, 20.0, 0.5, -1.0, True, "auto").result
                sample(guided, WARM_STEPS)
                with Meter() as m:
                    out = sample(guided, steps)
                row["guided"] = m.result(guided_steps=guided_steps, skipped_steps=list(run.skipped),
                                         losses={str(k): v for k, v in run.losses.items()},
                                         targets=[list(t) for t in run.targets], notes=list(run.notes),
                                         finite=bool(torch.isfinite(out).all()))
                del guided, run
        except Exception as e:  # noqa: BLE001
            row["notes"].append(f"guided failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            traceback.print_exc()
        try:
            if fits("search", est["search"]):
                search(model, WARM_STEPS, 2, 1)
                with Meter() as m:
                    out = search(model, steps, CANDIDATES, search_steps)
                row["search"] = m.result(candidates=CANDIDATES, search_steps=search_steps,
                                         best_seed=int(out[1]), finite=bool(torch.isfinite(out[0]["samples"]).all()))
        except Exception as e:  # noqa: BLE001
            row["notes"].append(f"search failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            traceback.print_exc()
        try:
            if name in DISTILL_MODELS and fits("distill", est["distill"]):
                row["distill"] = distill_cost(model, rels, pos, neg, latent, steps, cfg, scheduler, smoke)
        except Exception as e:  # noqa: BLE001
            row["notes"].append(f"distill failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            traceback.print_exc()
    return row


def distill_cost(model, rels, pos, neg, latent, steps: int, cfg: float, scheduler: str, smoke: bool) -> dict:
    """PoS Distill LoRA's two costs on this model: one teacher trajectory (PoS Guidance, recorded) and
    DISTILL_STEPS training steps (LoRA rank 16, batch 1, bf16 on a GPU; the first step excluded)."""
    import comfy.samplers
    import torch

    import comfy.utils
    from pos_spatial_pack.nodes.distill_lora import distill_train, record_trajectory
    from pos_spatial_pack.nodes.guidance import PoSGuidance
    from pos_spatial_pack.pos_core.distill import Records

    teacher, _ = PoSGuidance.execute(model, rels, 20.0, 0.5, -1.0, True, "auto").result
    sigmas = comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler="euler",
                                     scheduler=scheduler, denoise=1.0).sigmas.float().cpu().tolist()
    records = Records()
    with Meter() as t:
        record_trajectory(teacher, pos, neg, latent["samples"], 0, "euler", scheduler, steps, cfg, sigmas, records, 0)
    dtype = torch.float32 if smoke or not torch.cuda.is_available() else torch.bfloat16
    with Meter() as m:
        _, _, losses = distill_train(model, records, pos, neg, cfg, 16, DISTILL_STEPS + 1, 1, 1e-4, 0, dtype, False,
                                     comfy.utils.ProgressBar(DISTILL_STEPS + 1))
    secs = losses["seconds"][1:]
    return {"trajectory_seconds": t.seconds, "recorded_steps": len(records), "seconds": sum(secs) / len(secs),
            "train_steps": DISTILL_STEPS, "peak_bytes": m.peak, "finite": all(v == v for v in losses["loss"])}


def release() -> None:
    """Free the last model (ComfyUI keeps weak references only) before the next is built."""
    import torch

    import comfy.model_management as mm

    gc.collect()
    mm.cleanup_models_gc() if hasattr(mm, "cleanup_models_gc") else None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def gib(b) -> str:
    return f"{b / 2**30:.2f}" if b is not None else ""


def table(report: dict) -> str:
    cpu = report["device"] == "cpu"
    mem = "peak RSS GiB (process)" if cpu else "peak VRAM GiB"
    lines = [f"| model | px | dtype | params | weights GiB | plain s/img | plain {mem} | PoS Guidance s/img | "
             f"guided {mem} | time x | memory x | Seed Search N={CANDIDATES} s/img | search {mem} | "
             f"Distill LoRA s/trajectory | Distill LoRA s/training step | distill training {mem} | notes |",
             "|" + "---|" * 17]
    for r in report["models"]:
        p, g, s, d = r.get("plain"), r.get("guided"), r.get("search"), r.get("distill")
        traj = f"{d['trajectory_seconds']:.2f}" if d else ""

        def sec(v):
            return f"{v['seconds']:.2f}" if v else "skipped"

        tx = f"{g['seconds'] / p['seconds']:.2f}" if p and g else ""
        mx = f"{g['peak_bytes'] / p['peak_bytes']:.2f}" if p and g else ""
        notes = list(r.get("notes", []))
        if g and g.get("skipped_steps"):
            notes.append(f"guided steps that ran unguided: {g['skipped_steps']}")
        lines.append(f"| {r['label']} ({r.get('depth', '')}) | {r['size']} | {r.get('dtype', '')} | {r.get('params', 0) / 1e6:.0f}M | "
                     f"{gib(r.get('weights_bytes'))} | {sec(p)} | {gib(p and p['peak_bytes'])} | {sec(g)} | "
                     f"{gib(g and g['peak_bytes'])} | {tx} | {mx} | {sec(s)} | {gib(s and s['peak_bytes'])} | "
                     f"{traj} | {sec(d) if d else ''} | "
                     f"{gib(d and d['peak_bytes'])} | {'; '.join(notes)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="sampling steps per image (half guided)")
    ap.add_argument("--budget-s", type=float, default=540.0,
                    help="stop starting models / variants whose estimate would end past this many seconds")
    ap.add_argument("--models", default="sd15,sdxl,sd35m,flux",
                    help="comma-separated subset, in this order; also " + ",".join(NEW_FAMILIES) + " (the 2026 families)")
    ap.add_argument("--smoke", action="store_true", help="tiny widths and depths on the CPU: checks the code path")
    ap.add_argument("--out", default="gpu_figures.json", help="JSON output file")
    a = ap.parse_args(argv)
    if a.steps < 2:
        sys.exit("gpu_figures.py: --steps must be at least 2 (half of them are guided)")
    wanted = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = sorted(set(wanted) - {m[0] for m in MODELS})
    if unknown:
        sys.exit(f"gpu_figures.py: --models: unknown {', '.join(unknown)}; choose from {', '.join(m[0] for m in MODELS)}")
    start = time.perf_counter()
    deadline = start + a.budget_s
    setup()
    import torch

    import comfy.model_management as mm

    dev = mm.get_torch_device()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    report = {"device": dev.type, "device_name": name, "torch": torch.__version__, "smoke": a.smoke,
              "steps": a.steps, "sampler": "euler", "candidates": CANDIDATES, "budget_s": a.budget_s, "models": []}
    print(f"gpu_figures: {'SMOKE (tiny models) ' if a.smoke else ''}on {dev.type} ({name}), torch {torch.__version__}, "
          f"{a.steps} steps ({a.steps // 2} guided), budget {a.budget_s:.0f} s", flush=True)
    if a.smoke:  # the full-size configs too, on the meta device: ComfyUI builds them as the GPU run will
        report["full_configs"] = full_configs()
        print("full-size configs (built on the meta device): " + "; ".join(
            f"{c['label']} {c['class']} {c['depth']} {c['params'] / 1e6:.0f}M" if "params" in c else f"{c['label']}: {c['note']}"
            for c in report["full_configs"]), flush=True)
    for spec in MODELS:
        if spec[0] not in wanted:
            continue
        guess = SMOKE_GUESS if a.smoke else spec[-1]
        left = deadline - time.perf_counter()
        print(f"[{time.perf_counter() - start:5.0f} s] {spec[1]}: a-priori estimate ~{guess} s "
              f"({'tiny, CPU' if a.smoke else 'a guess for one H100'}), {left:.0f} s of the budget left", flush=True)
        if guess > left:
            note = f"skipped: a-priori estimate {guess} s, {left:.0f} s of the budget left"
            report["models"].append({"model": spec[0], "label": spec[1], "size": spec[6 if a.smoke else 5],
                                     "notes": [note]})
            print(f"    {note}", flush=True)
            continue
        t_model = time.perf_counter()
        try:
            row = run_model(spec, a.steps, a.smoke, deadline)
        except Exception as e:  # noqa: BLE001  (a model that cannot even be built)
            traceback.print_exc()
            row = {"model": spec[0], "label": spec[1], "size": spec[6 if a.smoke else 5],
                   "notes": [f"failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}"]}
        row["model_seconds"] = time.perf_counter() - t_model
        report["models"].append(row)
        release()
        Path(a.out).write_text(json.dumps(report, indent=1))  # partial results survive a kill
    report["total_seconds"] = time.perf_counter() - start
    Path(a.out).write_text(json.dumps(report, indent=1))
    print()
    print(f"{'SMOKE: tiny models on the CPU, plumbing only, not figures. ' if a.smoke else ''}"
          f"{a.steps} steps, euler, 1 image, warm-up excluded; on {name}; total {report['total_seconds']:.0f} s")
    print(table(report))
    print(f"\nJSON: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
