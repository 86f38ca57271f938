"""Cost of PoS Seed Search (attention mode) against one plain generation, and the PSE scoring rate.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/search_cost.py [--candidates 8] [--k 10] [--steps 50] [--full]

Both timings come from one run on the same model: one plain generation of `steps` steps, then the
search (N candidates run `k` steps each in memory-sized batches, scored on their attention, and the best
one finished: from its step-k latent with a deterministic sampler such as euler, regenerated from its
seed with a stochastic one). Target: search <= 2.8x one generation (N = 8, k = 10 of 50). Wall time
and the process's CPU time are both reported: on a shared machine the CPU-time ratio is the steadier
one. The scoring rate is PoS Score on 512 x 512 images with masks given (detector excluded), images/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--full", action="store_true", help="full-size SD1.5 UNet instead of the small test one")
    ap.add_argument("--sampler", default="euler", help="euler finishes the best from step k; euler_ancestral "
                                                        "regenerates it")
    a = ap.parse_args()
    if "COMFYUI_PATH" not in os.environ:
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout")
    sys.path[:0] = [os.environ["COMFYUI_PATH"], str(ROOT / "tests")]
    import torch
    from comfy.cli_args import args

    args.cpu = not torch.cuda.is_available()
    import comfy.sd
    import comfy_host
    import nodes

    comfy_host.load_pack()
    from pos_spatial_pack.nodes.relations import PoSRelationsFromPrompt
    from pos_spatial_pack.nodes.scoring import PoSScore
    from pos_spatial_pack.nodes.seed_search import PoSSeedSearch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    with torch.inference_mode():
        model, clip = comfy.sd.load_checkpoint_guess_config(str(comfy_host.fixture_checkpoint(full=a.full)),
                                                            output_vae=False)[:2]
        cond, rels, _ = PoSRelationsFromPrompt.execute("a photo of a cat to the left of a dog", clip).result
        neg = nodes.CLIPTextEncode().encode(clip, "")[0]
        latent = nodes.EmptyLatentImage().generate(a.size, a.size, 1)[0]
        nodes.common_ksampler(model, 0, 2, 7.0, a.sampler, "normal", cond, neg, latent)  # warm-up
        sync()
        t, c = time.perf_counter(), time.process_time()
        nodes.common_ksampler(model, 0, a.steps, 7.0, a.sampler, "normal", cond, neg, latent)
        sync()
        one, one_cpu = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        out = PoSSeedSearch.execute(model, cond, neg, latent, rels, 0, a.candidates, "attention", a.steps, a.k,
                                    7.0, a.sampler, "normal", 0).result
        sync()
        search, search_cpu = time.perf_counter() - t, time.process_time() - c

        n, size = 16, 512
        images = torch.rand(n, size, size, 3)
        cat = torch.zeros(n, size, size)
        dog = torch.zeros(n, size, size)
        cat[:, 100:300, 20:200], dog[:, 150:400, 250:500] = 1, 1
        PoSScore.execute(images[:2], rels, None, None, cat[:2], dog[:2], -1.0)
        t = time.perf_counter()
        PoSScore.execute(images, rels, None, None, cat, dog, -1.0)
        rate = n / (time.perf_counter() - t)
    unet = sum(p.numel() for p in model.model.diffusion_model.parameters()) / 1e6
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"SD1.5-architecture random UNet ({unet:.0f}M params), {a.size} px, {a.sampler}, cfg 7, on {dev}")
    print(f"  one generation ({a.steps} steps)                     {one:8.1f} s wall {one_cpu:8.1f} s CPU")
    print(f"  attention search N={a.candidates}, k={a.k} (+ best finished)   {search:8.1f} s wall "
          f"{search_cpu:8.1f} s CPU   best seed {out[1]}")
    print(f"  search / one generation = {search / one:.2f} wall, {search_cpu / one_cpu:.2f} CPU  (target <= 2.8)")
    print(f"  PoS Score, masks given (no detector), {size} x {size}: {rate:.1f} images/s "
          "(overlay and report included)")


if __name__ == "__main__":
    main()
