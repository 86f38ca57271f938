"""Prompt sets: SR2D built from VISOR's rules, benchmark files read offline, or the user's file."""

from __future__ import annotations

import json
import os
from itertools import permutations

# The 80 COCO object classes (detector vocabulary of VISOR's SR2D and GenEval).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
# VISOR's four 2D relations and their phrases.
SR2D_RELATIONS = (("left", "to the left of"), ("right", "to the right of"), ("above", "above"), ("below", "below"))

BUILTIN = ("sr2d", "geneval-position", "t2i-spatial", "sr4g-test-seen", "sr4g-test-unseen")
NEEDS_FILE = {
    "geneval-position": "GenEval's prompts/evaluation_metadata.jsonl (rows with tag 'position')",
    "t2i-spatial": "T2I-CompBench's examples/dataset/spatial_val.txt (one prompt a line)",
    "sr4g-test-seen": "the folder `python -m pos_core sr4g build --out OUT` writes (split test_seen)",
    "sr4g-test-unseen": "the folder `python -m pos_core sr4g build --out OUT` writes (split test_unseen)",
}


def article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def sr2d() -> list[dict]:
    """VISOR's SR2D: every ordered pair of distinct COCO classes x 4 relations (25,280 prompts),
    "a(n) A <relation> a(n) B"."""
    out = []
    for a, b in permutations(COCO_CLASSES, 2):
        for rel, phrase in SR2D_RELATIONS:
            out.append({"prompt_id": f"sr2d-{len(out):05d}",
                        "prompt": f"{article(a)} {a} {phrase} {article(b)} {b}",
                        "subject": a, "relation": rel, "object": b})
    return out


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\r\n") for line in f]
    except OSError as e:
        raise ValueError(f"cannot read --prompts file {path!r}: {e.strerror}") from e


def _jsonl(path: str) -> list[tuple[int, dict]]:
    out = []
    for n, line in enumerate(_lines(path), 1):
        if line.strip():
            try:
                out.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n} is not JSON: {e.msg}") from e
    return out


def from_file(path: str, prefix: str = "") -> list[dict]:
    """A JSONL file (`prompt`, optional `prompt_id`/`id`, other keys kept) or a text file (one prompt a
    line, blank lines skipped; ids are line numbers)."""
    if path.endswith((".jsonl", ".json")):
        out = []
        for n, rec in _jsonl(path):
            if not isinstance(rec, dict) or not isinstance(rec.get("prompt"), str):
                raise ValueError(f"{path}:{n} needs a string 'prompt'")
            pid = rec.get("prompt_id", rec.get("id", f"{prefix}{n}"))
            out.append({**rec, "prompt_id": str(pid)})
    else:
        out = [{"prompt_id": f"{prefix}{n}", "prompt": line.strip()}
               for n, line in enumerate(_lines(path), 1) if line.strip()]
    ids = [r["prompt_id"] for r in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"--prompts {path!r}: prompt id {dup!r} appears twice; ids must be unique")
    if not out:
        raise ValueError(f"--prompts {path!r} has no prompts")
    return out


def geneval_position(path: str) -> list[dict]:
    """GenEval's position prompts from its evaluation_metadata.jsonl."""
    out = [{"prompt_id": f"geneval-{n}", "prompt": rec["prompt"]} for n, rec in _jsonl(path)
           if isinstance(rec, dict) and rec.get("tag") == "position" and "prompt" in rec]
    if not out:
        raise ValueError(f"{path!r} has no rows with tag 'position': give GenEval's evaluation_metadata.jsonl")
    return out


def sr4g(path: str, split: str) -> list[dict]:
    """One SR4G split's prompts (one per distinct caption) from a `python -m pos_core sr4g build` output
    folder or its triplets.jsonl, through `pos_core.sr4g.dataset.prompts`."""
    try:
        from ..sr4g.dataset import prompts
    except ImportError as e:
        raise ValueError(f"--prompts sr4g-*: the pack's SR4G module is not available here ({e})") from e
    folder = os.path.dirname(path) if path.endswith(".jsonl") else path
    out = [{**r, "prompt_id": f"sr4g-{split}-{r['prompt_id']}"} for r in prompts(folder, split)]
    if not out:
        raise ValueError(f"{path!r} has no captions of split {split!r}")
    return out


def load(spec: str, limit: int | None = None) -> list[dict]:
    """Prompts of `--prompts SPEC`: `sr2d`, `NAME:PATH` for the sets read from the benchmark's own file (SR4G: the build folder),
    or a JSONL / text file. `limit` keeps that many prompts, a fixed random sample in set order."""
    name, _, path = spec.partition(":")
    if name == "sr2d" and not path:
        prompts = sr2d()
    elif name in NEEDS_FILE:
        if not path:
            raise ValueError(f"--prompts {name} is read from {NEEDS_FILE[name]}, which this pack cannot build "
                             f"offline: pass --prompts {name}:PATH")
        if name == "geneval-position":
            prompts = geneval_position(path)
        elif name == "t2i-spatial":
            prompts = from_file(path, prefix="t2i-")
        else:
            prompts = sr4g(path, name.replace("sr4g-", "").replace("-", "_"))
    elif os.path.exists(spec):
        prompts = from_file(spec)
    else:
        raise ValueError(f"--prompts {spec!r} is neither a built-in set ({', '.join(BUILTIN)}) nor a file")
    if limit is not None and 0 < limit < len(prompts):
        import random

        prompts = [prompts[i] for i in sorted(random.Random(0).sample(range(len(prompts)), limit))]
    return prompts
