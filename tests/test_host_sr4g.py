"""SR4G in the real ComfyUI: the shipped sr4g_lora_training workflow runs end to end on the random-weight
checkpoint (SR4G Spatial Captions -> ComfyUI's dataset nodes -> Train LoRA -> Save LoRA; the workflow of the
ComfyUI under test: 0.33's or workflows/comfyui-0.3/), 64 px images and 2 steps for CPU time; a broken
annotation file fails with its annotation id."""

from __future__ import annotations

import json
import time
from pathlib import Path

import comfy_host
import dit_files
import numpy as np
import pytest
from PIL import Image
from workflow_format import host_version, shipped_workflows, ui_to_api

# the stock dataset and save nodes of the LoRA-training workflows, by ComfyUI version (docs/comfyui-versions.md)
DATASET_NODES = {"current": {"LoadImageTextDataSetFromFolder", "ImageScale", "MakeTrainingDataset", "TrainLoraNode",
                             "SaveLoRA"},
                 "0.3": {"LoadImageTextSetFromFolderNode", "VAEEncode", "TrainLoraNode", "SaveLoRANode"}}
SAVE_LORA = ("SaveLoRA", "SaveLoRANode")


def workflow_file(name: str) -> Path:
    """The shipped workflow `name` as the ComfyUI under test loads it."""
    return next(p for p in shipped_workflows(host_version() or (1000,)) if p.stem == name)


def coco(images: Path, ann: Path, broken: bool = False) -> None:
    """Three 64 x 64 images: 1 and 2 (train for split seed 0) each with a dog left of a cat, 3 (test) with a
    thing3 left of a thing4. Ten categories, so 20 % unseen (seed 0: ids 3 and 4) leaves dog and cat seen
    and gives image 3 test_unseen captions."""
    images.mkdir(parents=True, exist_ok=True)
    ann.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    imgs, anns = [], []
    for i, (a, b) in ((1, (1, 2)), (2, (1, 2)), (3, (3, 4))):
        Image.fromarray(rng.randint(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / f"{i}.png")
        imgs.append({"id": i, "file_name": f"{i}.png", "width": 64, "height": 64})
        anns.append({"id": 10 * i, "image_id": i, "category_id": a, "bbox": [2, 20, 20, 20], "iscrowd": 0})
        anns.append({"id": 10 * i + 1, "image_id": i, "category_id": b if not (broken and i == 2) else 99,
                     "bbox": [40, 20, 20, 20], "iscrowd": 0})
    ann.write_text(json.dumps({"images": imgs, "annotations": anns,
                               "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}] +
                               [{"id": c, "name": f"thing{c}"} for c in range(3, 11)]}))


def install_coco(base: Path) -> None:
    """The tiny COCO download where the shipped SR4G workflows look for it (input/coco/...)."""
    coco(base / "input" / "coco" / "train2017", base / "input" / "coco" / "annotations" / "instances_train2017.json")


def shrink_sr4g(prompt: dict) -> dict:
    """The SR4G and training nodes of a shipped workflow made cheap for a CPU (2 pairs, 64 px, 2 steps)."""
    for node in prompt.values():
        i, t = node["inputs"], node["class_type"]
        if t == "SR4GSpatialCaptions":
            i.update(max_pairs=2, max_per_image=1)
        elif t in ("LoadImageTextSetFromFolderNode", "ImageScale"):
            i.update(width=64, height=64)
        elif t in ("TrainLoraNode", "PoSTrainLoRA"):
            i.update(steps=2, training_dtype="fp32", lora_dtype="fp32", gradient_checkpointing=False, rank=2)
        elif t == "CheckpointLoaderSimple" and i["ckpt_name"] not in dit_files.FILES:
            i["ckpt_name"] = comfy_host.FIXTURE
        elif t == "PoSDetectorLoader":
            i["detector"], i["sam"] = "tiny-owl", "tiny-sam"
        elif t == "EmptyLatentImage":
            i["width"] = i["height"] = 64
        elif t == "KSampler":
            i["steps"] = 2
    return prompt


@pytest.fixture(scope="module")
def srv(comfyui_path, tiny_models, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_sr4g")
    models = {"tiny-owl": tiny_models["owlv2"], "tiny-sam": tiny_models["sam"]}
    with comfy_host.server(comfyui_path, base, pos_models=models) as s:
        install_coco(base)
        coco(base / "input" / "coco" / "train2017", base / "input" / "coco" / "broken.json", broken=True)
        yield s


def training_prompt(srv, annotations: str | None = None, workflow: str = "sr4g_lora_training") -> dict:
    prompt = ui_to_api(json.loads(workflow_file(workflow).read_text()), srv.get("/object_info"))
    for node in prompt.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = comfy_host.FIXTURE
        elif node["class_type"] == "SR4GSpatialCaptions" and annotations:
            node["inputs"]["annotations"] = annotations
    return shrink_sr4g(prompt)


def test_sr4g_lora_training_workflow_runs_end_to_end(srv):
    prompt = training_prompt(srv)
    types = {n["class_type"] for n in prompt.values()}
    nodes = DATASET_NODES["0.3" if (host_version() or (1000,)) < (0, 4) else "current"]
    assert {"SR4GSpatialCaptions"} | nodes <= types, types
    entry = srv.run(prompt, timeout=900)
    assert entry["status"]["status_str"] == "success"
    dataset = srv.base / "input" / "sr4g_train"
    captions = sorted(p.read_text().strip() for p in dataset.glob("*.txt"))
    assert len(captions) == 2 and all(c.startswith(("a dog ", "a cat ")) for c in captions)
    assert len(list((srv.base / "output" / "sr4g").glob("*/triplets.jsonl"))) == 1
    saved = list((srv.base / "output" / "loras").glob("sr4g_lora_2_steps_*.safetensors"))
    assert len(saved) == 1
    from safetensors.torch import load_file

    weights = load_file(str(saved[0]))
    assert weights and any("lora" in k for k in weights), list(weights)[:5]


def test_broken_annotations_fail_with_the_annotation_id(srv):
    prompt = training_prompt(srv, "coco/broken.json")
    r = srv.queue(prompt)
    assert "prompt_id" in r, r
    entry = srv.wait(r["prompt_id"], timeout=300)
    assert entry["status"]["status_str"] == "error"
    text = json.dumps(entry["status"]["messages"])
    assert "annotation 21: unknown category_id 99" in text, text[:2000]


def test_sr4g_benchmark_workflow_runs(srv):
    """test_unseen prompt -> base / LoRA (trained in the graph) / PoS Guidance -> three PoS Scores."""
    prompt = shrink_sr4g(ui_to_api(json.loads(workflow_file("sr4g_benchmark").read_text()),
                                   srv.get("/object_info")))
    for node in prompt.values():
        if node["class_type"] == "SR4GSpatialCaptions" and node["inputs"]["split"] == "test_unseen":
            node["inputs"]["max_pairs"] = 1
    entry = srv.run(prompt, timeout=900)
    scores = [k for k, n in prompt.items() if n["class_type"] == "PoSScore"]
    assert len(scores) == 4 and all(entry["outputs"].get(k) for k in scores)
    saved = sorted(p.name.split("_0")[0] for p in (srv.base / "output" / "sr4g_bench").glob("*.png"))
    assert saved == ["base", "lora", "pos_lora", "psg"], saved


def test_sr4g_pos_lora_training_workflow_runs_end_to_end(srv):
    """SR4G captions -> dataset -> PoS Train LoRA -> Save LoRA + both loss graphs, on the fixture."""
    prompt = training_prompt(srv, workflow="sr4g_pos_lora_training")
    node = next(k for k, n in prompt.items() if n["class_type"] == "PoSTrainLoRA")
    assert prompt[node]["inputs"]["pos_weight"] > 0
    entry = srv.run(prompt, timeout=900)
    dataset = srv.base / "input" / "sr4g_train"
    assert (dataset / "pos_relations.jsonl").exists()
    saved = list((srv.base / "output" / "loras").glob("sr4g_pos_lora_2_steps_*.safetensors"))
    assert len(saved) == 1
    from safetensors.torch import load_file

    weights = load_file(str(saved[0]))
    assert any(k.endswith("lora_up.weight") for k in weights) and any(k.endswith("lora_down.weight") for k in weights)
    previews = [k for k, n in prompt.items() if n["class_type"] in ("PreviewImage", "LossGraphNode")]
    assert all(entry["outputs"].get(k, {}).get("images") for k in previews), previews


def test_cancelled_training_writes_no_lora(srv):
    """Interrupting PoS Train LoRA mid-run: the prompt ends interrupted and Save LoRA never runs, so no
    partial LoRA is written as if finished; the server then trains the next prompt normally."""
    prompt = training_prompt(srv, workflow="sr4g_pos_lora_training")
    node = next(k for k, n in prompt.items() if n["class_type"] == "PoSTrainLoRA")
    save = next(k for k, n in prompt.items() if n["class_type"] in SAVE_LORA)
    prompt[node]["inputs"]["steps"] = 5000
    prompt[save]["inputs"]["prefix"] = "loras/cancelled_pos_lora"
    r = srv.queue(prompt)
    pid = r["prompt_id"]
    end = time.time() + 300
    while time.time() < end and "PoS Train LoRA: training 5000 steps" not in srv.log.read_text():
        time.sleep(0.5)
    time.sleep(3.0)  # a few training steps in
    srv.interrupt()
    entry = srv.wait(pid, timeout=300)
    assert entry["status"]["status_str"] == "error"
    assert "execution_interrupted" in json.dumps(entry["status"]["messages"])
    assert not list((srv.base / "output" / "loras").glob("cancelled_pos_lora*")), "a cancelled run wrote a LoRA"


# For the browser test (tests/test_host_browser.py runs every shipped workflow from the front end): after
# install_coco(base), these widget settings make the SR4G workflows cheap, as shrink_sr4g does for /prompt.
BROWSER_SHRINK_JS = """
    if (n.type === 'SR4GSpatialCaptions' && w.name === 'max_pairs') w.value = 1;
    if (n.type === 'SR4GSpatialCaptions' && w.name === 'max_per_image') w.value = 1;
    if (w.name === 'training_dtype' || w.name === 'lora_dtype') w.value = 'fp32';
    if (w.name === 'gradient_checkpointing') w.value = false;
"""
