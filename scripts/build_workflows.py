"""Write the shipped workflows (UI format) from the graphs below, with the real server's widget order.

    COMFYUI_PATH=/path/to/ComfyUI python scripts/build_workflows.py

Starts ComfyUI (CPU, loopback) with this pack, reads /object_info and writes workflows/<name>.json.
Edit the graphs here, not the JSON, and re-run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SD15 = "v1-5-pruned-emaonly-fp16.safetensors"
SDXL = "sd_xl_base_1.0.safetensors"
FLUX_DEV, FLUX_AE = "flux1-dev.safetensors", "ae.safetensors"
SD35 = "sd3.5_medium.safetensors"
CLIP_L, CLIP_G, T5XXL = "clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors"
# the 2026 families (ComfyUI 0.33): the files ComfyUI's own example workflows load
FLUX2_DEV, FLUX2_TE, FLUX2_VAE = ("flux2_dev_fp8mixed.safetensors", "mistral_3_small_flux2_fp8.safetensors",
                                  "flux2-vae.safetensors")
QWEN_IMAGE, QWEN_TE, QWEN_VAE = ("qwen_image_fp8_e4m3fn.safetensors", "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                                 "qwen_image_vae.safetensors")
Z_IMAGE, Z_TE = "z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors"  # the Flux VAE (ae.safetensors)
CHROMA = "Chroma1-HD.safetensors"  # with T5-XXL and the Flux VAE
# Download links the front end's missing-model dialog offers (node properties.models): every model
# file a shipped workflow loads needs one here (Hugging Face resolve URLs, .safetensors).
MODEL_URLS = {
    SD15: "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/" + SD15,
    SDXL: "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/" + SDXL,
    FLUX_DEV: "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/" + FLUX_DEV,
    FLUX_AE: "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/" + FLUX_AE,
    SD35: "https://huggingface.co/stabilityai/stable-diffusion-3.5-medium/resolve/main/" + SD35,
    CLIP_L: "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/" + CLIP_L,
    T5XXL: "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/" + T5XXL,
    CLIP_G: "https://huggingface.co/stabilityai/stable-diffusion-3.5-medium/resolve/main/text_encoders/" + CLIP_G,
    FLUX2_DEV: "https://huggingface.co/Comfy-Org/flux2-dev/resolve/main/split_files/diffusion_models/" + FLUX2_DEV,
    FLUX2_TE: "https://huggingface.co/Comfy-Org/flux2-dev/resolve/main/split_files/text_encoders/" + FLUX2_TE,
    FLUX2_VAE: "https://huggingface.co/Comfy-Org/flux2-dev/resolve/main/split_files/vae/" + FLUX2_VAE,
    QWEN_IMAGE: "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/diffusion_models/"
                + QWEN_IMAGE,
    QWEN_TE: "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/text_encoders/" + QWEN_TE,
    QWEN_VAE: "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/vae/" + QWEN_VAE,
    Z_IMAGE: "https://huggingface.co/Comfy-Org/z_image_turbo/resolve/main/split_files/diffusion_models/" + Z_IMAGE,
    Z_TE: "https://huggingface.co/Comfy-Org/z_image_turbo/resolve/main/split_files/text_encoders/" + Z_TE,
    CHROMA: "https://huggingface.co/lodestones/Chroma1-HD/resolve/main/" + CHROMA,
}
# ComfyUI model folder of each loader node's files
MODEL_DIRECTORIES = {"CheckpointLoaderSimple": "checkpoints", "UNETLoader": "diffusion_models",
                     "CLIPLoader": "text_encoders", "DualCLIPLoader": "text_encoders",
                     "TripleCLIPLoader": "text_encoders", "VAELoader": "vae"}
MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
PROMPT = "a photo of a cat to the left of a dog, natural light, detailed"
NEG = "blurry, deformed, low quality"


def loader(ckpt):
    return {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}


def relations(text=PROMPT, clip=("1", 1)):
    inputs = {"text": text}
    if clip:
        inputs["clip"] = list(clip)
    return {"class_type": "PoSRelationsFromPrompt", "inputs": inputs}


def guidance(model=("1", 0), fraction=0.5):
    return {"class_type": "PoSGuidance", "inputs": {
        "model": list(model), "relations": ["2", 1], "scale": 20.0, "guided_fraction": fraction,
        "loss_scale": -1.0, "smoothing": True, "attention_level": "auto"}}


def ksampler(model, seed=42, steps=50, cfg=7.5, latent=("5", 0)):
    return {"class_type": "KSampler", "inputs": {
        "model": list(model), "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler",
        "scheduler": "normal", "positive": ["2", 0], "negative": ["3", 0], "latent_image": list(latent),
        "denoise": 1.0}}


def common(ckpt, size):
    return {"1": loader(ckpt), "2": relations(),
            "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": NEG}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}}}


def score(images, detector="20"):
    return {"class_type": "PoSScore", "inputs": {"images": list(images), "relations": ["2", 1],
                                                  "detector": [detector, 0], "threshold": -1.0}}


DETECTOR = {"class_type": "PoSDetectorLoader", "inputs": {"detector": "IDEA-Research/grounding-dino-base",
                                                          "sam": "facebook/sam-vit-base"}}


def psg(ckpt, size, cfg, fraction):
    g = common(ckpt, size)
    g.update({
        "4": guidance(fraction=fraction),
        "6": ksampler(("4", 0), cfg=cfg),
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "pos_psg"}},
        "9": {"class_type": "PoSAttentionMaps", "inputs": {"attention": ["4", 1], "images": ["7", 0],
                                                           "start_step": 0, "end_step": -1}},
        "20": DETECTOR,
        "21": score(("7", 0)),
    })
    return g


def seed_search():
    g = common(SD15, 512)
    g.update({
        "4": guidance(),
        "6": {"class_type": "PoSSeedSearch", "inputs": {
            "model": ["4", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["5", 0],
            "relations": ["2", 1], "seed": 0, "candidates": 8, "mode": "attention", "steps": 50,
            "search_steps": 10, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal", "batch_size": 0,
            "vae": ["1", 2]}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "pos_search"}},
    })
    return g


def layout_vs_psg():
    """The same seed three ways: PoS Layout from Relations (regional prompts, plain model), PoS Guidance
    (plain prompt), and both."""
    g = common(SD15, 512)
    g.update({
        "4": guidance(),
        "30": {"class_type": "PoSLayoutFromRelations", "inputs": {
            "clip": ["1", 1], "conditioning": ["2", 0], "relations": ["2", 1], "object_prompt": "a photo of a {object}",
            "margin": 0.0625, "strength": 1.0, "width": 512, "height": 512}},
        "6": ksampler(("4", 0)),
        "31": dict(ksampler(("1", 0)), inputs=dict(ksampler(("1", 0))["inputs"], positive=["30", 0])),
        "33": dict(ksampler(("4", 0)), inputs=dict(ksampler(("4", 0))["inputs"], positive=["30", 0])),
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "32": {"class_type": "VAEDecode", "inputs": {"samples": ["31", 0], "vae": ["1", 2]}},
        "34": {"class_type": "VAEDecode", "inputs": {"samples": ["33", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "pos_psg"}},
        "35": {"class_type": "SaveImage", "inputs": {"images": ["32", 0], "filename_prefix": "pos_layout"}},
        "36": {"class_type": "SaveImage", "inputs": {"images": ["34", 0], "filename_prefix": "pos_layout_psg"}},
    })
    return g


def score_images():
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "2": relations("a cat to the left of a dog", clip=None),
        "20": DETECTOR,
        "21": score(("1", 0)),
    }


def guided_vs_unguided():
    g = common(SD15, 512)
    g.update({
        "4": guidance(),
        "10": {"class_type": "PoSAttentionCapture", "inputs": {"model": ["1", 0], "relations": ["2", 1],
                                                               "attention_level": "auto"}},
        "6": ksampler(("4", 0)),
        "11": ksampler(("10", 0)),
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["1", 2]}},
        "9": {"class_type": "PoSAttentionMaps", "inputs": {"attention": ["4", 1], "images": ["7", 0],
                                                           "start_step": 0, "end_step": -1}},
        "13": {"class_type": "PoSAttentionMaps", "inputs": {"attention": ["10", 1], "images": ["12", 0],
                                                            "start_step": 0, "end_step": -1}},
    })
    return g


def sr4g_captions(split, relations="all", max_pairs=1000, max_per_image=2):
    """SR4G Spatial Captions on a COCO 2017 download under input/coco; one build serves every split."""
    return {"class_type": "SR4GSpatialCaptions", "inputs": {
        "annotations": "coco/annotations/instances_train2017.json", "images": "coco/train2017",
        "relations": relations, "split": split, "dataset_name": f"sr4g_{split}", "max_pairs": max_pairs,
        "max_per_image": max_per_image, "split_seed": 0, "min_area": 0.02}}


# ComfyUI renamed its training nodes after 0.3.x: the LoRA-training workflows are written for the running
# server's names (LEGACY on a 0.3.x server, which writes them to workflows/comfyui-0.3/)
LEGACY = False


def dataset(folder, size=512):
    """ComfyUI's dataset nodes -> {node id: node}, latents, positive. 0.33+: Load Image-Text (from Folder) ->
    Upscale Image (center crop, one size for the whole batch) -> Make Training Dataset; 0.3.x: Load Image and
    Text Dataset from Folder (resize, CLIP) -> VAE Encode."""
    if LEGACY:
        return {"3": {"class_type": "LoadImageTextSetFromFolderNode", "inputs": {
                    "folder": list(folder), "clip": ["1", 1], "resize_method": "Stretch", "width": size, "height": size}},
                "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["1", 2]}}}, ("4", 0), ("3", 1)
    return {"3": {"class_type": "LoadImageTextDataSetFromFolder", "inputs": {"folder": list(folder)}},
            "31": {"class_type": "ImageScale", "inputs": {"image": ["3", 0], "upscale_method": "lanczos", "width": size,
                                                          "height": size, "crop": "center"}},
            "4": {"class_type": "MakeTrainingDataset", "inputs": {"images": ["31", 0], "vae": ["1", 2],
                                                                  "clip": ["1", 1], "texts": ["3", 1]}}}, ("4", 0), ("4", 1)


def train_lora(latents, positive, steps):
    """ComfyUI's Train LoRA with SD1.5 settings (the inputs the running version has)."""
    inputs = {"model": ["1", 0], "latents": list(latents), "positive": list(positive), "batch_size": 1,
              "grad_accumulation_steps": 1, "steps": steps, "learning_rate": 0.0001, "rank": 8, "optimizer": "AdamW",
              "loss_function": "MSE", "seed": 0, "training_dtype": "bf16", "lora_dtype": "bf16", "algorithm": "LoRA",
              "gradient_checkpointing": True, "existing_lora": "[None]"}
    if not LEGACY:
        inputs.update(quantized_backward=False, checkpoint_depth=1, offloading=False, bucket_mode=False,
                      bypass_mode=False)
    return {"class_type": "TrainLoraNode", "inputs": inputs}


def trained(node: str, pos: bool = False) -> dict:
    """Output links of a training node: Train LoRA lost its MODEL output after 0.3.x (lora, loss, steps);
    PoS Train LoRA keeps (model, lora, loss, steps, ...) on every version."""
    first = 0 if pos or LEGACY else -1
    return {name: [node, first + i] for i, name in enumerate(("lora", "loss", "steps"), start=1)}


def save_lora(node, prefix, pos=False):
    """Save LoRA Weights (SaveLoRA since 0.3.x's SaveLoRANode)."""
    out = trained(node, pos)
    return {"class_type": "SaveLoRANode" if LEGACY else "SaveLoRA",
            "inputs": {"lora": out["lora"], "prefix": prefix, "steps": out["steps"]}}


def sr4g_lora_training():
    """SR4G captions -> ComfyUI's own dataset nodes -> Train LoRA -> Save LoRA (+ loss graph)."""
    nodes, latents, positive = dataset(("2", 0))
    return {
        "1": loader(SD15),
        "2": sr4g_captions("train"),
        **nodes,
        "5": train_lora(latents, positive, 2000),
        "6": save_lora("5", "loras/sr4g_lora"),
        "7": {"class_type": "LossGraphNode", "inputs": {"loss": trained("5")["loss"], "filename_prefix": "sr4g_loss"}},
    }


def pos_lora_node(model, latents, positive, clip, folder, steps, weight=1.0):
    """PoS Train LoRA with Train LoRA's SD1.5 settings of sr4g_lora_training, plus the PoS loss."""
    return {"class_type": "PoSTrainLoRA", "inputs": {
        "model": list(model), "latents": list(latents), "positive": list(positive), "clip": list(clip),
        "dataset_folder": list(folder), "captions": "", "pos_weight": weight, "pos_noise_levels": 1.0,
        "attention_level": "auto",
        "batch_size": 1, "grad_accumulation_steps": 1, "steps": steps, "learning_rate": 0.0001, "rank": 8,
        "optimizer": "AdamW", "loss_function": "MSE", "seed": 0, "training_dtype": "bf16", "lora_dtype": "bf16",
        "algorithm": "LoRA", "gradient_checkpointing": True}}


def sr4g_pos_lora_training():
    """SR4G captions (left / right / above / below) -> dataset -> PoS Train LoRA -> Save LoRA, with the
    two-part loss graph: a LoRA that draws the captions' relations right without guidance."""
    nodes, latents, positive = dataset(("2", 0))
    return {
        "1": loader(SD15),
        "2": sr4g_captions("train", "left of, right of, above, below"),
        **nodes,
        "5": pos_lora_node(("1", 0), latents, positive, ("1", 1), ("2", 0), 2000),
        "6": save_lora("5", "loras/sr4g_pos_lora", pos=True),
        "7": {"class_type": "LossGraphNode", "inputs": {"loss": ["5", 2], "filename_prefix": "sr4g_pos_loss"}},
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["5", 4]}},
    }


def sr4g_benchmark():
    """SR4G: a LoRA trained on the train split's captions (projective relations), and a PoS LoRA (the same
    data and settings with the PoS loss), then the test_unseen prompts generated by the base model, the base
    model with each LoRA, and with PoS Guidance -> PoS Score (PSE, VISOR, GenEval, T2I-CompBench columns) for
    each. ComfyUI caches the trained LoRAs between runs."""
    projective = "left of, right of, above, below"
    g = common(SD15, 512)
    g["2"] = relations(text=["30", 1])
    nodes, latents, positive = dataset(("32", 0))
    ids = {"3": "33", "31": "331", "4": "34"}  # the dataset nodes under ids of their own in this graph
    for old, node in nodes.items():
        node["inputs"] = {k: [ids.get(v[0], v[0]), v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
        g[ids[old]] = node
    latents, positive = (ids[latents[0]], latents[1]), (ids[positive[0]], positive[1])
    g.update({
        "30": sr4g_captions("test_unseen", projective, max_pairs=50),
        "32": sr4g_captions("train", projective),
        "35": train_lora(latents, positive, 500),
        "36": {"class_type": "LoraModelLoader", "inputs": {"model": ["1", 0], "lora": trained("35")["lora"],
                                                           "strength_model": 1.0}},
        "37": pos_lora_node(("1", 0), latents, positive, ("1", 1), ("32", 0), 500),
        "38": {"class_type": "LoraModelLoader", "inputs": {"model": ["1", 0], "lora": ["37", 1],
                                                           "strength_model": 1.0}},
        "14": ksampler(("38", 0)),
        "4": guidance(),
        "6": ksampler(("1", 0)),
        "8": ksampler(("36", 0)),
        "9": ksampler(("4", 0)),
        "20": DETECTOR,
    })
    ways = ("base", "lora", "psg", "pos_lora")
    for k, (sampler, decoded, scored) in enumerate((("6", "10", "21"), ("8", "11", "22"), ("9", "12", "23"),
                                                    ("14", "13", "24"))):
        g[decoded] = {"class_type": "VAEDecode", "inputs": {"samples": [sampler, 0], "vae": ["1", 2]}}
        g[scored] = score((decoded, 0))
        g[str(40 + k)] = {"class_type": "SaveImage", "inputs": {
            "images": [decoded, 0], "filename_prefix": f"sr4g_bench/{ways[k]}"}}
    return g


def dit_guidance(model):
    """PoS Guidance with the DiT defaults: published best blocks, softmax over the text keys."""
    return {"class_type": "PoSGuidance", "inputs": {
        "model": list(model), "relations": ["2", 1], "scale": 20.0, "guided_fraction": 0.5, "loss_scale": -1.0,
        "smoothing": True, "attention_level": "auto", "blocks": "auto", "softmax": "text"}}


def dit_tail(g, vae, steps, cfg, scheduler, positive):
    """Latent, guided KSampler, decode, save, attention maps and PoS Score shared by the DiT workflows."""
    g.update({
        "4": dit_guidance(("17", 0)),
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "seed": 42, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": scheduler,
            "positive": list(positive), "negative": ["3", 0], "latent_image": ["5", 0], "denoise": 1.0}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": list(vae)}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "pos_psg"}},
        "9": {"class_type": "PoSAttentionMaps", "inputs": {"attention": ["4", 1], "images": ["7", 0],
                                                           "start_step": 0, "end_step": -1}},
        "20": DETECTOR,
        "21": score(("7", 0)),
    })
    return g


def psg_flux_dev():
    """FLUX.1-dev as its model card runs it (28 steps, distilled guidance 3.5 via FluxGuidance, cfg 1),
    Load Diffusion Model + DualCLIPLoader + ae; PSG on the first 14 steps."""
    return dit_tail({
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": FLUX_DEV, "weight_dtype": "default"}},
        "14": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": CLIP_L, "clip_name2": T5XXL, "type": "flux",
                                                          "device": "default"}},
        "15": {"class_type": "VAELoader", "inputs": {"vae_name": FLUX_AE}},
        "2": relations(clip=("14", 0)),
        "16": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["2", 0], "guidance": 3.5}},
        "3": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["2", 0]}},
        "17": {"class_type": "ModelSamplingFlux", "inputs": {"model": ["1", 0], "max_shift": 1.15, "base_shift": 0.5,
                                                             "width": 1024, "height": 1024}},
    }, ("15", 0), 28, 1.0, "simple", ("16", 0))


def psg_sd35():
    """SD3.5-medium (checkpoint with VAE + TripleCLIPLoader), 40 steps, cfg 4.5, shift 3; PSG on the first 20."""
    return dit_tail({
        "1": loader(SD35),
        "14": {"class_type": "TripleCLIPLoader", "inputs": {"clip_name1": CLIP_L, "clip_name2": CLIP_G,
                                                            "clip_name3": T5XXL}},
        "2": relations(clip=("14", 0)),
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["14", 0], "text": NEG}},
        "17": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 3.0}},
    }, ("1", 2), 40, 4.5, "sgm_uniform", ("2", 0))


def _family(unet, clip, clip_type, vae, sampling, steps, cfg, sampler="euler", guidance=None, latent=None,
            negative=True):
    """A 2026-family graph as ComfyUI's example workflow runs it (Load Diffusion Model + Load CLIP of the family's
    type + Load VAE, its sampling node), with PoS Relations from Prompt and PoS Guidance on the first half."""
    g = dit_tail({
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
        "14": {"class_type": "CLIPLoader", "inputs": {"clip_name": clip, "type": clip_type, "device": "default"}},
        "15": {"class_type": "VAELoader", "inputs": {"vae_name": vae}},
        "2": relations(clip=("14", 0)),
        "3": ({"class_type": "CLIPTextEncode", "inputs": {"clip": ["14", 0], "text": NEG}} if negative else
              {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["2", 0]}}),
        "17": sampling,
    }, ("15", 0), steps, cfg, "simple", ("16", 0) if guidance is not None else ("2", 0))
    g["6"]["inputs"]["sampler_name"] = sampler
    if sampling is None:  # no sampling node: PoS Guidance on the loaded model
        del g["17"]
        g["4"]["inputs"]["model"] = ["1", 0]
    if guidance is not None:
        g["16"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": ["2", 0], "guidance": guidance}}
    if latent is not None:
        g["5"] = latent
    return g


def _aura(shift):
    return {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["1", 0], "shift": shift}}


def psg_flux2():
    """FLUX.2 dev (fp8) with its Mistral 3 text encoder, 20 steps, distilled guidance 4 (cfg 1); PSG on 10."""
    latent = {"class_type": "EmptyFlux2LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}}
    return _family(FLUX2_DEV, FLUX2_TE, "flux2", FLUX2_VAE, None, 20, 1.0, guidance=4.0, latent=latent, negative=False)


def psg_qwen_image():
    """Qwen-Image (fp8) with Qwen2.5-VL 7B, shift 3.1, 20 steps, cfg 2.5; PSG on the first 10."""
    return _family(QWEN_IMAGE, QWEN_TE, "qwen_image", QWEN_VAE, _aura(3.1), 20, 2.5)


def psg_z_image():
    """Z-Image-Turbo with Qwen3 4B, shift 3, 9 steps, cfg 1 (distilled), res_multistep; PSG on the first 4."""
    g = _family(Z_IMAGE, Z_TE, "lumina2", FLUX_AE, _aura(3.0), 9, 1.0, sampler="res_multistep", negative=False)
    g["4"]["inputs"]["guided_fraction"] = 0.45
    return g


def psg_chroma():
    """Chroma1-HD with T5-XXL (CLIP type chroma), 26 steps, cfg 4; PSG on the first 13."""
    return _family(CHROMA, T5XXL, "chroma", FLUX_AE, None, 26, 4.0)


LEGACY_FOLDER = "comfyui-0.3"
DISTILL_PROMPTS = "\n".join([
    "a cup to the left of a vase", "a lamp above a table", "a book to the right of a clock",
    "a bird above a car", "an apple to the left of a banana", "a chair to the right of a bed",
    "a horse to the left of a tree", "a boat below a bridge", "a bottle to the right of a glass",
    "a kite above a house", "a bench below a window", "a teddy bear to the left of a laptop"])
HELD_OUT = "a photo of a cat to the left of a dog"  # objects none of the distillation prompts names


def distill_lora():
    """Prompts -> PoS Distill LoRA (teacher: PoS Guidance) -> Save LoRA, and base / teacher / LoRA on one
    held-out prompt and seed with stock nodes."""
    g = {
        "1": loader(SD15),
        "2": {"class_type": "PoSDistillLoRA", "inputs": {
            "model": ["1", 0], "clip": ["1", 1], "prompts": DISTILL_PROMPTS, "objects": "",
            "phrasings": "\n".join(["a {a} to the left of a {b}", "a {a} to the right of a {b}", "a {a} above a {b}",
                                    "a {a} below a {b}"]),
            "dataset_folder": "", "teacher": "psg", "scale": 20.0, "guided_fraction": 0.5, "layout_margin": 0.0625,
            "sampler_name": "euler", "scheduler": "normal", "steps": 20, "cfg": 7.5, "width": 512, "height": 512,
            "trajectories": 4, "base_fraction": 0.0, "rank": 8, "train_steps": 500, "batch_size": 8,
            "learning_rate": 0.0002, "seed": 0, "training_dtype": "bf16", "gradient_checkpointing": True,
            "preview_prompt": HELD_OUT, "negative": NEG, "vae": ["1", 2]}},
        "3": {**save_lora("2", "loras/pos_distill", pos=True)},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 4]}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["2", 5]}},
        "10": relations(HELD_OUT),
        "11": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": NEG}},
        "12": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "13": {**guidance(), "inputs": {**guidance()["inputs"], "relations": ["10", 1]}},
    }
    for k, (model, name) in enumerate(((["1", 0], "base"), (["13", 0], "teacher"), (["2", 0], "lora"))):
        ks = ksampler(model, steps=20, latent=("12", 0))
        ks["inputs"].update(positive=["10", 0], negative=["11", 0])
        g[str(14 + 3 * k)] = ks
        g[str(15 + 3 * k)] = {"class_type": "VAEDecode", "inputs": {"samples": [str(14 + 3 * k), 0], "vae": ["1", 2]}}
        g[str(16 + 3 * k)] = {"class_type": "SaveImage", "inputs": {"images": [str(15 + 3 * k), 0],
                                                                    "filename_prefix": f"pos_distill_{name}"}}
    return g


FAMILY_WORKFLOWS = ("pos_psg_flux2", "pos_psg_qwen_image", "pos_psg_z_image", "pos_psg_chroma")  # ComfyUI 0.33+
RENAMED_NODES = ("sr4g_lora_training", "sr4g_pos_lora_training", "sr4g_benchmark", "pos_distill_lora")  # stock training nodes renamed
WORKFLOWS = {
    "pos_psg_sd15": (lambda: psg(SD15, 512, 7.5, 0.5), {"4": "PoS Guidance (PSG): authors' SD1.x settings"}),
    "pos_psg_sdxl": (lambda: psg(SDXL, 1024, 5.0, 0.2), {"4": "PoS Guidance (PSG): first 10 of 50 steps, loss x1000"}),
    "pos_seed_search": (seed_search, {}),
    "pos_score_images": (score_images, {"21": "PoS Score (PSE) of a loaded image"}),
    "pos_guided_vs_unguided": (guided_vs_unguided, {"9": "Guided: attention", "13": "Unguided: attention"}),
    "pos_layout_vs_psg": (layout_vs_psg, {"30": "PoS Layout from Relations: each object on its side",
                                            "8": "PoS Guidance", "35": "Layout (no guidance)",
                                            "36": "Layout + PoS Guidance"}),
    "pos_psg_flux_dev": (psg_flux_dev, {"4": "PoS Guidance (PSG): Flux.1 dev, first 14 of 28 steps",
                                           "16": "FluxGuidance (distilled guidance; cfg stays 1)"}),
    "pos_psg_sd35": (psg_sd35, {"4": "PoS Guidance (PSG): SD3.5, first 20 of 40 steps"}),
    "pos_psg_flux2": (psg_flux2, {"4": "PoS Guidance (PSG): Flux.2 dev, first 10 of 20 steps",
                                   "16": "FluxGuidance 4 (distilled guidance; cfg stays 1)"}),
    "pos_psg_qwen_image": (psg_qwen_image, {"4": "PoS Guidance (PSG): Qwen-Image, first 10 of 20 steps"}),
    "pos_psg_z_image": (psg_z_image, {"4": "PoS Guidance (PSG): Z-Image-Turbo, first 4 of 9 steps"}),
    "pos_psg_chroma": (psg_chroma, {"4": "PoS Guidance (PSG): Chroma, first 13 of 26 steps"}),
    "pos_distill_lora": (distill_lora, {"2": "PoS Distill LoRA: PoS Guidance into a LoRA (no images)",
                                         "4": "Distillation loss", "5": "Base / teacher / LoRA (held-out prompt)",
                                         "14": "Base", "17": "Teacher: PoS Guidance", "20": "Distilled LoRA, unguided",
                                         "13": "PoS Guidance (the teacher, for comparison)"}),
    "sr4g_lora_training": (sr4g_lora_training, {"2": "SR4G Spatial Captions: train split -> input/sr4g_train"}),
    "sr4g_pos_lora_training": (sr4g_pos_lora_training, {
        "2": "SR4G Spatial Captions: train split, left / right / above / below",
        "5": "PoS Train LoRA: diffusion + PoS loss", "8": "Loss: diffusion and PoS parts"}),
    "sr4g_benchmark": (sr4g_benchmark, {"21": "Base model: PSE / VISOR", "22": "With the SR4G LoRA: PSE / VISOR",
                                          "23": "With PoS Guidance: PSE / VISOR",
                                          "24": "With the PoS LoRA: PSE / VISOR",
                                          "35": "Train LoRA on SR4G train captions (cached between runs)",
                                          "37": "PoS Train LoRA on the same captions (cached between runs)"}),
}


def add_model_links(workflow: dict) -> dict:
    """properties.models (name, url, directory) on every loader node, for the missing-model dialog."""
    for node in workflow["nodes"]:
        files = [v for v in node.get("widgets_values") or [] if isinstance(v, str) and v.endswith(MODEL_SUFFIXES)]
        if not files:
            continue
        if node["type"] not in MODEL_DIRECTORIES:
            sys.exit(f"node {node['id']} ({node['type']}) loads {files}: add its folder to MODEL_DIRECTORIES")
        missing = [f for f in files if f not in MODEL_URLS]
        if missing:
            sys.exit(f"no download link for {missing}: add it to MODEL_URLS")
        directory = MODEL_DIRECTORIES[node["type"]]
        node["properties"]["models"] = [{"name": f, "url": MODEL_URLS[f], "directory": directory} for f in files]
    return workflow


# Front-end geometry (comfyui-frontend-package's LiteGraph): the title bar is drawn above a node's pos;
# on load a node grows to its computeSize (about 20 px a slot row, 24 a widget, 54 a multiline text
# box, a title's width), so each node is given at least that here and no neighbour sits in its way.
TITLE_HEIGHT, SLOT_ROW, WIDGET_ROW, TEXT_BOX, GAP = 30, 20, 26, 60, 40


def min_size(node: dict, info: dict) -> tuple[int, int]:
    """At least the size the front end computes for the node (rounded up, with a margin)."""
    spec = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    slots = max(len([i for i in node["inputs"] if "widget" not in i]), len(node["outputs"]))
    rows = len(node.get("widgets_values") or []) * WIDGET_ROW
    for typ, *opts in spec.values():
        extra = opts[0] if opts and isinstance(opts[0], dict) else {}
        rows += (TEXT_BOX - WIDGET_ROW) * bool(extra.get("multiline")) + WIDGET_ROW * bool(extra.get("image_upload"))
    width = max(340, 60 + 7 * len(node.get("title", "")), 60 + 7 * len(info.get("display_name") or node["type"]))
    return width, 20 + slots * SLOT_ROW + rows


def arrange(workflow: dict, info: dict) -> dict:
    """Columns of api_to_ui's dependency depth, each as wide as its widest node and stacked without
    overlap (title bars included); nodes at least their front-end size."""
    columns: dict[int, list[dict]] = {}
    for node in workflow["nodes"]:
        w, h = min_size(node, info[node["type"]])
        node["size"] = [max(node["size"][0], w), max(node["size"][1], h)]
        columns.setdefault(node["pos"][0], []).append(node)
    x = 40
    for key in sorted(columns):
        y = 40 + TITLE_HEIGHT
        for node in sorted(columns[key], key=lambda n: n["pos"][1]):
            node["pos"] = [x, y]
            y += node["size"][1] + GAP + TITLE_HEIGHT
        x += max(n["size"][0] for n in columns[key]) + GAP
    return workflow


def main() -> None:
    if "COMFYUI_PATH" not in os.environ:
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout")
    import comfy_host
    from workflow_format import api_to_ui

    global LEGACY
    comfyui = Path(os.environ["COMFYUI_PATH"])
    LEGACY = comfy_host.comfyui_version(comfyui) < (0, 4)
    with tempfile.TemporaryDirectory() as base, comfy_host.server(comfyui, Path(base)) as srv:
        info = srv.get("/object_info")
    # the current ComfyUI writes every workflow; a 0.3.x one only those whose stock nodes were renamed since,
    # into a folder the template browser does not list (its workflows load there by drag and drop)
    out = ROOT / "workflows" / LEGACY_FOLDER if LEGACY else ROOT / "workflows"
    out.mkdir(exist_ok=True)
    for name, (build, titles) in WORKFLOWS.items():
        if LEGACY and name not in RENAMED_NODES:
            continue
        graph = build()
        workflow = arrange(add_model_links(api_to_ui(graph, info, titles)), info)
        (out / f"{name}.json").write_text(json.dumps(workflow, indent=1) + "\n")
        print("wrote", out / f"{name}.json")


if __name__ == "__main__":
    main()
