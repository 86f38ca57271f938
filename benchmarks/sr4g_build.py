"""SR4G build speed on a synthetic annotation file the size of COCO 2017 train.

    python benchmarks/sr4g_build.py [--images 118287] [--objects 860001] [--keep DIR]

Writes a COCO-format file with 118,287 images (640 x 480), 860,001 objects of 80 categories (a skewed
class mix like COCO's, about 7 objects an image, box areas log-uniform from 0.01 % to 50 % of the image,
1 % crowds, a 12-point polygon each), then times `pos_core.sr4g.build` for the 13 box-based relations
(all but the mask-based `overlapping`) and prints triplets per second, total time and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pos_core.sr4g import RELATIONS, Options, build  # noqa: E402

W, H = 640, 480


def synthetic(path: str, n_images: int, n_objects: int, seed: int = 0) -> None:
    """Stream a COCO-format instances file to `path`."""
    rng = np.random.default_rng(seed)
    per = rng.multinomial(n_objects - n_images, np.full(n_images, 1.0 / n_images)) + 1  # >= 1 object an image
    weights = 1.0 / np.arange(1, 81) ** 1.1
    cats = rng.choice(80, size=n_objects, p=weights / weights.sum()) + 1
    frac = np.exp(rng.uniform(np.log(1e-4), np.log(0.5), n_objects))
    aspect = np.exp(rng.uniform(-1.0, 1.0, n_objects))
    bw = np.minimum(np.sqrt(frac * W * H * aspect), W - 1)
    bh = np.minimum(frac * W * H / bw, H - 1)
    bx, by = rng.uniform(0, W - bw), rng.uniform(0, H - bh)
    crowd = rng.random(n_objects) < 0.01
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    with open(path, "w") as f:
        f.write('{"info": {"description": "synthetic COCO-size file"}, "images": [')
        f.write(",".join(json.dumps({"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": W, "height": H})
                         for i in range(n_images)))
        f.write('], "categories": [')
        f.write(",".join(json.dumps({"id": c, "name": f"class{c}", "supercategory": "x"}) for c in range(1, 81)))
        f.write('], "annotations": [')
        k = 0
        for i in range(n_images):
            for _ in range(per[i]):
                x, y, w, h = (round(float(v), 2) for v in (bx[k], by[k], bw[k], bh[k]))
                cx, cy = x + w / 2, y + h / 2
                poly = [round(float(v), 1) for p in zip(cx + w / 2 * np.cos(t), cy + h / 2 * np.sin(t)) for v in p]
                f.write(("," if k else "") + json.dumps(
                    {"id": k + 1, "image_id": i + 1, "category_id": int(cats[k]), "bbox": [x, y, w, h],
                     "area": round(w * h * 0.8, 2), "iscrowd": int(crowd[k]), "segmentation": [poly]}))
                k += 1
        f.write("]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=118287)
    ap.add_argument("--objects", type=int, default=860001)
    ap.add_argument("--keep", help="folder to keep the annotation file and output in (default: a temp folder)")
    args = ap.parse_args()
    base = args.keep or tempfile.mkdtemp(prefix="sr4g_bench_")
    os.makedirs(base, exist_ok=True)
    ann = os.path.join(base, "instances_synthetic.json")
    t0 = time.time()
    synthetic(ann, args.images, args.objects)
    print(f"synthetic file: {args.images} images, {args.objects} objects, "
          f"{os.path.getsize(ann) / 2**20:.0f} MiB, written in {time.time() - t0:.1f} s")
    opts = Options(relations=tuple(r for r in RELATIONS if r != "overlapping"))
    t0 = time.time()
    summary = build(ann, None, os.path.join(base, "out"), opts, check_images=False)
    dt = time.time() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"box-based relations (13): {summary['triplets']} triplets from {summary['images']} images "
          f"in {dt:.1f} s = {summary['triplets'] / dt:,.0f} triplets/s, {summary['images'] / dt:,.0f} images/s; "
          f"peak RSS {rss:.0f} MiB; per split {summary['per_split']}")
    print(f"output: {os.path.getsize(os.path.join(base, 'out', 'triplets.jsonl')) / 2**20:.0f} MiB in {base}/out")


if __name__ == "__main__":
    main()
