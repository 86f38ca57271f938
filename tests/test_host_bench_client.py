"""pos_core.comfy_client against the real ComfyUI: start main.py with a scratch base directory (the pack
linked in, the fixture's checkpoint folder through an extra model paths file), convert a shipped UI-format
workflow with /object_info, run it, fetch the image, attach by URL, ComfyUI's own errors, a failed start
showing the log, and no process left after stop."""

from __future__ import annotations

import io
import json
import os

import pytest

import comfy_host
from pos_core.bench.workflow import SAVE_NODE, prepare
from pos_core.comfy_client import ComfyError, ComfyServer


@pytest.fixture(scope="module")
def srv(comfyui_path, tmp_path_factory):
    ckpt = comfy_host.fixture_checkpoint()
    with ComfyServer.start(comfyui_path, tmp_path_factory.mktemp("client"), checkpoints=ckpt.parent,
                           env={"OMP_NUM_THREADS": "1"}) as s:
        yield s
    assert s.proc.poll() is not None, "stopped on leaving the context"


def test_runs_a_shipped_ui_workflow_and_fetches_the_image(srv):
    from PIL import Image

    assert (srv.base_dir / "custom_nodes" / "pos-spatial").resolve() == comfy_host.ROOT
    wf = json.loads((comfy_host.ROOT / "workflows" / "pos_psg_sd15.json").read_text())
    api = srv.to_api(wf)
    assert api["6"]["class_type"] == "KSampler" and isinstance(api["6"]["inputs"]["seed"], int)
    graph = prepare(api, "a cat to the left of a dog", 7, comfy_host.FIXTURE,
                    {"steps": 1, "width": 64, "height": 64, "guided": False})
    outputs = srv.run(graph)
    images = srv.images(outputs, SAVE_NODE)
    assert len(images) == 1 and Image.open(io.BytesIO(images[0])).size == (64, 64)
    assert srv.images(outputs, "no-such-node") == []
    other = ComfyServer.attach(srv.url)
    assert other.alive() and other.pid is None
    other.stop()
    assert srv.alive(), "stopping an attached server leaves it running"


def test_comfyui_errors_are_raised_with_its_message(srv):
    with pytest.raises(ComfyError, match="refused the workflow.*NoSuchNode"):
        srv.run({"1": {"class_type": "NoSuchNode", "inputs": {}}})
    bad = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "missing.safetensors"}},
           "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
           "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}},
           "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}}}
    with pytest.raises(ComfyError, match="missing.safetensors"):
        srv.run(bad)


def test_failed_start_shows_the_log_and_leaves_no_process(comfyui_path, tmp_path):
    with pytest.raises(ComfyError, match="(?s)exited with status.*no-such-flag"):
        ComfyServer.start(comfyui_path, tmp_path, extra_args=["--no-such-flag"], start_timeout=120)
    with pytest.raises(ValueError, match="has no main.py"):
        ComfyServer.start(tmp_path, tmp_path / "b")
    with pytest.raises(ComfyError, match="did not answer"):
        ComfyServer.attach("http://127.0.0.1:9", ready_timeout=1)
    assert not os.path.exists(tmp_path / "output" / "x")
