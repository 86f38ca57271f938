"""One scoring worker: detector (+ SAM, depth) loaded once, then batches of generated images scored
with the pack's PSE and baselines (`pos_core.evaluate`). Plain class; `workers` makes it a Ray actor."""

from __future__ import annotations

import io
import json
import os
import tempfile
import time

from .. import evaluate


def image_row(result: dict) -> dict:
    """Row columns of one `evaluate_records` result: per-image PSE, verdicts (all relations hold) and
    missing flags; the relations themselves as JSON."""
    rels = result["relations"]
    two_d = [r for r in rels if "visor" in r]
    return {"pse": float(result["pse"]), "relations": json.dumps(rels, sort_keys=True),
            "visor": all(bool(r["visor"]) for r in two_d) if two_d else None,
            "geneval": all(bool(r["geneval"]) for r in two_d) if two_d else None,
            "t2i_compbench": sum(float(r["t2i_compbench"]) for r in two_d) / len(two_d) if two_d else None,
            "missing_subject": any(r["missing_subject"] for r in rels),
            "missing_object": any(r["missing_object"] for r in rels)}


class ScoringWorker:
    """`spec`: detector, sam, depth, models_dir (list), threshold, device ('auto': cuda when visible)."""

    def __init__(self, spec: dict):
        from ..detect import load_depth, load_detector

        device = spec.get("device") or "auto"
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        folders = list(spec.get("models_dir") or [])
        self.threshold = float(spec.get("threshold", -1.0))
        self.detector = load_detector(spec["detector"], folders, spec.get("sam"), device)
        self.depth = load_depth(spec["depth"], folders, device) if spec.get("depth") else None
        self.tmp = tempfile.mkdtemp(prefix="pos_bench_score_")

    def ping(self) -> bool:
        """Answers once the worker (re)started: its models are loaded."""
        return True

    def score(self, batch: list[dict]) -> list[dict]:
        """[{key, prompt, png}] -> [{key, ok, width, height, pse, ... , score_seconds} or {key, ok: False, error}]."""
        from PIL import Image

        out = []
        for item in batch:
            t0 = time.time()
            path = os.path.join(self.tmp, "image.png")
            try:
                with open(path, "wb") as f:
                    f.write(item["png"])
                w, h = Image.open(io.BytesIO(item["png"])).size
                rows, _ = evaluate.evaluate_records([{"image": path, "prompt": item["prompt"]}], self.detector,
                                                    self.depth, self.threshold)
                out.append({"key": item["key"], "ok": True, "width": w, "height": h, **image_row(rows[0]),
                            "score_seconds": time.time() - t0})
            except Exception as e:  # noqa: BLE001 - recorded as the unit's error
                out.append({"key": item["key"], "ok": False, "error": f"scoring: {type(e).__name__}: {e}"[:4000],
                            "score_seconds": time.time() - t0})
        return out
