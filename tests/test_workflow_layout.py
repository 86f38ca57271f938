"""Shipped workflows (workflows/*.json), read as files: no node overlaps another, and every loader node
carries the download link ComfyUI's missing-model dialog offers (node properties.models)."""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from urllib.parse import urlparse

import pytest

from workflow_format import shipped_workflows

WORKFLOWS = shipped_workflows()  # both sets: the current ComfyUI's and the comfyui-0.3/ variants

# the front end's LiteGraph.NODE_TITLE_HEIGHT: a node's title bar is drawn above its `pos`
TITLE_HEIGHT = 30
# what the missing-model dialog of comfyui-frontend-package downloads without an error
ALLOWED_SOURCES = ("https://huggingface.co/", "https://civitai.com/")
ALLOWED_SUFFIXES = (".safetensors", ".sft")
MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
# ComfyUI's own model loaders: each must name a model file and link it
LOADERS = {"CheckpointLoaderSimple", "UNETLoader", "CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader",
           "QuadrupleCLIPLoader", "VAELoader", "LoraLoader", "LoraLoaderModelOnly", "ControlNetLoader",
           "CLIPVisionLoader", "UpscaleModelLoader", "ImageOnlyCheckpointLoader", "unCLIPCheckpointLoader"}


def rectangles(workflow: dict) -> list[tuple[int, float, float, float, float]]:
    """(id, left, top, right, bottom) of every node as drawn: body from pos and size, title bar above."""
    out = []
    for n in workflow["nodes"]:
        (x, y), (w, h) = n["pos"], n["size"]
        title = 0 if n.get("flags", {}).get("collapsed") else TITLE_HEIGHT
        out.append((n["id"], x, y - title, x + w, y + h))
    return out


def overlaps(workflow: dict) -> list[tuple[int, int]]:
    """Pairs of node ids whose rectangles share any area (touching edges do not count)."""
    rects = rectangles(workflow)
    return [(a[0], b[0]) for i, a in enumerate(rects) for b in rects[i + 1:]
            if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]


def model_files(node: dict) -> list[str]:
    return [v for v in node.get("widgets_values") or [] if isinstance(v, str) and v.lower().endswith(MODEL_SUFFIXES)]


def test_there_are_workflows():
    assert len(WORKFLOWS) >= 5


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.relative_to(p.parents[1]).as_posix() if p.parent.name != "workflows" else p.stem for p in WORKFLOWS])
def test_no_node_overlaps_another(path):
    workflow = json.loads(path.read_text())
    assert overlaps(workflow) == [], f"{path.name}: overlapping nodes (title bars included)"


def test_the_overlap_check_sees_title_bars_and_bodies():
    def wf(*nodes):
        return {"nodes": [{"id": i, "pos": p, "size": s} for i, (p, s) in enumerate(nodes, 1)]}

    # B's title bar (30 px above its pos) reaches into A's body
    assert overlaps(wf(([0, 0], [100, 100]), ([0, 120], [100, 50]))) == [(1, 2)]
    assert overlaps(wf(([0, 0], [100, 100]), ([0, 130], [100, 50]))) == []
    assert overlaps(wf(([0, 0], [100, 100]), ([50, 50], [100, 100]), ([400, 0], [10, 10]))) == [(1, 2)]
    assert overlaps(wf(([0, 0], [100, 100]), ([100, 0], [100, 100]))) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.relative_to(p.parents[1]).as_posix() if p.parent.name != "workflows" else p.stem for p in WORKFLOWS])
def test_every_loader_node_links_its_model(path):
    workflow = json.loads(path.read_text())
    loaders = [n for n in workflow["nodes"] if n["type"] in LOADERS or model_files(n)]
    for node in loaders:
        files = model_files(node)
        assert files, f"{path.name}: {node['type']} (node {node['id']}) names no model file"
        entries = {m["name"]: m for m in node.get("properties", {}).get("models", [])}
        for name in files:
            assert name in entries, f"{path.name}: node {node['id']} loads {name} with no properties.models entry"
            m = entries[name]
            url = urlparse(m["url"])
            assert url.scheme == "https" and PurePosixPath(url.path).name == name, m
            assert m["url"].startswith(ALLOWED_SOURCES) and name.endswith(ALLOWED_SUFFIXES), \
                f"the missing-model dialog refuses to download {m}"
            assert "/resolve/" in url.path or "civitai" in url.netloc, f"not a direct download link: {m}"
            assert isinstance(m["directory"], str) and m["directory"], m


def test_shipped_checkpoints_have_their_links():
    """The SD1.5 and SDXL workflows carry the exact Hugging Face files their loaders name."""
    expected = {
        "pos_psg_sd15": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/"
                        "v1-5-pruned-emaonly-fp16.safetensors",
        "pos_psg_sdxl": "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/"
                        "sd_xl_base_1.0.safetensors",
    }
    for stem, url in expected.items():
        workflow = json.loads(next(p for p in WORKFLOWS if p.stem == stem).read_text())
        [loader] = [n for n in workflow["nodes"] if n["type"] == "CheckpointLoaderSimple"]
        assert loader["properties"]["models"] == [{"name": url.rsplit("/", 1)[1], "url": url,
                                                   "directory": "checkpoints"}]
