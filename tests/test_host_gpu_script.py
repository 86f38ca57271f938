"""The GPU figures script (benchmarks/gpu_figures.py) in its --smoke mode, through the real ComfyUI: the same
code path as the GPU run (ComfyUI's model classes, KSampler code, PoS Guidance, PoS Seed Search) on tiny
models on the CPU, so a GPU session only has to run it. Checks the table and the JSON have every model
with plain, guided and search figures, and that the full-size configs build (on the meta device) to the
published models' sizes. About a minute on one CPU thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("sd15", "sdxl", "sd35m", "flux")
# parameters of the full-size diffusion models as ComfyUI builds them (millions; SD3.5-medium's 2.5 B
# includes its 226 M positional table, a buffer)
FULL_PARAMS = {"sd15": 860, "sdxl": 2567, "sd35m": 2243, "flux": 11901}


def test_gpu_figures_smoke_has_every_model_row(comfyui_path, tmp_path):
    out = tmp_path / "figures.json"
    env = dict(os.environ, COMFYUI_PATH=str(comfyui_path), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
               POS_THREADS=os.environ.get("POS_THREADS", "1"))
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_figures.py"), "--smoke", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["smoke"] and report["steps"] == 10
    rows = {m["model"]: m for m in report["models"]}
    assert sorted(rows) == sorted(MODELS), rows.keys()
    for name, row in rows.items():
        assert not row["notes"], (name, row["notes"])
        for variant in ("plain", "guided", "search"):
            assert row[variant]["seconds"] > 0 and row[variant]["peak_bytes"] > 0, (name, variant)
            assert row[variant]["finite"], (name, variant)
        assert row["guided"]["losses"], f"{name}: no guided step computed a loss"
        assert row["guided"]["skipped_steps"] == [], (name, row["guided"])
        assert row["search"]["candidates"] == 8
        d = row["distill"]  # PoS Distill LoRA: one recorded teacher trajectory and timed training steps
        assert d["trajectory_seconds"] > 0 and d["seconds"] > 0 and d["peak_bytes"] > 0 and d["finite"], (name, d)
        assert d["recorded_steps"] == report["steps"] and d["train_steps"] == 4, (name, d)
    full = {c["model"]: c for c in report["full_configs"]}
    for name, millions in FULL_PARAMS.items():
        assert round(full[name]["params"] / 1e6) == millions, full[name]
    assert full["flux"]["depth"] == "19 double + 38 single blocks" and full["sd35m"]["depth"] == "24 joint blocks"
    # the 2026 families' full-size configs (--models names them), where this ComfyUI has the class
    for name, millions in {"chroma": 8900, "z_image": 6155, "qwen_image": 20430, "flux2": 32223}.items():
        assert "params" in full[name] or "ComfyUI 0.33" in full[name]["note"], full[name]
        if "params" in full[name]:
            assert round(full[name]["params"] / 1e6) == millions, full[name]
    lines = r.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    table = [line for line in lines[head + 2:] if line.startswith("|")]
    assert len(table) == len(MODELS)
    for line, label in zip(table, ("SD1.5", "SDXL", "SD3.5-medium", "FLUX.1-dev")):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0].startswith(label), line
        assert all(float(cells[i]) > 0 for i in (5, 7, 11, 13, 14)), line  # plain, guided, search, distill
    assert "plumbing only" in r.stdout
