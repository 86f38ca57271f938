"""Host tests through the real ComfyUI server: graphs queued on /prompt with each sampler node."""

from __future__ import annotations

import copy
import json
import time

import pytest

import comfy_host

PROMPT = "a photo of a cat to the left of a dog"


@pytest.fixture(scope="module")
def srv(comfyui_path, tmp_path_factory):
    with comfy_host.server(comfyui_path, tmp_path_factory.mktemp("comfy")) as s:
        yield s


def base_graph(steps=4, prompt=PROMPT, scale=20.0):
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": comfy_host.FIXTURE}},
        "2": {"class_type": "PoSRelationsFromPrompt", "inputs": {"clip": ["1", 1], "text": prompt}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "4": {"class_type": "PoSGuidance", "inputs": {
            "model": ["1", 0], "relations": ["2", 1], "scale": scale, "guided_fraction": 0.5,
            "loss_scale": -1.0, "smoothing": True, "attention_level": "auto"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 1}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "PoSAttentionMaps", "inputs": {"attention": ["4", 1], "images": ["7", 0],
                                                           "start_step": 0, "end_step": -1}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "pos_test"}},
    }


SAMPLERS = {
    "KSampler": {"6": {"class_type": "KSampler", "inputs": {
        "model": ["4", 0], "seed": 7, "steps": 4, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
        "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["5", 0], "denoise": 1.0}}},
    "KSamplerAdvanced": {"6": {"class_type": "KSamplerAdvanced", "inputs": {
        "model": ["4", 0], "add_noise": "enable", "noise_seed": 7, "steps": 4, "cfg": 5.0,
        "sampler_name": "dpmpp_2m", "scheduler": "karras", "positive": ["2", 0], "negative": ["3", 0],
        "latent_image": ["5", 0], "start_at_step": 0, "end_at_step": 10000,
        "return_with_leftover_noise": "disable"}}},
    "SamplerCustom": {
        "6": {"class_type": "SamplerCustom", "inputs": {
            "model": ["4", 0], "add_noise": True, "noise_seed": 7, "cfg": 5.0, "positive": ["2", 0],
            "negative": ["3", 0], "sampler": ["10", 0], "sigmas": ["11", 0], "latent_image": ["5", 0]}},
        "10": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "heun"}},
        "11": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "normal",
                                                          "steps": 4, "denoise": 1.0}}},
    "SamplerCustomAdvanced": {
        "6": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["12", 0], "guider": ["13", 0], "sampler": ["10", 0], "sigmas": ["11", 0],
            "latent_image": ["5", 0]}},
        "10": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
        "11": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "simple",
                                                          "steps": 4, "denoise": 1.0}},
        "12": {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}},
        "13": {"class_type": "CFGGuider", "inputs": {"model": ["4", 0], "positive": ["2", 0],
                                                     "negative": ["3", 0], "cfg": 5.0}}},
}


def test_nodes_are_in_object_info(srv):
    info = srv.get("/object_info")
    for name in ("PoSRelationsFromPrompt", "PoSRelation", "PoSGuidance", "PoSAttentionCapture", "PoSAttentionMaps"):
        assert name in info, name
        assert info[name]["category"] == "PoS spatial"
    g = info["PoSGuidance"]["input"]["required"]
    assert g["scale"][1]["default"] == 20.0 and g["guided_fraction"][1]["default"] == 0.5
    assert "tooltip" in g["scale"][1]


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_guided_graph_runs_with_each_sampler_node(srv, sampler):
    graph = {**base_graph(), **SAMPLERS[sampler]}
    entry = srv.run(graph)
    files = srv.output_images(entry, "9")
    assert len(files) == 1 and files[0].exists()
    assert entry["outputs"]["8"]["images"], "the attention maps node shows a preview"


def test_user_mistake_is_a_node_error_and_the_queue_keeps_working(srv):
    graph = {**base_graph(prompt="a beautiful landscape"), **SAMPLERS["KSampler"]}
    r = srv.queue(graph)
    entry = srv.wait(r["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    msg = json.dumps(entry["status"]["messages"])
    assert "no spatial relation found" in msg and "PoSRelationsFromPrompt" in msg
    srv.run({**base_graph(), **SAMPLERS["KSampler"]})


def test_cancel_stops_a_guided_run_promptly(srv):
    graph = {**base_graph(), **copy.deepcopy(SAMPLERS["KSampler"])}  # the shared sampler graph stays at 4 steps
    graph["6"]["inputs"]["steps"] = 200
    graph["6"]["inputs"]["seed"] = 99
    r = srv.queue(graph)
    pid = r["prompt_id"]
    end = time.time() + 120
    while time.time() < end and not srv.get("/queue")["queue_running"]:
        time.sleep(0.2)
    time.sleep(8.0)  # inside the guided window by now
    t0 = time.time()
    srv.interrupt()
    entry = srv.wait(pid, timeout=120)
    stopped = time.time() - t0
    assert entry["status"]["status_str"] == "error"
    assert "execution_interrupted" in json.dumps(entry["status"]["messages"])
    assert stopped < 15, f"took {stopped:.1f} s to stop"


def search_graph(candidates=3, steps=4, k=2):
    g = base_graph()
    g.pop("8")
    g["6"] = {"class_type": "PoSSeedSearch", "inputs": {
        "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["5", 0],
        "relations": ["2", 1], "seed": 3, "candidates": candidates, "mode": "attention", "steps": steps,
        "search_steps": k, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "batch_size": 0,
        "vae": ["1", 2]}}
    g["10"] = {"class_type": "PoSScore", "inputs": {
        "images": ["7", 0], "relations": ["2", 1], "subject_masks": ["11", 0], "object_masks": ["12", 0],
        "threshold": -1.0}}
    g["11"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 256, "height": 256}}
    g["12"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 256, "height": 256}}
    return g


def test_seed_search_and_score_graph(srv):
    entry = srv.run(search_graph())
    assert entry["outputs"]["6"]["images"], "the search shows its candidate grid"
    assert entry["outputs"]["10"]["images"], "the score node shows its overlay"
    assert srv.output_images(entry, "9")[0].exists()


def test_cancel_stops_a_seed_search_promptly(srv):
    graph = search_graph(candidates=64, steps=40, k=30)
    graph["6"]["inputs"]["batch_size"] = 1
    r = srv.queue(graph)
    end = time.time() + 120
    while time.time() < end and not srv.get("/queue")["queue_running"]:
        time.sleep(0.2)
    time.sleep(8.0)
    t0 = time.time()
    srv.interrupt()
    entry = srv.wait(r["prompt_id"], timeout=120)
    assert "execution_interrupted" in json.dumps(entry["status"]["messages"])
    assert time.time() - t0 < 15


def test_help_pages_document_every_node_input_and_output(srv):
    """Each node's help page (web/docs/<node id>.md, what the front end's docs panel shows) names every
    input and output the running node has, as /object_info gives them (the host-free
    tests/test_node_docs.py checks the same against the node sources)."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "web" / "docs"
    info = srv.get("/object_info")
    for name, node in info.items():
        if node.get("category") != "PoS spatial":
            continue
        page = docs / f"{name}.md"
        assert page.exists(), page
        text = page.read_text(encoding="utf-8")
        assert text.startswith(f"# {node['display_name']}\n"), name
        inputs = [*node["input"].get("required", {}), *node["input"].get("optional", {})]
        missing = [i for i in inputs if f"| `{i}` |" not in text]
        missing += [o for o in node["output_name"] if f"| `{o}` |" not in text]
        assert not missing, (node["display_name"], missing)


@pytest.mark.parametrize("prompt", ["a vase in front of a clock", "a cup near a plate",
                                    "a vase behind a clock and a cup near a plate"])
def test_depth_and_near_only_prompts_run_unguided_with_a_note(srv, prompt):
    """Relations PSG cannot guide (front / behind / near) must not crash the sampler: the run goes
    on unguided, records attention, and the guidance node says why in its UI output."""
    graph = {**base_graph(prompt=prompt), **SAMPLERS["KSampler"]}
    entry = srv.run(graph)
    assert srv.output_images(entry, "9")
    note = " ".join(entry["outputs"]["4"]["text"])
    assert "left/right/above/below only" in note and "PoS Seed Search in pse mode" in note
    unguided = {**base_graph(prompt=prompt, scale=0.0), **SAMPLERS["KSampler"]}
    same = srv.run(unguided)
    a, b = _pixels(srv.output_images(entry, "9")[0]), _pixels(srv.output_images(same, "9")[0])
    assert (a == b).all(), "an unguidable prompt must give exactly the unguided image"


def test_mixed_prompt_guides_the_2d_relation_and_notes_the_other(srv):
    prompt = "a cat to the left of a dog and a vase in front of a clock"
    entry = srv.run({**base_graph(prompt=prompt), **SAMPLERS["KSampler"]})
    note = " ".join(entry["outputs"]["4"]["text"])
    assert "leaves vase front clock unguided" in note
    unguided = srv.run({**base_graph(prompt=prompt, scale=0.0), **SAMPLERS["KSampler"]})
    a, b = _pixels(srv.output_images(entry, "9")[0]), _pixels(srv.output_images(unguided, "9")[0])
    assert not (a == b).all(), "the left-of relation must still be guided"


def _pixels(path):
    """Decoded pixels of a saved PNG (the file also embeds the graph, which differs by scale)."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path))
