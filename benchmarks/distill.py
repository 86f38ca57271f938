"""PoS Distill LoRA on the testbeds: LoRAs distilled by the PoS Distill LoRA node (in-process, the real ComfyUI)
from the testbed model's own guided sampling, on prompts of training object pairs only.

    COMFYUI_PATH=... python benchmarks/distill.py train --teachers none,psg,layout,layout+psg [--prompts 128]
    COMFYUI_PATH=... python benchmarks/distill.py noharm --lora FILE [--n 100]      # one object, no relation
    COMFYUI_PATH=... python benchmarks/distill.py fit --reference --configs move:5e-4:8:300,endpoint:5e-4:8:300
    # then, per LoRA file `train` printed (the same held-out cases and scoring as every testbed table):
    COMFYUI_PATH=... python benchmarks/effect.py eval --lora FILE --n 200 --ways unguided [--lora-strength S]
    python benchmarks/pos_lora.py table base=DIR:unguided control=DIR:unguided ... --ref control

`train` samples the teacher on `--prompts` seeded training captions (scenes.training_prompts: training
object pairs, every phrasing), `--trajectories` seeds each, with the testbed's sampler settings (euler,
normal, 20 steps, CFG 5, 128 px), then trains one LoRA per teacher with the same prompts, seeds, batches and
LoRA start (teacher `none` is the control: the base's own trajectories). Files are cached in
~/.cache/pos_spatial_testbed/distill (or $POS_TESTBED_CACHE/distill) with a .json of the node's summary,
losses and seconds. `noharm` samples one-object prompts with and without the LoRA at the same seeds and
reports how often the object is drawn, how far the latent moves, and the LoRA's sampling time against the
base's (interleaved in one process). `fit` asks whether a LoRA fits its teacher where it was trained: a few
training captions, their teacher trajectories, LoRAs of the given target / rate / rank / steps, each scored on
those captions at new seeds against the base and the teacher (the settings are chosen there, never on the
reported cases).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

import effect


def cache_dir() -> Path:
    return Path(os.environ.get("POS_TESTBED_CACHE", Path.home() / ".cache" / "pos_spatial_testbed")) / "distill"


def testbed(args):
    """(checkpoint path, model, clip, vae) of the trained testbed effect.py built."""
    import comfy_host
    import torch

    comfy_host.load_pack()
    tb = argparse.Namespace(encoder=args.encoder, steps=args.testbed_steps, relation_noise=0.0, seed=0, init="", three=0.0)
    ckpt = effect.arch(args).checkpoint_path(effect.config_from(tb))
    if not ckpt.exists():
        sys.exit(f"distill.py: no trained testbed at {ckpt} (run `effect.py train` first)")
    with torch.inference_mode():
        model, clip, vae = effect.arch(args).load(ckpt)
    return ckpt, model, clip, vae


def prompts(n: int, seed: int) -> list[str]:
    """n distinct training captions (training object pairs only), seeded."""
    from pos_spatial_pack.pos_core import scenes

    caps = sorted({c[0] for c in scenes.training_prompts(0)})
    return random.Random(seed).sample(caps, min(n, len(caps)))


def cmd_train(args) -> int:
    import torch
    from safetensors.torch import save_file

    ckpt, model, clip, _ = testbed(args)
    from pos_spatial_pack.nodes.distill_lora import PoSDistillLoRA

    texts = prompts(args.prompts, args.prompt_seed)
    out = cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    for teacher in [t.strip() for t in args.teachers.split(",") if t.strip()]:
        key = [str(ckpt), texts, teacher, args.scale, args.trajectories, args.base_fraction, args.rank,
               args.train_steps, args.batch, args.lr, args.seed]
        tag = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:10]
        path = out / f"distill_{teacher.replace('+', '_')}_{tag}.safetensors"
        if path.exists():
            print(json.dumps({"teacher": teacher, "lora": str(path), "cached": True}), flush=True)
            continue
        t0 = time.time()
        with torch.inference_mode():
            res = PoSDistillLoRA.execute(model, clip, "\n".join(texts), teacher, args.scale, 0.5, 1 / 16, effect.SAMPLER,
                                         effect.SCHEDULER, effect.STEPS, effect.CFG, effect.SIZE, effect.SIZE,
                                         args.trajectories, args.base_fraction, args.rank, args.train_steps, args.batch,
                                         args.lr, args.seed, "fp32", False,
                                         preview_prompt="a cat to the left of a dog").result
        secs = time.time() - t0
        _, lora, losses, _, _, _, summary = res
        save_file({k: v.detach().contiguous() for k, v in lora.items()}, str(path))
        meta = {"teacher": teacher, "lora": str(path), "checkpoint": str(ckpt), "prompts": texts, "scale": args.scale,
                "trajectories": args.trajectories, "base_fraction": args.base_fraction, "rank": args.rank,
                "train_steps": args.train_steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                "seconds": round(secs, 1), "summary": summary,
                "peak_rss_mib": peak_rss_mib(),
                "losses": {k: [round(v, 6) for v in vals] for k, vals in losses.items()}}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
        print(json.dumps({k: meta[k] for k in ("teacher", "lora", "seconds")}), flush=True)
        print(summary, file=sys.stderr, flush=True)
        torch.set_grad_enabled(True)
    return 0


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (CUDA peak where a GPU ran it)."""
    import resource

    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cmd_noharm(args) -> int:
    """One object, no relation: objects drawn with and without the LoRA, and the latent's mean |change|."""
    import torch

    bench = effect.Bench(_ckpt(args), effect.arch(args))  # loads the pack
    lora = effect.Bench(_ckpt(args), effect.arch(args), lora_file=args.lora, lora_strength=args.lora_strength)
    from pos_spatial_pack.pos_core import scenes
    names = sorted(scenes.CLASSES)
    rng = random.Random(args.seed)
    drawn = {"base": 0, "lora": 0}
    secs = {"base": 0.0, "lora": 0.0}  # the same process, interleaved: the LoRA's sampling cost against the base's
    diffs = []
    for i in range(args.n):
        name = rng.choice(names)
        seed = 10_000 + i
        with torch.inference_mode():
            cond = bench.nodes.CLIPTextEncode().encode(bench.clip, f"a photo of a {name}")[0]
        t0 = time.perf_counter()
        a = bench.sample(bench.model, cond, seed)
        t1 = time.perf_counter()
        b = lora.sample(lora.model, cond, seed)
        secs["base"] += t1 - t0
        secs["lora"] += time.perf_counter() - t1
        for label, lat in (("base", a), ("lora", b)):
            drawn[label] += bool(scenes.masks_of(lat, [name])[name].any())
        diffs.append(float((a - b).abs().mean() / a.abs().mean().clamp_min(1e-8)))
    lo, hi = effect.bootstrap(diffs)[1:]
    report = {"n": args.n, "lora": args.lora, "lora_strength": args.lora_strength,
              "drawn_base": drawn["base"] / args.n, "drawn_lora": drawn["lora"] / args.n,
              "relative_latent_change": sum(diffs) / len(diffs), "relative_latent_change_ci": [lo, hi],
              "seconds_base": secs["base"], "seconds_lora": secs["lora"], "time_ratio": secs["lora"] / secs["base"]}
    print(json.dumps(report))
    return 0


def fit_rows(k: int) -> list[tuple[str, str, str, str]]:
    """The fit check's k training captions (prompt, subject, relation, object): a seeded shuffle of all of them."""
    from pos_spatial_pack.pos_core import scenes

    rows = sorted(scenes.training_prompts(0))
    random.Random(1).shuffle(rows)
    return rows[:k]


def fit_accuracy(model, clip, rows, teacher: str, scale: float, guided: bool, seeds: int) -> dict:
    """Relation accuracy on the fit check's own prompts at `seeds` new seeds each (500_000 + 100 p + j: no
    teacher trajectory and no reported case uses them): the model unguided, or with guided the teacher."""
    import nodes
    import testbed
    import torch
    from pos_spatial_pack.nodes.distill_lora import PoSDistillLoRA

    neg = nodes.CLIPTextEncode().encode(clip, "")[0]
    latent = nodes.EmptyLatentImage().generate(effect.SIZE, effect.SIZE, 1)[0]
    ok = []
    for p, (text, s, r, o) in enumerate(rows):
        model_t, pos_t, cond, _ = PoSDistillLoRA._teacher_setup(model, clip, text, teacher, scale, 0.5, 1 / 16,
                                                                effect.SIZE, effect.SIZE)
        for j in range(seeds):
            with torch.inference_mode():
                lat = nodes.common_ksampler(model_t if guided else model, 500_000 + p * 100 + j, effect.STEPS,
                                            effect.CFG, effect.SAMPLER, effect.SCHEDULER, pos_t if guided else cond,
                                            neg, latent)[0]["samples"][0]
            ok.append(float(effect.score_case(testbed, lat, s, r, o)["correct"]))
    lo, hi = effect.bootstrap(ok)[1:]
    return {"n": len(ok), "accuracy": sum(ok) / len(ok), "ci": [lo, hi]}


def cmd_fit(args) -> int:
    """Can the LoRA fit its teacher where it was trained? A few training captions, the teacher's trajectories
    recorded once (cached), then one LoRA per --configs entry (target:lr:rank:steps), each scored on the same
    captions at new seeds against the base and the teacher (--reference). Chooses settings without touching
    the reported cases."""
    configs = [c.split(":") for c in args.configs.split(",") if c.strip()]
    bad = [":".join(c) for c in configs if len(c) != 4 or c[0] not in ("move", "endpoint")]
    if bad:  # before an hour of training, not after the first config
        sys.exit(f"distill.py fit: --configs entries are target:lr:rank:steps with target move or endpoint: {bad}")
    _, model, clip, _ = testbed(args)  # loads the pack
    import comfy.utils
    import torch
    from pos_spatial_pack.nodes.distill_lora import PoSDistillLoRA, distill_train
    from pos_spatial_pack.pos_core import distill

    rows = fit_rows(args.prompts)
    texts = [r[0] for r in rows]
    path = cache_dir() / f"fit_{args.teacher.replace('+', '_')}_{args.prompts}x{args.trajectories}.pt"
    if not path.exists():
        t0 = time.time()
        with torch.inference_mode():
            recs = PoSDistillLoRA._teacher(model, clip, texts, args.teacher, args.scale, 0.5, 1 / 16, effect.SAMPLER,
                                           effect.SCHEDULER, effect.STEPS, effect.CFG, effect.SIZE, effect.SIZE,
                                           args.trajectories, 0.0, 0, "", comfy.utils.ProgressBar(1))[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(recs.__dict__, path)
        print(json.dumps({"recorded": len(recs), "seconds": round(time.time() - t0, 1)}), flush=True)
    recs = distill.Records(**torch.load(path))
    if args.reference:
        print(json.dumps({"base": fit_accuracy(model, clip, rows, args.teacher, args.scale, False, args.seeds),
                          "teacher": fit_accuracy(model, clip, rows, args.teacher, args.scale, True, args.seeds)}),
              flush=True)
    with torch.inference_mode():
        pos = [PoSDistillLoRA._encode(t, clip)[0][0] for t in texts]
        neg = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    for target, lr, rank, steps in configs:
        train_recs = recs if target == "move" else distill.endpoint_targets(recs, effect.STEPS)
        t0 = time.time()
        with torch.inference_mode():
            mp, _, losses = distill_train(model, train_recs, pos, neg, effect.CFG, int(rank), int(steps), args.batch,
                                          float(lr), 0, torch.float32, False, comfy.utils.ProgressBar(int(steps)))
        torch.set_grad_enabled(True)
        secs = time.time() - t0
        loss = losses["loss"]
        q = max(1, len(loss) // 10)
        print(json.dumps({"target": target, "lr": float(lr), "rank": int(rank), "steps": int(steps),
                          "batch": args.batch, "train_seconds": round(secs), "loss_first_10pc": sum(loss[:q]) / q,
                          "loss_last_10pc": sum(loss[-q:]) / q,
                          "lora": fit_accuracy(mp, clip, rows, args.teacher, args.scale, False, args.seeds)}),
              flush=True)
    return 0


def _ckpt(args) -> Path:
    tb = argparse.Namespace(encoder=args.encoder, steps=args.testbed_steps, relation_noise=0.0, seed=0, init="", three=0.0)
    return effect.arch(args).checkpoint_path(effect.config_from(tb))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("train", "noharm", "fit"):
        p = sub.add_parser(name)
        p.add_argument("--encoder", default="isolated")
        p.add_argument("--testbed-steps", type=int, default=2400, help="which cached testbed (its training steps)")
        p.add_argument("--arch", default="unet", choices=("unet", "flux"))
        p.add_argument("--seed", type=int, default=0)
        if name == "train":
            p.add_argument("--teachers", default="none,psg,layout,layout+psg")
            p.add_argument("--prompts", type=int, default=128, help="distillation prompts (training pairs only)")
            p.add_argument("--prompt-seed", type=int, default=0)
            p.add_argument("--trajectories", type=int, default=2, help="teacher trajectories (seeds) per prompt")
            p.add_argument("--base-fraction", type=float, default=0.0)
            p.add_argument("--scale", type=float, default=effect.DEFAULT_SCALE, help="PoS Guidance's scale in the teacher")
            p.add_argument("--rank", type=int, default=8)
            p.add_argument("--train-steps", type=int, default=600)
            p.add_argument("--batch", type=int, default=16)
            p.add_argument("--lr", type=float, default=5e-4)
        elif name == "fit":
            p.add_argument("--teacher", default="psg", choices=("psg", "layout", "layout+psg"))
            p.add_argument("--prompts", type=int, default=16, help="training captions the LoRAs are fitted on")
            p.add_argument("--trajectories", type=int, default=4)
            p.add_argument("--scale", type=float, default=effect.DEFAULT_SCALE)
            p.add_argument("--seeds", type=int, default=8, help="new seeds per caption when scoring")
            p.add_argument("--batch", type=int, default=16)
            p.add_argument("--configs", default="move:5e-4:8:300",
                           help="comma-separated target:lr:rank:steps (target: move or endpoint)")
            p.add_argument("--reference", action="store_true", help="also score the base and the teacher")
        else:
            p.add_argument("--lora", required=True)
            p.add_argument("--lora-strength", type=float, default=1.0)
            p.add_argument("--n", type=int, default=100)
    args = ap.parse_args(argv)
    effect.setup()
    return {"train": cmd_train, "noharm": cmd_noharm, "fit": cmd_fit}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
