"""Makes the pictures of the nodes' help pages (web/docs/img/*.jpg) with the pack's own nodes, in a real
ComfyUI server, on the pack's built-in testbed model (the demo's: benchmarks/effect.py train, 1200 steps,
trained on first use and cached like the demo's). Nothing is drawn by hand: every picture is an output
of a pack node (PoS Attention Maps' panel, PoS Seed Search's grid, PoS Score's overlay) or two decoded
images of the same seed side by side (guided vs unguided), scaled up with nearest-neighbour pixels.

    COMFYUI_PATH=/path/to/ComfyUI .venv/bin/python scripts/make_doc_pictures.py [--quick]
    .venv/bin/python scripts/make_doc_pictures.py --icon      # docs/icon.png only (no ComfyUI)

--quick trains a 300-step testbed instead (a few minutes on 2 CPU cores); its pictures say so in the
caption of the page that shows them (see the printed note).

The case shown: the prompt below, and the first seed from 0 at which the unguided image misses the
relation and the guided one follows it (PoS Score, testbed colour detector) - one case, chosen so the
pictures show what guidance does; the measured rate is in docs/measured_effect.md.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from pos_core.comfy_client import ComfyServer  # noqa: E402
from pos_core.demo import BUILTIN_TRAIN_STEPS, train_builtin  # noqa: E402

OUT = ROOT / "web" / "docs" / "img"
PICTURES = ("guided_vs_unguided.jpg", "attention_maps_panel.jpg", "seed_search_grid.jpg", "pos_score_overlay.jpg")
PROMPT = "a cat to the left of a dog"
QUICK_STEPS = 300
SIZE, STEPS, CFG = 128, 20, 5.0  # the testbed's sampling (benchmarks/effect.py)


def graph(ckpt: str, seed: int) -> dict:
    """One seed, unguided (PoS Attention Capture) and guided (PoS Guidance), both decoded, mapped and scored."""
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "PoSRelationsFromPrompt", "inputs": {"text": PROMPT, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1}},
        "5": {"class_type": "PoSGuidance", "inputs": {"model": ["1", 0], "relations": ["2", 1], "scale": 20.0,
                                                      "guided_fraction": 0.5, "loss_scale": -1.0, "smoothing": True,
                                                      "attention_level": "auto"}},
        "6": {"class_type": "PoSAttentionCapture", "inputs": {"model": ["1", 0], "relations": ["2", 1],
                                                              "attention_level": "auto"}},
        "14": {"class_type": "PoSDetectorLoader", "inputs": {"detector": "pos-testbed-colors", "sam": "none"}},
    }
    for way, model, ks, dec, maps, save, score in (("guided", "5", "7", "9", "11", "12", "15"),
                                                   ("unguided", "6", "8", "10", "13", "16", "17")):
        g[ks] = {"class_type": "KSampler", "inputs": {
            "model": [model, 0], "seed": seed, "steps": STEPS, "cfg": CFG, "sampler_name": "euler",
            "scheduler": "normal", "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "denoise": 1.0}}
        g[dec] = {"class_type": "VAEDecode", "inputs": {"samples": [ks, 0], "vae": ["1", 2]}}
        g[maps] = {"class_type": "PoSAttentionMaps", "inputs": {"attention": [model, 1], "images": [dec, 0],
                                                                "start_step": 0, "end_step": -1}}
        g[score] = {"class_type": "PoSScore", "inputs": {"images": [dec, 0], "relations": ["2", 1],
                                                         "detector": ["14", 0], "threshold": -1.0}}
        g[save] = {"class_type": "SaveImage", "inputs": {"images": [dec, 0], "filename_prefix": f"doc_{way}"}}
        g[save + "m"] = {"class_type": "SaveImage", "inputs": {"images": [maps, 0], "filename_prefix": f"doc_{way}_maps"}}
        g[score + "o"] = {"class_type": "SaveImage", "inputs": {"images": [score, 3], "filename_prefix": f"doc_{way}_overlay"}}
        g[score + "r"] = {"class_type": "PreviewAny", "inputs": {"source": [score, 1]}}
    return g


def search_graph(ckpt: str, seed: int) -> dict:
    g = {k: v for k, v in graph(ckpt, seed).items() if k in ("1", "2", "3", "4")}
    g["20"] = {"class_type": "PoSSeedSearch", "inputs": {
        "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
        "relations": ["2", 1], "seed": seed, "candidates": 8, "mode": "attention", "steps": STEPS,
        "search_steps": 4, "cfg": CFG, "sampler_name": "euler", "scheduler": "normal", "batch_size": 0,
        "vae": ["1", 2]}}
    g["21"] = {"class_type": "SaveImage", "inputs": {"images": ["20", 3], "filename_prefix": "doc_grid"}}
    return g


def make_icon(path: Path = ROOT / "docs" / "icon.png", size: int = 256) -> None:
    """The Registry icon: two attention blobs as PoS Attention Maps colours them (subject red on the left
    of object blue) over their x marginals, drawn from Gaussians."""
    import numpy as np

    y, x = np.mgrid[0:size, 0:size] / size
    blob = lambda cx, cy: np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 0.09 ** 2))  # noqa: E731
    a, b = blob(0.3, 0.42), blob(0.7, 0.42)
    img = np.full((size, size, 3), 24.0)
    img[..., 0] += 231 * a
    img[..., 1] += 60 * a + 90 * b
    img[..., 2] += 231 * b
    for m, col, in ((a.sum(0), (231, 60, 60)), (b.sum(0), (60, 110, 231))):
        h = (m / m.max() * size * 0.22).astype(int)
        for i in range(size):
            img[size - 12 - h[i]:size - 12, i] = col
    Image.fromarray(img.clip(0, 255).astype("uint8")).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def png(b: bytes) -> Image.Image:
    return Image.open(io.BytesIO(b)).convert("RGB")


def save(img: Image.Image, name: str, width: int) -> None:
    if img.width != width:
        h = round(img.height * width / img.width)
        img = img.resize((width, h), Image.NEAREST if width > img.width else Image.LANCZOS)
    img.save(OUT / name, "JPEG", quality=85, optimize=True)
    print(f"wrote {OUT / name} ({(OUT / name).stat().st_size // 1024} KiB)")


def score_of(srv: ComfyServer, outputs: dict, node: str) -> float:
    return float(outputs[node + "r"]["text"][0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"a {QUICK_STEPS}-step testbed instead of "
                                                         f"the demo's {BUILTIN_TRAIN_STEPS}")
    ap.add_argument("--max-seed", type=int, default=40)
    ap.add_argument("--checkpoint", default="", help="a trained testbed checkpoint to use instead (e.g. the "
                                                      "2400-step one of benchmarks/effect.py train)")
    ap.add_argument("--icon", action="store_true", help="make docs/icon.png (the Registry icon) and stop")
    args = ap.parse_args()
    if args.icon:
        make_icon()
        return 0
    comfy = Path(os.environ.get("COMFYUI_PATH", ""))
    if not (comfy / "main.py").is_file():
        print("set COMFYUI_PATH to a ComfyUI checkout", file=sys.stderr)
        return 2
    if args.checkpoint:
        ckpt = Path(args.checkpoint).resolve()
        if not ckpt.is_file():
            print(f"--checkpoint: no file at {ckpt}", file=sys.stderr)
            return 2
    else:
        ckpt = train_builtin(comfy, QUICK_STEPS if args.quick else BUILTIN_TRAIN_STEPS)
    OUT.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="pos_doc_pictures_"))
    try:
        with ComfyServer.start(comfy, scratch, checkpoints=ckpt.parent, start_timeout=600) as srv:
            chosen = None
            for seed in range(args.max_seed + 1):
                out = srv.run(graph(ckpt.name, seed))
                guided, unguided = score_of(srv, out, "15"), score_of(srv, out, "17")
                print(f"seed {seed}: PSE unguided {unguided:.2f}, guided {guided:.2f}")
                if chosen is None:
                    chosen = (seed, out)
                if unguided < 0.5 <= guided:
                    chosen = (seed, out)
                    break
            seed, out = chosen
            a, b = png(srv.images(out, "16")[0]), png(srv.images(out, "12")[0])
            pair = Image.new("RGB", (a.width * 2 + 4, a.height), "white")
            pair.paste(a, (0, 0))
            pair.paste(b, (a.width + 4, 0))
            save(pair, "guided_vs_unguided.jpg", 520)
            save(png(srv.images(out, "12m")[0]), "attention_maps_panel.jpg", 480)
            overlay = [png(srv.images(out, n)[0]) for n in ("17o", "15o")]
            both = Image.new("RGB", (overlay[0].width * 2 + 4, overlay[0].height), "white")
            both.paste(overlay[0], (0, 0))
            both.paste(overlay[1], (overlay[0].width + 4, 0))
            save(both, "pos_score_overlay.jpg", 560)
            grid = srv.run(search_graph(ckpt.name, seed))
            save(png(srv.images(grid, "21")[0]), "seed_search_grid.jpg", 560)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    note = f"{'QUICK: ' if args.quick else ''}testbed {ckpt.name}, prompt {PROMPT!r}, seed {seed}"
    (OUT / "MADE_WITH.txt").write_text(note + "\n", encoding="utf-8")
    print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
