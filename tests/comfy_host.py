"""Host-test helpers: a random-weight SD1.5-architecture checkpoint and the real ComfyUI around it.

The checkpoint is built from ComfyUI's and transformers' own classes with seeded, explicit weights,
cached outside the repository. `server()` starts the real ComfyUI (main.py --cpu) with this pack
in its custom_nodes, for graph runs through /prompt; `load_pack()` imports the pack in-process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import torch

from workflow_format import comfyui_version  # noqa: F401  (the checkout's version, for tests and scripts)

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("POS_TEST_CACHE", Path.home() / ".cache" / "pos_spatial_tests"))
FIXTURE = "pos_random_sd15.safetensors"
FIXTURE_VERSION = "1"

UNET_SMALL = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1, 1],
    channel_mult=[1, 2], num_heads=8, num_head_channels=-1, use_spatial_transformer=True,
    transformer_depth=[1, 1], transformer_depth_output=[1, 1, 1, 1], transformer_depth_middle=1,
    context_dim=768, legacy=False, use_linear_in_transformer=False, adm_in_channels=None,
)
UNET_FULL = dict(UNET_SMALL, num_res_blocks=[2, 2, 2, 2], channel_mult=[1, 2, 4, 4],
                 transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
       "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def seeded(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    """The fixtures' weight rule, fp32: N(0, 0.02) matrices and kernels, zero biases, unit norms."""
    if len(shape) >= 2:
        return torch.randn(shape, generator=gen) * 0.02
    return torch.zeros(shape) if name.endswith("bias") else torch.ones(shape)


def _init(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Explicit seeded weights (`seeded`) for every parameter of `module`, in place."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(seeded(name, p.shape, gen))


def build_checkpoint(path: Path, full: bool = False, seed: int = 0) -> Path:
    """Write a random-weight SD1.5-architecture checkpoint (fp16) that ComfyUI detects as SD15."""
    import comfy.ops
    from comfy.ldm.models.autoencoder import AutoencodingEngine
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    gen = torch.Generator().manual_seed(seed)
    sd = {}
    unet = UNetModel(**(UNET_FULL if full else UNET_SMALL), dtype=torch.float32, device="cpu",
                     operations=comfy.ops.disable_weight_init)
    _init(unet, gen)
    sd.update({f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()})
    del unet
    vae = AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
        encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": VAE},
        decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": VAE})
    _init(vae, gen)
    sd.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    del vae
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12,
                                        max_position_embeddings=77, hidden_act="quick_gelu"))
    _init(clip, gen)
    sd.update({f"cond_stage_model.transformer.{k}": v for k, v in clip.state_dict().items()})
    sd = {k: v.to(torch.float16).contiguous() for k, v in sd.items() if v.is_floating_point()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(sd, str(tmp), metadata={"pos_fixture": FIXTURE_VERSION})
    tmp.replace(path)
    return path


def fixture_checkpoint(full: bool = False) -> Path:
    """The cached random checkpoint (small UNet for tests; `full` = full-size SD1.5 UNet for timing)."""
    path = CACHE / "checkpoints" / (("full_" if full else "") + FIXTURE)
    if not path.exists():
        build_checkpoint(path, full=full)
    return path


def load_pack():
    """Import this pack's `nodes` package in-process (ComfyUI must be importable)."""
    name = "pos_spatial_pack"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_fixture():
    """(model, clip, vae) of the small fixture through ComfyUI's own checkpoint loader."""
    import comfy.sd

    out = comfy.sd.load_checkpoint_guess_config(str(fixture_checkpoint()), output_vae=True, output_clip=True)
    return out[0], out[1], out[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real ComfyUI server on loopback, with this pack and the fixture checkpoint."""

    def __init__(self, comfyui: Path, base: Path, port: int, proc: subprocess.Popen, log: Path):
        self.comfyui, self.base, self.port, self.proc, self.log = comfyui, base, port, proc, log
        self.url = f"http://127.0.0.1:{port}"
        self.client_id = uuid.uuid4().hex

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            return json.loads(r.read())

    def post(self, path: str, payload: dict | None):
        data = json.dumps(payload or {}).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                body = r.read()
                return json.loads(body) if body else {}
        except urllib.error.HTTPError as e:
            return {"http_error": e.code, **json.loads(e.read() or b"{}")}

    def queue(self, prompt: dict) -> dict:
        """POST an API-format prompt; the response has prompt_id, or error and node_errors."""
        return self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        """The history entry of a prompt once it finished (status says success or error)."""
        end = time.time() + timeout
        while time.time() < end:
            h = self.get(f"/history/{prompt_id}")
            if prompt_id in h and h[prompt_id].get("status", {}).get("completed") is not None:
                entry = h[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited; log: {self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, prompt: dict, timeout: float = 600) -> dict:
        """Queue, wait, and fail with ComfyUI's own messages unless it succeeded."""
        r = self.queue(prompt)
        assert "prompt_id" in r, f"prompt rejected: {json.dumps(r)[:3000]}"
        entry = self.wait(r["prompt_id"], timeout)
        status = entry["status"]
        assert status["status_str"] == "success", json.dumps(status["messages"])[:4000]
        return entry

    def interrupt(self) -> None:
        self.post("/interrupt", {})

    def output_images(self, entry: dict, node_id: str) -> list[Path]:
        """Files an image-saving node of a finished prompt wrote."""
        out = []
        for img in entry["outputs"][node_id]["images"]:
            folder = self.base / img["type"] / img.get("subfolder", "")
            out.append(folder / img["filename"])
        return out


@contextlib.contextmanager
def server(comfyui: Path, base: Path, python: str = sys.executable, pos_models: dict | None = None,
           link_pack: bool = True, env: dict | None = None, args: tuple[str, ...] = ()):
    """Start `main.py --cpu` (plus `args`) with a base directory holding this pack and the fixture (and
    `pos_models`: name -> folder, linked into models/pos_models); stop after."""
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / "pos-spatial"
    if link_pack and not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    ckpts = base / "models" / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    if not (ckpts / FIXTURE).exists():
        (ckpts / FIXTURE).symlink_to(fixture_checkpoint())
    for d in ("input", "output", "temp", "user"):
        (base / d).mkdir(exist_ok=True)
    for name, path in (pos_models or {}).items():
        (base / "models" / "pos_models").mkdir(parents=True, exist_ok=True)
        if not (base / "models" / "pos_models" / name).exists():
            (base / "models" / "pos_models" / name).symlink_to(path, target_is_directory=True)
    port = _free_port()
    log = base / "comfyui.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    cmd = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory",
           str(base), "--disable-auto-launch", "--dont-print-server", *args]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=comfyui, stdout=f, stderr=subprocess.STDOUT, env=env)
    srv = Server(comfyui, base, port, proc, log)
    try:
        end = time.time() + 180
        while True:
            try:
                srv.get("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.time() > end:
                    raise RuntimeError(f"ComfyUI did not start; log:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# ----------------------------------------------------------------- in-process helpers (host fixture)

def encode(host, prompt):
    """(CONDITIONING, POS_RELATIONS) of a prompt through PoS Relations from Prompt."""
    with torch.inference_mode():
        cond, rels, _ = host.relations.PoSRelationsFromPrompt.execute(prompt, host.clip).result
    return cond, rels


def sample(host, model, cond, seed=0, steps=4, cfg=5.0, sampler="euler", scheduler="normal", batch=1, size=256):
    """Latents from ComfyUI's KSampler code path (nodes.common_ksampler), negative = empty prompt."""
    with torch.inference_mode():
        latent = host.nodes.EmptyLatentImage().generate(size, size, batch)[0]
        return host.nodes.common_ksampler(model, seed, steps, cfg, sampler, scheduler, cond, host.neg, latent)[0]["samples"]


def guide(host, rels, scale=20.0, fraction=0.5, loss_scale=-1.0, smoothing=True, level="auto", model=None):
    """(MODEL, run state) from the PoS Guidance node."""
    with torch.inference_mode():
        return host.guidance.PoSGuidance.execute(model or host.model, rels, scale, fraction, loss_scale,
                                                 smoothing, level).result


def random_lora(weights, keep, seed: int, scale: float, rank: int = 4, dtype=None) -> dict:
    """A seeded random rank-`rank` LoRA state dict on the 2-D weights (module name, weight) that `keep(name)`
    accepts, in the generic `diffusion_model.<module>.lora_up/lora_down/alpha` format ComfyUI's LoRA loaders
    read; up and down drawn N(0, scale) in the order of `weights`. Shared by the fixture's LoRA file, the
    testbed's (benchmarks/effect.py) and the DiT tests'."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, w in weights:
        if w.ndim != 2 or not keep(name):
            continue
        out_f, in_f = w.shape
        for key, value in ((f"{name}.lora_up.weight", torch.randn(out_f, rank, generator=gen) * scale),
                           (f"{name}.lora_down.weight", torch.randn(rank, in_f, generator=gen) * scale),
                           (f"{name}.alpha", torch.tensor(float(rank)))):
            sd[key] = value if dtype is None else value.to(dtype)
    return sd


def fixture_lora() -> Path:
    """A seeded random LoRA for the small fixture (rank 4 on every attention projection of the UNet), in
    the generic `diffusion_model.<module>.lora_up/lora_down/alpha` format ComfyUI's LoRA loaders read."""
    from safetensors.torch import load_file, save_file

    path = CACHE / "loras" / "pos_random_lora.safetensors"
    if path.exists():
        return path
    weights = [(k[len("model."):-len(".weight")], v) for k, v in load_file(str(fixture_checkpoint())).items()
               if k.startswith("model.diffusion_model.") and k.endswith(".weight")]
    sd = random_lora(weights, lambda n: ".attn1.to_" in n or ".attn2.to_" in n, seed=1, scale=0.05, dtype=torch.half)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(sd, str(tmp), metadata={"pos_fixture": FIXTURE_VERSION})
    tmp.replace(path)
    return path


def fixture_controlnet() -> Path:
    """A seeded random ControlNet (ComfyUI's own ControlNet class) for the small fixture's UNet layout."""
    path = CACHE / "controlnet" / "pos_random_controlnet.safetensors"
    if path.exists():
        return path
    import comfy.ops
    from comfy.cldm.cldm import ControlNet
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(2)
    cfg = {k: v for k, v in UNET_SMALL.items() if k != "out_channels"}
    net = ControlNet(**cfg, hint_channels=3, dtype=torch.float32, device="cpu",
                     operations=comfy.ops.disable_weight_init)
    _init(net, gen)
    sd = {f"control_model.{k}": v.to(torch.float16).contiguous() for k, v in net.state_dict().items()
          if v.is_floating_point()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(sd, str(tmp), metadata={"pos_fixture": FIXTURE_VERSION})
    tmp.replace(path)
    return path
