"""Wall time and peak memory of PSG-guided against unguided sampling, same seed and settings.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/guidance_overhead.py [--steps 10] [--size 256]
    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/guidance_overhead.py --family flux   # or sd3
    python benchmarks/guidance_overhead.py --repeat 3 --comfyui /path/ComfyUI-0.3.64=.venv-torch2.9.1/bin/python \
        --comfyui /path/ComfyUI-0.33.0=.venv-torch2.11.0/bin/python          # two versions in one run

Runs the real ComfyUI sampling path (nodes.common_ksampler, as KSampler) on a full-size random-weight
SD1.5-architecture UNet (built once into the test cache), half of the steps guided. Each variant runs
in its own process after a warm-up, so peak memory (RSS on the CPU, max allocated on a GPU) is its own.
The authors' implementation style costs about 3.4x; the target here is at most 1.5x time and memory.

--family flux / sd3: a real-width, reduced-depth random DiT (Flux.1: hidden 3072, 24 heads, 2 double +
4 single blocks, dev guidance embedding, cfg 1; SD3.5-medium: hidden 1536, 24 heads, 4 joint blocks with
attn2 in the first three, cfg 4.5), random text features (Flux 256 T5 tokens; SD3 2 x 77 CLIP + 77 T5),
default blocks (the published best blocks mapped to the same relative depth) and the text-key softmax.
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
sys.path.append(str(ROOT / "tests"))
from workflow_format import comfyui_version  # noqa: E402  (the one reader of a checkout's version)


def child_dit(family: str, variant: str, steps: int, size: int) -> dict:
    """One variant on the real-width reduced-depth Flux.1 or SD3.5-medium."""
    comfy = os.environ["COMFYUI_PATH"]
    sys.path[:0] = [comfy, str(ROOT / "tests")]
    import torch
    from comfy.cli_args import args

    args.cpu = not torch.cuda.is_available()
    import comfy_host
    import dit_fixtures
    import nodes

    comfy_host.load_pack()
    from pos_spatial_pack.nodes.guidance import PoSGuidance
    from pos_spatial_pack.pos_core.tokens import RelationSet, TokenRelation

    cfg = {"flux": 1.0, "sd3": 4.5}.get(family, FAMILY_CFG.get(family))
    rels = RelationSet("a photo of a cat to the left of a dog",
                       (TokenRelation("cat", "left", "dog", (4,), (10,)),))  # T5 positions of cat / dog
    with torch.inference_mode():
        if family in FAMILY_CFG:  # a 2026 family at its real width, reduced depth (gpu_figures' configs)
            sys.path.append(str(ROOT / "benchmarks"))
            import gpu_figures

            model, pos, neg, latent = family_model(gpu_figures, family, size)
        else:
            model = dit_fixtures.flux(wide=True) if family == "flux" else dit_fixtures.sd3_wide()
            pos, neg = dit_fixtures.conds("flux" if family == "flux" else "sd3")
            latent = nodes.EmptyLatentImage().generate(size, size, 1)[0]
        if variant == "guided":
            model = PoSGuidance.execute(model, rels, 20.0, 0.5, -1.0, True, "auto").result[0]
        nodes.common_ksampler(model, 0, 2, cfg, "euler", "simple", pos, neg, latent)  # warm-up
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t, c = time.perf_counter(), time.process_time()
        nodes.common_ksampler(model, 0, steps, cfg, "euler", "simple", pos, neg, latent)
        if cuda:
            torch.cuda.synchronize()
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    params = sum(p.numel() for p in model.model.diffusion_model.parameters())
    return {"variant": variant, "seconds": seconds, "cpu_seconds": cpu, "peak_bytes": peak, "device": "cuda" if cuda else "cpu",
            "unet_params": params, "torch": torch.__version__}


# the 2026 families measured at their real width with a reduced depth (what fits a CPU run in minutes); Flux.2's
# width (6144, 1 B parameters a double block) does not: gpu_figures.py measures it at full size on a GPU
FAMILY_CFG = {"chroma": 4.0, "qwen_image": 2.5, "z_image": 1.0}
FAMILY_DEPTH = {"chroma": dict(depth=2, depth_single_blocks=4), "qwen_image": dict(num_layers=4),
                "z_image": dict(n_layers=4)}


def family_model(gpu_figures, family: str, size: int):
    """(MODEL, positive, negative, LATENT) of a 2026 family at its real width and reduced depth, fp32 on the CPU."""
    spec = next(m for m in gpu_figures.MODELS if m[0] == family)
    model, _ = gpu_figures.build(family, spec[2], dict(spec[3], **FAMILY_DEPTH[family]), smoke=True)
    pos, neg = gpu_figures.conditioning(family, size)
    return model, pos, neg, gpu_figures.empty_latent(model, size)


def map_cost(heads: int = 24, n_img: int = 4096, n_txt: int = 256, d: int = 128, blocks: int = 5) -> None:
    """Time and memory of the image-to-text maps (forward + backward) of `blocks` joint attentions at
    FLUX.1's 1024 px shape: softmax over the text keys against softmax over the whole joint row."""
    import torch

    sys.path.insert(0, str(ROOT))
    from pos_core.attention import joint_token_maps
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=dev).manual_seed(0)
    length = n_txt + n_img
    for softmax in ("text", "joint"):
        qs = [torch.randn(1, heads, length, d, device=dev, generator=g, requires_grad=True) for _ in range(blocks)]
        ks = [torch.randn(1, heads, length, d, device=dev, generator=g) for _ in range(blocks)]
        if dev == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        t = time.perf_counter()
        maps = torch.stack([joint_token_maps(q, k, (0, n_txt), (n_txt, length), [(4,), (10,)], 64, 64, softmax)
                            for q, k in zip(qs, ks)]).mean(dim=0)
        maps.sum().backward()
        if dev == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        extra = (torch.cuda.max_memory_allocated() - base) / 2**30 if dev == "cuda" else float("nan")
        print(f"  maps softmax={softmax:5s} {blocks} blocks x {heads} heads, {n_img} image x {n_txt} text tokens "
              f"on {dev}: {seconds:6.2f} s fwd+bwd, extra peak {extra:.2f} GiB")


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
        t, c = time.perf_counter(), time.process_time()
        nodes.common_ksampler(model, 0, steps, 7.5, "euler", "normal", cond, neg, latent)
        if cuda:
            torch.cuda.synchronize()
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    params = sum(p.numel() for p in model.model.diffusion_model.parameters())
    return {"variant": variant, "seconds": seconds, "cpu_seconds": cpu, "peak_bytes": peak, "device": "cuda" if cuda else "cpu",
            "unet_params": params, "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--small", action="store_true", help="the small test UNet instead of the full-size one")
    ap.add_argument("--family", choices=["sd15", "flux", "sd3", *FAMILY_CFG], default="sd15",
                    help="sd15: full-size SD1.5 UNet; flux / sd3: real-width reduced-depth Flux.1 / SD3.5-medium; "
                         "chroma / qwen_image / z_image: the 2026 families at real width, reduced depth")
    ap.add_argument("--map-cost", action="store_true",
                    help="only time the DiT map computation (text-key vs joint-row softmax) at FLUX.1's 1024 px shape")
    ap.add_argument("--comfyui", action="append", metavar="PATH[=PYTHON]",
                    help="measure on this ComfyUI checkout with this python (its venv's); give it once per checkout "
                         "to compare versions in one run. Default: $COMFYUI_PATH with this python")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds; medians are reported")
    ap.add_argument("--child", choices=["plain", "guided"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.map_cost:
        map_cost()
        return
    if a.child:
        if "COMFYUI_PATH" not in os.environ:
            sys.exit("set COMFYUI_PATH to a ComfyUI checkout")
        result = (child(a.child, a.steps, a.size, a.small) if a.family == "sd15"
                  else child_dit(a.family, a.child, a.steps, a.size))
        print(json.dumps(result))
        return
    hosts = [h.partition("=")[::2] for h in a.comfyui] if a.comfyui else [(os.environ.get("COMFYUI_PATH", ""), "")]
    if not all(path for path, _ in hosts):
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout (or give --comfyui PATH[=PYTHON], once per checkout)")
    runs: dict[str, list[dict]] = {}
    for _ in range(a.repeat):  # interleaved: each round runs every checkout's plain and guided once
        for path, python in hosts:
            for variant in ("plain", "guided"):
                cmd = [python or sys.executable, __file__, "--child", variant, "--steps", str(a.steps), "--size",
                       str(a.size), "--family", a.family]
                out = subprocess.run(cmd + (["--small"] if a.small else []), capture_output=True, text=True,
                                     env=dict(os.environ, COMFYUI_PATH=path))
                if out.returncode:
                    sys.exit(out.stderr[-3000:])
                runs.setdefault(path, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    for path, _ in hosts:
        if len(hosts) > 1:
            print(f"ComfyUI {'.'.join(map(str, comfyui_version(path)))} ({path}), torch {runs[path][0].get('torch', '?')}:")
        report(a, runs[path])


def median(values: list[float]) -> float:
    v = sorted(values)
    return (v[len(v) // 2] + v[(len(v) - 1) // 2]) / 2


def report(a, results: list[dict]) -> None:
    """Each variant's median over the rounds, and the guided / plain ratios of the medians."""
    by = {k: [r for r in results if r["variant"] == k] for k in ("plain", "guided")}
    p, g = ({**rs[0], **{m: median([r[m] for r in rs]) for m in ("seconds", "cpu_seconds", "peak_bytes")}}
            for rs in (by["plain"], by["guided"]))
    if a.repeat > 1:
        print(f"  medians of {a.repeat} interleaved rounds")
    if a.family != "sd15":
        name = {"flux": "Flux.1 (hidden 3072, 2 double + 4 single blocks), cfg 1",
                "sd3": "SD3.5-medium width (hidden 1536, 4 joint blocks), cfg 4.5",
                "chroma": "Chroma width (hidden 3072, 2 double + 4 single blocks), cfg 4",
                "qwen_image": "Qwen-Image width (24 x 128, 4 of its 60 blocks), cfg 2.5",
                "z_image": "Z-Image width (3840, 4 of its 30 layers + 2 + 2 refiners), cfg 1"}[a.family]
        print(f"random {name}, {p['unet_params'] / 1e6:.0f}M params, {a.size} px, {a.steps} steps "
              f"({a.steps // 2} guided), euler, on {p['device']}")
    else:
        print(f"SD1.5-architecture random UNet ({p['unet_params'] / 1e6:.0f}M params), {a.size} px, {a.steps} steps "
              f"({a.steps // 2} guided), euler, cfg 7.5, on {p['device']}")
    for r in (p, g):
        print(f"  {r['variant']:7s} {r['seconds']:8.2f} s   CPU {r['cpu_seconds']:8.2f} s   "
              f"peak {r['peak_bytes'] / 2**30:6.2f} GiB")
    print(f"  time ratio   guided / plain = {g['seconds'] / p['seconds']:.2f}  (target <= 1.5)")
    print(f"  CPU ratio    guided / plain = {g['cpu_seconds'] / p['cpu_seconds']:.2f}  (process CPU time: steadier "
          "than wall time on a shared machine)")
    print(f"  memory ratio guided / plain = {g['peak_bytes'] / p['peak_bytes']:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
