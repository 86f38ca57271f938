"""Wall time and peak memory of PSG-guided against unguided sampling, same seed and settings.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/guidance_overhead.py [--steps 10] [--size 256]

Runs the real ComfyUI sampling path (nodes.common_ksampler, as KSampler) on a full-size random-weight
SD1.5-architecture UNet (built once into the test cache), half of the steps guided. Each variant runs
in its own process after a warm-up, so peak memory (RSS on the CPU, max allocated on a GPU) is its own.
The authors' implementation style costs about 3.4x; the target here is at most 1.5x time and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(variant: str, steps: int, size: int, small: bool) -> dict:
    comfy = os.environ["COMFYUI_PATH"]
    sys.path[:0] = [comfy, str(ROOT / "tests")]
    import torch
    from comfy.cli_args import args

    args.cpu = not torch.cuda.is_available()
    import comfy.sd
    import comfy_host
    import nodes

    comfy_host.load_pack()
    from pos_spatial_pack.nodes.guidance import PoSGuidance
    from pos_spatial_pack.nodes.relations import PoSRelationsFromPrompt

    with torch.inference_mode():
        model, clip, _ = comfy.sd.load_checkpoint_guess_config(
            str(comfy_host.fixture_checkpoint(full=not small)), output_vae=False)[:3]
        cond, rels, _ = PoSRelationsFromPrompt.execute("a photo of a cat to the left of a dog", clip).result
        neg = nodes.CLIPTextEncode().encode(clip, "")[0]
        latent = nodes.EmptyLatentImage().generate(size, size, 1)[0]
        if variant == "guided":
            model = PoSGuidance.execute(model, rels, 20.0, 0.5, -1.0, True, "auto").result[0]
        nodes.common_ksampler(model, 0, 2, 7.5, "euler", "normal", cond, neg, latent)  # warm-up
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        nodes.common_ksampler(model, 0, steps, 7.5, "euler", "normal", cond, neg, latent)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    params = sum(p.numel() for p in model.model.diffusion_model.parameters())
    return {"variant": variant, "seconds": seconds, "peak_bytes": peak, "device": "cuda" if cuda else "cpu",
            "unet_params": params}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--small", action="store_true", help="the small test UNet instead of the full-size one")
    ap.add_argument("--child", choices=["plain", "guided"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if "COMFYUI_PATH" not in os.environ:
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout")
    if a.child:
        print(json.dumps(child(a.child, a.steps, a.size, a.small)))
        return
    res = {}
    for variant in ("plain", "guided"):
        cmd = [sys.executable, __file__, "--child", variant, "--steps", str(a.steps), "--size", str(a.size)]
        out = subprocess.run(cmd + (["--small"] if a.small else []), capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr[-3000:])
        res[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    p, g = res["plain"], res["guided"]
    print(f"SD1.5-architecture random UNet ({p['unet_params'] / 1e6:.0f}M params), {a.size} px, {a.steps} steps "
          f"({a.steps // 2} guided), euler, cfg 7.5, on {p['device']}")
    for r in (p, g):
        print(f"  {r['variant']:7s} {r['seconds']:8.2f} s   peak {r['peak_bytes'] / 2**30:6.2f} GiB")
    print(f"  time ratio   guided / plain = {g['seconds'] / p['seconds']:.2f}  (target <= 1.5)")
    print(f"  memory ratio guided / plain = {g['peak_bytes'] / p['peak_bytes']:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
