"""Every shipped workflow, converted to the API format with the real server's /object_info and run
through /prompt on the CPU: checkpoints pointed at the random-weight fixture, detectors at tiny
random models, and (for CPU time) images at 256 px and samplers at a few steps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import comfy_host
import dit_files
from test_host_sr4g import install_coco, shrink_sr4g
from workflow_format import host_version, shipped_workflows, ui_to_api

# the set the ComfyUI under test loads (0.3.x: the comfyui-0.3/ variants of the training workflows)
WORKFLOWS = shipped_workflows(host_version() or (1000,))
# Flux and SD3.5 workflows load stock files by their official names: random files under those names
# (dit_files.py; T5-XXL is full size, 4.8 GB, built once into the test cache) are linked in when one runs.
DIT = {"pos_psg_flux_dev", "pos_psg_sd35", "pos_psg_chroma", "pos_psg_z_image", "pos_psg_qwen_image"}
# workflows whose text encoder cannot be built on a test machine: ComfyUI builds it from a fixed config, so a
# random file of the right layout is the full model (and runs on the CPU). These are checked against the real
# server's validation (only their missing model files refused) and loaded in the browser, not run.
NOT_RUN = {"pos_psg_flux2": "Flux.2 dev's text encoder is Mistral-3 24B (a 24 GB fp8 file, and 24 B parameters "
                            "on the CPU per prompt)"}


def validates_but_for_model_files(srv, prompt: dict) -> None:
    """The prompt passes the server's validation except for model files it does not have (value not in list)."""
    r = srv.queue(prompt)
    assert "prompt_id" not in r, "it ran without its model files?"
    for node_id, err in r.get("node_errors", {}).items():
        for e in err["errors"]:
            name = str(e.get("extra_info", {}).get("received_value", ""))
            assert e["type"] == "value_not_in_list" and name.endswith(".safetensors"), (node_id, e)
    assert r.get("node_errors"), r


@pytest.fixture(scope="module")
def wsrv(comfyui_path, tiny_models, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_wf")
    models = {"tiny-owl": tiny_models["owlv2"], "tiny-sam": tiny_models["sam"]}
    with comfy_host.server(comfyui_path, base, pos_models=models) as s:
        Image.fromarray(np.random.RandomState(0).randint(0, 255, (96, 96, 3), dtype=np.uint8)).save(
            base / "input" / "example.png")
        install_coco(base)
        yield s


def shrink(prompt: dict) -> dict:
    """Point models at the fixtures and make the graph cheap enough for a CPU."""
    for node in prompt.values():
        i, t = node["inputs"], node["class_type"]
        if t == "CheckpointLoaderSimple" and i["ckpt_name"] not in dit_files.FILES:
            i["ckpt_name"] = comfy_host.FIXTURE
        elif t == "PoSDetectorLoader":
            i["detector"], i["sam"] = "tiny-owl", "tiny-sam"
        elif t in ("EmptyLatentImage", "EmptySD3LatentImage", "ModelSamplingFlux", "EmptyFlux2LatentImage"):
            i["width"] = i["height"] = 256
        elif t in ("KSampler", "KSamplerAdvanced"):
            i["steps"] = 4
        elif t == "PoSSeedSearch":
            i.update(steps=4, search_steps=2, candidates=3)
        elif t == "PoSDistillLoRA":
            i.update(prompts="\n".join(i["prompts"].splitlines()[:2]), steps=2, width=64, height=64, trajectories=1,
                     train_steps=2, batch_size=2)
    return prompt


def test_workflows_are_shipped_with_previews():
    names = {p.stem for p in WORKFLOWS}
    assert {"pos_psg_sd15", "pos_psg_sdxl", "pos_seed_search", "pos_score_images", "pos_guided_vs_unguided"} <= names
    for p in WORKFLOWS:  # the template browser's thumbnails: the comfyui-0.3/ variants are not listed there
        if p.parent.name == "workflows":
            assert any(p.with_suffix(ext).exists() for ext in (".jpg", ".png", ".webp")), f"no preview for {p.name}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_shipped_workflow_runs(wsrv, path):
    info = wsrv.get("/object_info")
    workflow = json.loads(path.read_text())
    prompt = shrink_sr4g(shrink(ui_to_api(workflow, info)))
    if path.stem in NOT_RUN:
        validates_but_for_model_files(wsrv, prompt)
        pytest.skip(f"{path.stem} validated, not run: {NOT_RUN[path.stem]}")
    if path.stem in DIT:
        dit_files.install(wsrv.base / "models")
    entry = wsrv.run(prompt)
    if path.stem in DIT:  # let go of the 4.7 B-parameter T5 before the next workflow loads its own
        wsrv.post("/free", {"unload_models": True, "free_memory": True})
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"], "the workflow has output nodes that produced something"
