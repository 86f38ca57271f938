"""Shared fixtures: the real CLIP BPE vocabulary and the ComfyUI checkout named by COMFYUI_PATH."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test needs the network; fail fast instead of retrying
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = Path(os.environ.get("POS_TEST_CACHE", Path.home() / ".cache" / "pos_spatial_tests"))


def clip_bpe_path() -> str | None:
    """CLIP's BPE file: $POS_CLIP_BPE, else the copy the open_clip_torch package ships."""
    env = os.environ.get("POS_CLIP_BPE")
    if env:
        return env
    spec = importlib.util.find_spec("open_clip")
    if spec and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
        if path.exists():
            return str(path)
    return None


@pytest.fixture(scope="session")
def clip_tokenizer():
    """transformers CLIPTokenizer on the real CLIP vocabulary (built once into the test cache)."""
    bpe = clip_bpe_path()
    if bpe is None:
        pytest.skip("no CLIP BPE vocabulary: pip install --no-deps open_clip_torch, or set POS_CLIP_BPE")
    from pos_core.tokens import clip_tokenizer as make

    CACHE.mkdir(parents=True, exist_ok=True)
    local = CACHE / "bpe_simple_vocab_16e6.txt.gz"
    if not local.exists():
        local.write_bytes(Path(bpe).read_bytes())
    return make(str(local))


@pytest.fixture(scope="session")
def clip_vocab_dir(clip_tokenizer) -> str:
    """Folder with CLIP's vocab.json and merges.txt (for tokenizers of test models)."""
    return str(CACHE / "bpe_simple_vocab_16e6.txt.gz.hf")


@pytest.fixture(scope="session")
def tiny_models(clip_vocab_dir) -> dict:
    """Paths of tiny random-weight OWLv2, Grounding DINO, SAM and Depth Anything models (transformers)."""
    import detect_fixtures

    return {"owlv2": str(detect_fixtures.owlv2(clip_vocab_dir)), "sam": str(detect_fixtures.sam()),
            "depth": str(detect_fixtures.depth_anything()), "gdino": str(detect_fixtures.grounding_dino())}


@pytest.fixture(scope="session")
def comfyui_path() -> Path:
    """The ComfyUI checkout host tests run against; they skip where COMFYUI_PATH is unset."""
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        pytest.skip("host test: set COMFYUI_PATH to a ComfyUI checkout to run it")
    p = Path(path)
    if not (p / "comfy").is_dir():
        pytest.fail(f"COMFYUI_PATH={path} is not a ComfyUI checkout (no comfy/ folder)")
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
    import torch
    from comfy.cli_args import args

    args.cpu = args.cpu or not torch.cuda.is_available()
    return p


@pytest.fixture(scope="session")
def host(comfyui_path):
    """The pack and the fixture checkpoint loaded in-process into the real ComfyUI (inference mode)."""
    import comfy_host

    class Host:
        pass

    h = Host()
    h.pack = comfy_host.load_pack()
    import comfy.model_management
    import comfy.sample
    import comfy.samplers
    import nodes

    h.nodes, h.comfy_sample, h.samplers, h.mm = nodes, comfy.sample, comfy.samplers, comfy.model_management
    from pos_spatial_pack.nodes import attention_maps, guidance, psg_patch, relations

    h.relations, h.guidance, h.maps, h.patch = relations, guidance, attention_maps, psg_patch
    with torch.inference_mode():
        h.model, h.clip, h.vae = comfy_host.load_fixture()
        h.neg = nodes.CLIPTextEncode().encode(h.clip, "")[0]
    return h
