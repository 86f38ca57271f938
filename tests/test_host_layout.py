"""PoS Layout from Relations through the real ComfyUI server: it gives the same image as the stock-node
layout a user would wire by hand (CLIP Text Encode + Conditioning (Set Area with Percentage) +
Conditioning (Combine) per object), lays out three objects, shows its regions, and refuses what it
cannot place with a node error that names the input, leaving the queue working."""

from __future__ import annotations

import json

import pytest
import torch

import comfy_host

PROMPT = "a photo of a cat to the left of a dog"
THREE = "a cat to the left of a dog, and a cup above the dog"
M = 1 / 16


@pytest.fixture(scope="module")
def srv(comfyui_path, tmp_path_factory):
    with comfy_host.server(comfyui_path, tmp_path_factory.mktemp("layout")) as s:
        yield s


def graph(prompt: str, positive, guided: bool = False, extra: dict | None = None) -> dict:
    g = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": comfy_host.FIXTURE}},
        "rel": {"class_type": "PoSRelationsFromPrompt", "inputs": {"clip": ["ckpt", 1], "text": prompt}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ckpt", 1], "text": "blurry"}},
        "lat": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["ks", 0], "filename_prefix": "latents/layout"}},
    }
    model = ["ckpt", 0]
    if guided:
        g["psg"] = {"class_type": "PoSGuidance", "inputs": {
            "model": model, "relations": ["rel", 1], "scale": 50.0, "guided_fraction": 0.5, "loss_scale": -1.0,
            "smoothing": True, "attention_level": "auto"}}
        model = ["psg", 0]
    g["ks"] = {"class_type": "KSampler", "inputs": {
        "model": model, "positive": positive, "negative": ["neg", 0], "latent_image": ["lat", 0], "seed": 3,
        "steps": 4, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}}
    g.update(extra or {})
    return g


def layout_node(**kw) -> dict:
    inputs = {"clip": ["ckpt", 1], "conditioning": ["rel", 0], "relations": ["rel", 1], "object_prompt": "a {object}",
              "margin": M, "strength": 1.0, "width": 128, "height": 128}
    return {"class_type": "PoSLayoutFromRelations", "inputs": {**inputs, **kw}}


def by_hand(regions: dict[str, tuple[float, float, float, float]]) -> tuple[dict, list]:
    """The same layout from stock nodes: one CLIP Text Encode per object on its percentage area, combined."""
    g, out = {}, ["rel", 0]
    for i, (name, (x, y, w, h)) in enumerate(regions.items()):
        g[f"t{i}"] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ckpt", 1], "text": f"a {name}"}}
        g[f"a{i}"] = {"class_type": "ConditioningSetAreaPercentage", "inputs": {
            "conditioning": [f"t{i}", 0], "width": w, "height": h, "x": x, "y": y, "strength": 1.0}}
        g[f"c{i}"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": out,
                                                                      "conditioning_2": [f"a{i}", 0]}}
        out = [f"c{i}", 0]
    return g, out


def latent(srv, g) -> torch.Tensor:
    from safetensors.torch import load_file

    entry = srv.run(g)
    f = entry["outputs"]["save"]["latents"][0]
    return load_file(str(srv.base / f["type"] / f.get("subfolder", "") / f["filename"]))["latent_tensor"].float()


def test_the_node_is_the_stock_layout_and_changes_the_image(srv):
    node = latent(srv, graph(PROMPT, ["lay", 0], extra={"lay": layout_node()}))
    extra, pos = by_hand({"cat": (0.0, 0.0, 0.5 - M, 1.0), "dog": (0.5 + M, 0.0, 0.5 - M, 1.0)})
    hand = latent(srv, graph(PROMPT, pos, extra=extra))
    plain = latent(srv, graph(PROMPT, ["rel", 0]))
    assert torch.equal(node, hand), "PoS Layout from Relations differs from the same layout built from stock nodes"
    assert (node - plain).abs().max() > 1e-3, "the layout did not change the image"


def test_three_objects_and_the_regions_it_shows(srv):
    g = graph(THREE, ["lay", 0], extra={"lay": layout_node()})
    entry = srv.run(g)
    regions = {n: (0.0, 0.0, 0.5 - M, 1.0) if n == "cat" else
               (0.5 + M, 0.5 + M, 0.5 - M, 0.5 - M) if n == "dog" else (0.0, 0.0, 1.0, 0.5 - M)
               for n in ("cat", "dog", "cup")}
    extra, pos = by_hand(regions)
    hand = latent(srv, graph(THREE, pos, extra=extra))
    f = entry["outputs"]["save"]["latents"][0]
    from safetensors.torch import load_file
    node = load_file(str(srv.base / f["type"] / f.get("subfolder", "") / f["filename"]))["latent_tensor"].float()
    assert torch.equal(node, hand)
    shown = srv.output_images(entry, "lay")
    assert len(shown) == 1 and shown[0].exists(), "no preview of the regions"


def test_it_composes_with_pos_guidance(srv):
    layout = graph(PROMPT, ["lay", 0], extra={"lay": layout_node()})
    both = latent(srv, graph(PROMPT, ["lay", 0], guided=True, extra={"lay": layout_node()}))
    assert torch.isfinite(both).all()
    assert (both - latent(srv, layout)).abs().max() > 1e-3, "PoS Guidance did not act on the layout's graph"


def test_a_depth_relation_is_skipped_and_named(srv):
    g = graph("a vase in front of a clock, a cat to the left of a dog", ["lay", 0], extra={"lay": layout_node()})
    g["show"] = {"class_type": "PreviewAny", "inputs": {"source": ["lay", 2]}}
    entry = srv.run(g)
    text = json.dumps(entry["outputs"].get("show", {}))
    assert "skipped" in text and "vase" in text, text[:2000]


@pytest.mark.parametrize("prompt, kw, words", [
    ("a vase in front of a clock", {}, ["relations", "front", "PoS Guidance"]),
    (PROMPT, {"object_prompt": "a photo"}, ["object_prompt", "{object}"]),
    ("a cat to the left of a dog, and a dog to the left of the cat", {}, ["contradict"]),
    ("a cat to the left of a dog, and the dog to the left of a cup", {"margin": 0.2}, ["margin", "smaller margin"]),
])
def test_what_it_cannot_place_is_a_node_error_and_the_queue_keeps_working(srv, prompt, kw, words):
    r = srv.queue(graph(prompt, ["lay", 0], extra={"lay": layout_node(**kw)}))
    assert "prompt_id" in r, r
    entry = srv.wait(r["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    msg = json.dumps(entry["status"]["messages"])
    for w in words:
        assert w in msg, msg[:3000]
    assert "PoSLayoutFromRelations" in msg
    srv.run(graph(PROMPT, ["rel", 0]))  # the queue keeps working


@pytest.mark.parametrize("node, name, value", [
    ("lay", "margin", 0.5), ("lay", "strength", -1.0), ("lay", "width", 0), ("psg", "max_step", -5.0),
])
def test_out_of_range_widget_values_are_refused_naming_the_input(srv, node, name, value):
    """Values outside an input's range never reach the node: ComfyUI refuses the prompt and names the input."""
    g = graph(PROMPT, ["lay", 0], guided=True, extra={"lay": layout_node()})
    g[node]["inputs"][name] = value
    r = srv.queue(g)
    assert "prompt_id" not in r, r
    assert name in json.dumps(r.get("node_errors", r)), r
    srv.run(graph(PROMPT, ["rel", 0]))  # the queue keeps working
