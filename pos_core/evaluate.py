"""Score images against their relations: PSE (2D and depth) beside the center-based baselines.

Used by the PoS Score and PoS Seed Search nodes and by `python -m pos_core evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import baselines
from .pse import aggregate, pse_batch, pse_depth_batch
from .relations import AXIS_2D, DEPTH, canonical_relation
from .sr4g import metrics as sr4g_metrics


@dataclass
class Masks:
    """One object in one image: union mask (H x W, bool or soft), boxes and detector scores."""

    mask: torch.Tensor
    boxes: list
    scores: list | None = None


def from_mask(mask) -> Masks:
    """Masks of an object given as a mask (from any segmentation node): its box is the mask's."""
    m = torch.as_tensor(mask)
    box = baselines.mask_box(m)
    return Masks(m, [box] if box is not None else [])


def from_boxes(boxes: Sequence, height: int, width: int, scores=None) -> Masks:
    """Masks of an object given as boxes only: the union of the filled boxes."""
    m = torch.zeros(height, width, dtype=torch.bool)
    out = []
    for b in boxes:
        x0, y0, x1, y1 = baselines.as_box(b)
        m[max(0, int(y0)):max(0, int(-(-y1 // 1))), max(0, int(x0)):max(0, int(-(-x1 // 1)))] = True
        out.append((x0, y0, x1, y1))
    return Masks(m, out, list(scores) if scores is not None else None)


def score_relation(subject: Masks, relation: str, obj: Masks, depth: torch.Tensor | None = None) -> dict:
    """PSE and the baselines' verdicts for one relation in one image."""
    rel = canonical_relation(relation)
    a, b = subject.mask.float(), obj.mask.float()
    if a.shape != b.shape:
        raise ValueError(f"subject mask {tuple(a.shape)} and object mask {tuple(b.shape)} differ in size")
    out = {"relation": rel, "missing_subject": not bool(a.sum() > 0), "missing_object": not bool(b.sum() > 0)}
    if rel in AXIS_2D:
        out["pse"] = float(pse_batch(a[None], b[None], rel).scores[0])
        out.update({k: v for k, v in baselines.baseline_verdicts(subject.boxes, obj.boxes, rel, subject.scores,
                                                                  obj.scores).items() if k != "both_present"})
    elif rel in DEPTH:
        if depth is None:
            raise ValueError(f"relation {rel!r} needs a depth map: connect a depth model (PoS Depth Loader)")
        out["pse"] = float(pse_depth_batch(a[None], b[None], depth[None].to(a.device), rel).scores[0])
    else:
        out["pse"] = None  # "near" has no direction: reported, not scored
    return out


def image_score(results: Sequence[dict]) -> float:
    """Per-image PSE: the mean over its scored relations (missing objects count 0)."""
    vals = [r["pse"] for r in results if r.get("pse") is not None]
    return sum(vals) / len(vals) if vals else 0.0


def summarize(per_image: Sequence[Sequence[dict]], prompt_ids: Sequence | None = None) -> dict:
    """Aggregates over images (mean PSE, accuracy, object accuracy) and VISOR metrics (2D only)."""
    scores = [image_score(rs) for rs in per_image]
    missing_a = [any(r["missing_subject"] for r in rs) for rs in per_image]
    missing_b = [any(r["missing_object"] for r in rs) for rs in per_image]
    out = aggregate(scores, missing_a, missing_b)
    visor = []
    for i, rs in enumerate(per_image):
        for r in rs:
            if "visor" in r:
                visor.append({"prompt_id": prompt_ids[i] if prompt_ids is not None else i,
                              "both_present": not (r["missing_subject"] or r["missing_object"]),
                              "correct": bool(r["visor"])})
    if visor:
        per_prompt = max(1, len(visor) // max(1, len({v["prompt_id"] for v in visor})))
        out["visor"] = baselines.visor_aggregates(visor, images_per_prompt=per_prompt)
        two_d = [r for rs in per_image for r in rs if "geneval" in r]
        out["geneval_position"] = sum(bool(r["geneval"]) for r in two_d) / len(two_d)
        out["t2i_compbench_2d"] = sum(float(r["t2i_compbench"]) for r in two_d) / len(two_d)
    return out


# ----------------------------------------------------------------------------- batch evaluation (CLI)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def load_records(images_dir: str, prompts_file: str) -> list[dict]:
    """Records {image, prompt, objects?} from a JSONL file (image, prompt, optional objects: phrase ->
    mask path or list of boxes) or a text file of prompts, images named "<line index>_*.png"."""
    import json
    import os
    import re

    if not os.path.isdir(images_dir):
        raise ValueError(f"--images {images_dir!r} is not a folder")
    try:
        with open(prompts_file, encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in f]
    except OSError as e:
        raise ValueError(f"cannot read --prompts {prompts_file!r}: {e.strerror}") from e
    if prompts_file.endswith((".jsonl", ".json")):
        out, unnamed = [], []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{prompts_file}:{n} is not JSON: {e.msg}") from e
            if "prompt" not in rec or ("image" not in rec and not sr4g_metrics.is_sr4g_record(rec)):
                raise ValueError(f"{prompts_file}:{n} needs 'image' and 'prompt'")
            if "image" not in rec:  # SR4G prompt files: images named "<line index>_*.png"
                rec.setdefault("prompt_id", n - 1)
                unnamed.append(rec)
                continue
            rec["image"] = os.path.join(images_dir, rec["image"])
            out.append(rec)
        return out + (_indexed_images(images_dir, unnamed, prompts_file) if unnamed else [])
    files = sorted(f for f in os.listdir(images_dir) if f.lower().endswith(IMAGE_EXTS))
    out = []
    for f in files:
        m = re.match(r"(\d+)[_.\-]", f)
        if not m or int(m.group(1)) >= len(lines):
            raise ValueError(f"image {f!r} does not start with the index of a line of {prompts_file!r} "
                             "(name images like 12_0.png, or use a JSONL prompts file)")
        out.append({"image": os.path.join(images_dir, f), "prompt": lines[int(m.group(1))],
                    "prompt_id": int(m.group(1))})
    return out


def _indexed_images(images_dir: str, records: list[dict], prompts_file: str) -> list[dict]:
    """One record per image named "<prompt_id>_*.png" (several images per prompt, as VISOR counts them)."""
    import os
    import re

    by_id = {int(r["prompt_id"]): r for r in records}
    out = []
    for f in sorted(f for f in os.listdir(images_dir) if f.lower().endswith(IMAGE_EXTS)):
        m = re.match(r"(\d+)[_.\-]", f)
        if not m or int(m.group(1)) not in by_id:
            raise ValueError(f"image {f!r} does not start with the prompt_id of a line of {prompts_file!r}")
        out.append({**by_id[int(m.group(1))], "image": os.path.join(images_dir, f)})
    return out


def _sr4g_score(found: list, relation: str, height: int, width: int, rec: dict) -> dict:
    """SR4G verdict of one image (see pos_core.sr4g.metrics), with PSE and the baselines for left / right /
    above / below."""
    verdict = sr4g_metrics.verdict(found[0].boxes, found[1].boxes, relation, width, height)
    out = {"relation": relation, "split": rec.get("split"), "missing_subject": not found[0].boxes,
           "missing_object": not found[1].boxes, "sr4g_correct": verdict["correct"]}
    canonical = sr4g_metrics.PROJECTIVE_TO_PSE.get(relation)
    if canonical:
        out.update({k: x for k, x in score_relation(found[0], canonical, found[1]).items()
                    if k not in ("relation", "missing_subject", "missing_object")})
    else:
        out["pse"] = None
    return out


def _object_masks(spec, height: int, width: int, base: str) -> Masks:
    import os

    import numpy as np
    from PIL import Image

    if isinstance(spec, str):
        m = np.asarray(Image.open(os.path.join(base, spec)).convert("L"), dtype=np.float32) / 255.0
        if m.shape != (height, width):
            raise ValueError(f"mask {spec!r} is {m.shape[::-1]}, image is {(width, height)}")
        return from_mask(torch.from_numpy(m))
    return from_boxes(spec, height, width)


def evaluate_records(records: list[dict], detector=None, depth=None, threshold: float = -1.0,
                     progress=None) -> tuple[list[dict], dict]:
    """Score every record: per-image results and the summary (see `summarize`)."""
    import os

    from types import SimpleNamespace

    import numpy as np
    from PIL import Image

    from .relations import parse

    per_image, rows, prompt_ids = [], [], []
    for k, rec in enumerate(records):
        img = np.asarray(Image.open(rec["image"]).convert("RGB"))
        h, w = img.shape[:2]
        sr4g = sr4g_metrics.is_sr4g_record(rec)
        rels = [SimpleNamespace(subject=rec["subject"], relation=rec["relation"], object=rec["object"])] if sr4g \
            else parse(rec["prompt"])
        needs_depth = any(r.relation in DEPTH for r in rels)
        dmap = depth.predict(img) if (needs_depth and depth is not None) else None
        objects = rec.get("objects") or {}
        res = []
        for r in rels:
            found = []
            for phrase in (r.subject, r.object):
                if phrase in objects:
                    found.append(_object_masks(objects[phrase], h, w, os.path.dirname(rec["image"])))
                elif detector is not None:
                    om = detector.find(img, phrase, threshold)
                    found.append(Masks(om.mask, om.boxes, om.scores))
                else:
                    raise ValueError(f"{rec['image']}: no mask or boxes for {phrase!r}; add them under "
                                     "'objects' or pass --detector")
            if r.relation in DEPTH and dmap is None:
                raise ValueError(f"{rec['image']}: {r.relation!r} needs --depth")
            res.append({"subject": r.subject, "object": r.object,
                        **(_sr4g_score(found, r.relation, h, w, rec) if sr4g
                           else score_relation(found[0], r.relation, found[1], dmap))})
        per_image.append(res)
        prompt_ids.append(rec.get("prompt_id", rec["prompt"]))
        rows.append({"image": os.path.basename(rec["image"]), "prompt": rec["prompt"],
                     "pse": image_score(res), "relations": res})
        if progress:
            progress(k + 1, len(records))
    summary = summarize(per_image, prompt_ids)
    s4 = sr4g_metrics.summarize(per_image)
    if s4:
        summary["sr4g"] = s4
    return rows, summary


def summary_table(summary: dict) -> str:
    """The summary as a Markdown table (percentages)."""
    lines = ["| metric | value |", "|---|---|",
             f"| images | {summary['n']} |",
             f"| PSE mean | {summary['mean_pse']:.4f} |",
             f"| PSE accuracy (PSE > 0.01) | {100 * summary['accuracy']:.2f} % |",
             f"| object accuracy | {100 * summary['object_accuracy']:.2f} % |"]
    if "visor" in summary:
        v = summary["visor"]
        lines += [f"| VISOR OA | {v['OA']:.2f} % |", f"| VISOR cond | {v['VISOR_cond']:.2f} % |",
                  f"| VISOR uncond | {v['VISOR_uncond']:.2f} % |"]
        lines += [f"| {k} | {v[k]:.2f} % |" for k in sorted(v) if k.startswith("VISOR_") and k[6:].isdigit()]
        lines += [f"| GenEval position | {100 * summary['geneval_position']:.2f} % |",
                  f"| T2I-CompBench 2D | {summary['t2i_compbench_2d']:.4f} |"]
    if "sr4g" in summary:
        lines += sr4g_metrics.table_lines(summary["sr4g"])
    return "\n".join(lines)


def summary_chart(summary: dict, path: str) -> None:
    """A bar chart (PNG) of the headline metrics, in percent."""
    from PIL import Image, ImageDraw

    bars = [("PSE mean", 100 * summary["mean_pse"]), ("PSE acc.", 100 * summary["accuracy"]),
            ("object acc.", 100 * summary["object_accuracy"])]
    if "visor" in summary:
        bars += [("VISOR cond", summary["visor"]["VISOR_cond"]), ("VISOR uncond", summary["visor"]["VISOR_uncond"]),
                 ("GenEval pos.", 100 * summary["geneval_position"]),
                 ("CompBench 2D", 100 * summary["t2i_compbench_2d"])]
    w, h, pad = 90 * len(bars) + 60, 360, 40
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    d.line([(pad, pad), (pad, h - pad), (w - 10, h - pad)], fill="black")
    for k in range(0, 101, 25):
        y = h - pad - (h - 2 * pad) * k / 100
        d.text((5, y - 6), f"{k}", fill="black")
    for i, (name, val) in enumerate(bars):
        x0 = pad + 20 + 90 * i
        y = h - pad - (h - 2 * pad) * max(0.0, min(val, 100.0)) / 100
        d.rectangle([x0, y, x0 + 60, h - pad], fill=(70, 110, 200) if i < 3 else (160, 160, 160))
        d.text((x0, y - 14), f"{val:.1f}", fill="black")
        d.text((x0 - 4, h - pad + 6), name, fill="black")
    d.text((pad, 10), f"PoS spatial evaluation, {summary['n']} images", fill="black")
    im.save(path)
