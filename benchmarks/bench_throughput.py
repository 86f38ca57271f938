"""Bench runner throughput here: the same run (issue 11: 40 SR2D prompts x 2 seeds x 2 configs,
unguided and PSG) with 1 and with 2 generation workers on a local Ray, each worker with its own
ComfyUI server on the random-weight test checkpoint, scored with tiny random OWLv2 + SAM.

    COMFYUI_PATH=... python benchmarks/bench_throughput.py [--workers 1 2] [--prompts 40] [--threads 1]

Prints units per minute over the whole run (server start included) and in steady state (first image
to last row), with the machine's load average (other processes share the cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CONFIGS = """\
defaults:
  workflow: pos_psg_sd15
  checkpoint: {ckpt}
  overrides: {{steps: {steps}, width: {size}, height: {size}}}
configs:
  - name: unguided
    overrides: {{guided: false}}
  - name: psg
    overrides: {{guided: true, scale: 20, fraction: 0.5}}
scoring:
  detector: tiny-owlv2
  sam: tiny-sam
  threshold: 0.0
  device: cpu
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, help="CPU threads per server (default: cores / workers)")
    args = ap.parse_args()
    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui:
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout")
    sys.path.insert(0, comfyui)
    import ray

    import comfy_host
    import detect_fixtures
    from pos_core.bench.runner import Options, run

    ckpt = comfy_host.fixture_checkpoint()
    vocab = comfy_host.CACHE / "bpe_simple_vocab_16e6.txt.gz.hf"
    detect_fixtures.owlv2(str(vocab)), detect_fixtures.sam()
    work = Path(tempfile.mkdtemp(prefix="pos_bench_tp_"))
    (work / "configs.yaml").write_text(CONFIGS.format(ckpt=ckpt.name, steps=args.steps, size=args.size))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(f"{args.prompts} SR2D prompts x {args.seeds} seeds x 2 configs, {args.size} px, {args.steps} steps, "
          f"{os.cpu_count()} CPU cores, threads per server: {args.threads or 'cores / workers'}")
    print("| workers | units | wall (min) | units/min (all) | units/min (steady) | load average (start, end) |")
    print("|---|---|---|---|---|---|")
    try:
        for n in args.workers:
            times: dict[str, float] = {}

            def on_event(kind, data, runner, times=times):
                now = time.time()
                if kind == "generated":
                    times.setdefault("first", now)
                if kind == "row":
                    times["last"] = now
                    times["rows"] = times.get("rows", 0) + 1

            opts = Options(prompts="sr2d", limit=args.prompts, seeds=args.seeds, configs=str(work / "configs.yaml"),
                           out=str(work / f"out{n}"), workers=n, comfyui=comfyui, checkpoints=str(ckpt.parent),
                           models_dir=[str(detect_fixtures.CACHE)], shard_size=16, threads=args.threads)
            load0 = os.getloadavg()[0]
            t0 = time.time()
            res = run(opts, on_event=on_event, log=lambda m: None)
            wall = time.time() - t0
            steady = (times["rows"] - 1) / ((times["last"] - times["first"]) / 60)
            print(f"| {n} | {res['made']} ({res['failed']} failed) | {wall / 60:.2f} | {res['made'] / (wall / 60):.1f} "
                  f"| {steady:.1f} | {load0:.1f}, {os.getloadavg()[0]:.1f} |", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
