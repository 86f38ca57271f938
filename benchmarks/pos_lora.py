"""PoS LoRA on the testbeds: LoRAs trained by the PoS Train LoRA node (in-process, the real ComfyUI) on the
testbed's training scenes and captions (training object pairs only), with and without the PoS loss.

    COMFYUI_PATH=... python benchmarks/pos_lora.py train --weights 0,0.3,1,3 [--steps 300] [--n-data 2048]
    COMFYUI_PATH=... python benchmarks/pos_lora.py train --arch flux --attention-blocks s0,s1 --weights 0,1,10   # Flux testbed
    COMFYUI_PATH=... python benchmarks/pos_lora.py cost [--steps 20] [--weight 1]
    # then, per LoRA file `train` printed:
    COMFYUI_PATH=... python benchmarks/effect.py eval --lora FILE --validation --n 60 --ways unguided   # choose
    COMFYUI_PATH=... python benchmarks/effect.py eval --lora FILE --n 200 --ways unguided,psg@20        # report
    python benchmarks/pos_lora.py table base=DIR:unguided control=DIR:unguided ... --ref base            # table

`train` builds one dataset (seeded scenes as stored latents, their captions encoded by the testbed's CLIP),
then one LoRA per weight with the same steps, batches, noise and seed (weight 0 is the control: the
diffusion loss alone), cached in ~/.cache/pos_spatial_testbed/pos_lora (or $POS_TESTBED_CACHE/pos_lora).
`cost` times training steps with and without the PoS term in one process (interleaved blocks) and counts
the bytes autograd saves for backward per step (activation memory; torch.cuda peak on a GPU).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import effect

LR, RANK, BATCH = 5e-4, 8, 32


def cache_dir() -> Path:
    return Path(os.environ.get("POS_TESTBED_CACHE", Path.home() / ".cache" / "pos_spatial_testbed")) / "pos_lora"


def dataset(n: int, seed: int):
    """(stored latents [n, 4, 16, 16], captions): random training captions (training object pairs only) and
    a scene of each, placed by the testbed's own generator; latents as VAE Encode would give them."""
    import torch

    from pos_core import scenes

    caps = scenes.training_prompts(0)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(caps), (n,), generator=gen).tolist()
    x = torch.stack([scenes.scene(caps[i][1], caps[i][2], caps[i][3], gen) for i in idx]) / scenes.SCALE_FACTOR
    return x, [caps[i][0] for i in idx]


class Trainer:
    """The testbed model, its CLIP and one encoded dataset, and the pack's PoS Train LoRA node."""

    def __init__(self, ckpt: Path, n_data: int, data_seed: int, module=None, blocks: str = "auto"):
        import comfy_host
        import testbed
        import torch

        import nodes

        comfy_host.load_pack()
        from pos_spatial_pack.nodes import train_lora

        self.torch, self.node, self.blocks = torch, train_lora.PoSTrainLoRA, blocks
        with torch.inference_mode():
            self.model, self.clip, _ = (module or testbed).load(ckpt)
            self.latents, self.captions = dataset(n_data, data_seed)
            enc: dict[str, list] = {}
            self.positive = []
            for c in self.captions:
                if c not in enc:
                    enc[c] = nodes.CLIPTextEncode().encode(self.clip, c)[0]
                self.positive += enc[c]

    def train(self, weight: float, steps: int, seed: int, checkpointing: bool = False, noise_levels: float = 1.0):
        with self.torch.inference_mode():
            out = self.node.execute(self.model, {"samples": self.latents}, self.positive, self.clip, "",
                                    "\n".join(self.captions), weight, noise_levels, "auto", BATCH, 1, steps, LR, RANK,
                                    "AdamW", "MSE", seed, "fp32", "fp32", "LoRA", checkpointing, self.blocks).result
        return out


def testbed_checkpoint(args) -> Path:
    """The trained testbed the LoRAs start from: --checkpoint, or effect.py's default config of --arch."""
    tb = argparse.Namespace(encoder=args.encoder, steps=args.testbed_steps, relation_noise=0.0, seed=0, init="")
    ckpt = Path(args.checkpoint) if args.checkpoint else effect.arch(args).checkpoint_path(effect.config_from(tb))
    if not ckpt.exists():
        sys.exit(f"pos_lora.py: no trained testbed at {ckpt} (run `effect.py train` first)")
    return ckpt


def cmd_train(args) -> int:
    import torch
    from safetensors.torch import save_file

    ckpt = testbed_checkpoint(args)
    weights = [float(w) for w in args.weights.split(",") if w.strip()]
    key = [str(ckpt), args.n_data, args.data_seed, args.steps, args.seed, LR, RANK, BATCH, 1]
    if args.noise_levels != 1.0:  # (files trained on all noise levels keep their names)
        key.append(args.noise_levels)
    if args.arch != "unet":  # (the UNet files keep their names; the checkpoint path already differs)
        key += [args.arch, args.attention_blocks]
    tag = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:10]
    out_dir = cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = None
    for w in weights:
        path = out_dir / f"pos_lora_w{w:g}_{tag}.safetensors"
        if path.exists():
            print(json.dumps({"weight": w, "lora": str(path), "cached": True}))
            continue
        trainer = trainer or Trainer(ckpt, args.n_data, args.data_seed, effect.arch(args), args.attention_blocks)
        t0 = time.time()
        _, lora, losses, _, _, summary = trainer.train(w, args.steps, args.seed, noise_levels=args.noise_levels)
        secs = time.time() - t0
        save_file({k: v.detach().contiguous() for k, v in lora.items()}, str(path))
        meta = {"weight": w, "lora": str(path), "checkpoint": str(ckpt), "arch": args.arch, "blocks": args.attention_blocks,
                "steps": args.steps, "batch": BATCH,
                "lr": LR, "rank": RANK, "seed": args.seed, "noise_levels": args.noise_levels, "n_data": args.n_data,
                "data_seed": args.data_seed,
                "seconds": round(secs, 1), "summary": summary,
                "losses": {k: [round(v, 6) for v in vals] for k, vals in losses.items()}}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        print(json.dumps({k: meta[k] for k in ("weight", "lora", "seconds")}), flush=True)
        print(summary, file=sys.stderr, flush=True)
        del lora
        torch.set_grad_enabled(True)
    return 0


def cmd_cost(args) -> int:
    """Seconds a training step and autograd-saved bytes a step, PoS term off (weight 0) and on, interleaved."""
    import torch

    ckpt = testbed_checkpoint(args)
    trainer = Trainer(ckpt, args.n_data, args.data_seed, effect.arch(args), args.attention_blocks)
    saved = {"bytes": 0}

    def pack(t):
        saved["bytes"] += t.numel() * t.element_size()
        return t

    secs: dict[float, list[float]] = {0.0: [], args.weight: []}
    mem: dict[float, list[float]] = {0.0: [], args.weight: []}
    trainer.train(args.weight, 2, 99)  # warm-up (first-call costs), not counted
    for block in range(args.blocks):
        for w in ((0.0, args.weight) if block % 2 == 0 else (args.weight, 0.0)):
            saved["bytes"] = 0
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                _, _, losses, _, _, _ = trainer.train(w, args.steps, block)
            secs[w] += losses["seconds"]
            mem[w].append(torch.cuda.max_memory_allocated() if torch.cuda.is_available() else saved["bytes"] / args.steps)
    return report_cost(secs, mem, args)


def report_cost(secs, mem, args) -> int:
    w = args.weight
    if not secs[0.0] or not secs[w]:
        sys.exit("pos_lora.py cost: the node reported no step times")
    a, b = statistics.median(secs[0.0]), statistics.median(secs[w])
    ma, mb = max(mem[0.0]), max(mem[w])
    import torch

    kind = "peak CUDA bytes" if torch.cuda.is_available() else "bytes saved for backward a step"
    # on a CPU the DiT path cannot count saved bytes: autograd's mutation mode (the stock blocks' in-place adds)
    # installs its own saved-tensor hooks, which take the place of the counting ones
    mem_ok = ma > 0 and mb > 0
    fmt = (lambda v: f"{v / 2**20:.1f} MiB") if mem_ok else (lambda v: "n/a (mutation mode's own hooks)")
    print(f"| PoS term | s / step (median of {len(secs[0.0])}) | {kind} |\n|---|---|---|\n"
          f"| off (weight 0) | {a:.4f} | {fmt(ma)} |\n| on (weight {w:g}) | {b:.4f} | {fmt(mb)} |\n"
          f"\nratio on / off: time {b / a:.3f}" + (f", memory {mb / ma:.3f}" if mem_ok else ""))
    print(json.dumps({"seconds_off": a, "seconds_on": b, "time_ratio": b / a, "memory_off": ma, "memory_on": mb,
                      "memory_ratio": mb / ma if mem_ok else None, "steps_each": len(secs[0.0]), "weight": w}))
    return 0


def paired(a: list[float], b: list[float], reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over the same cases and its bootstrap 95 % interval (cases resampled together)."""
    import random

    if len(a) != len(b):
        raise ValueError("paired runs must have the same cases")
    rng, n = random.Random(seed), len(a)
    diff = [x - y for x, y in zip(a, b)]
    means = sorted(sum(diff[rng.randrange(n)] for _ in range(n)) / n for _ in range(reps))
    return sum(diff) / n, means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


def cmd_table(args) -> int:
    """One table from effect.py eval results (LABEL=DIR[:WAY]), with paired differences against --ref."""
    rows = {}
    for spec in args.runs:
        label, _, rest = spec.partition("=")
        folder, _, way = rest.partition(":")
        r = json.loads(Path(folder, "results.json").read_text())
        way = way or next(iter(r["ways"]))
        rows[label] = (r, r["ways"][way])

    def pct(t):
        return f"{100 * t[0]:.1f} [{100 * t[1]:.1f}, {100 * t[2]:.1f}]"

    def col(v, key):
        return [float(x[key]) for x in v["raw"]["rows"]]

    ref = rows[args.ref][1] if args.ref else None
    head = ("| model and way | n | relation accuracy % [95 % CI] | objects drawn % [95 % CI] | mean PSE | "
            f"map centroid nearer own | map mass on own | relation vs {args.ref or '-'} (paired) | objects vs "
            f"{args.ref or '-'} |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for label, (_, v) in rows.items():
        al = v.get("alignment")
        own = f"{100 * al['centroid_nearer_own']:.1f} %" if al else ""
        mass = f"{100 * al['mass_in_own']:.1f} %" if al else ""
        diff = dd = ""
        if ref is not None and v is not ref:
            m, lo, hi = paired(col(v, "correct"), col(ref, "correct"))
            diff = f"{100 * m:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
            m, lo, hi = paired(col(v, "drawn"), col(ref, "drawn"))
            dd = f"{100 * m:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
        lines.append(f"| {label} | {v['n']} | {pct(v['relation_accuracy'])} | {pct(v['object_accuracy'])} | "
                     f"{v['mean_pse'][0]:.3f} | {own} | {mass} | {diff} | {dd} |")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="one table of eval runs: LABEL=DIR[:WAY] ...")
    t.add_argument("runs", nargs="+")
    t.add_argument("--ref", default="", help="the label paired differences are taken against")
    for name in ("train", "cost"):
        p = sub.add_parser(name)
        p.add_argument("--checkpoint", default="", help="the testbed checkpoint (default: effect.py's 2400-step one)")
        p.add_argument("--encoder", default="isolated")
        p.add_argument("--steps", type=int, default=300 if name == "train" else 10,
                       help="training steps (batch 32)" if name == "train" else "steps per timed block")
        p.add_argument("--testbed-steps", type=int, default=2400, help="which cached testbed (its training steps)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--arch", default="unet", choices=("unet", "flux"),
                       help="the testbed: unet, or flux (the Flux-family testbed, joint attention)")
        p.add_argument("--attention-blocks", default="auto",
                       help="--arch flux: PoS Train LoRA's blocks input (s0,s1: where PoS Guidance works on that testbed)")
        p.add_argument("--n-data", type=int, default=2048, help="training scenes in the dataset")
        p.add_argument("--data-seed", type=int, default=1)
        if name == "train":
            p.add_argument("--weights", default="0,1,10,100", help="PoS loss weights; 0 = the control LoRA")
            p.add_argument("--noise-levels", type=float, default=1.0,
                           help="the PoS term on the noisiest fraction of noise levels (the node's pos_noise_levels)")
        else:
            p.add_argument("--weight", type=float, default=1.0)
            p.add_argument("--blocks", type=int, default=4, help="timed blocks, alternating off / on")
    args = ap.parse_args(argv)
    if args.cmd == "table":
        return cmd_table(args)
    effect.setup()
    return cmd_train(args) if args.cmd == "train" else cmd_cost(args)


if __name__ == "__main__":
    sys.exit(main())
