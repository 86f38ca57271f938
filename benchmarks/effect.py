"""Measured effect of PoS Guidance and PoS Seed Search on a model that has learned spatial relations.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/effect.py train [--encoder isolated|mixing] [--steps N]
    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/effect.py eval  [--encoder ...] [--n 200] [--out DIR]
    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/effect.py tune --way center [--grid 5,10,20,40,80,160,320] [--n-val 60]
    ... train|eval --arch flux   (the Flux-family testbed, benchmarks/testbed_flux.py)
    ... train --three 0.5        (half the training scenes with three objects; eval|tune --three 0.5 finds it)
    ... eval|tune --objects 3    (three-object cases: "a cat to the left of a dog, and a cup above the dog")
    COMFYUI_PATH=... python benchmarks/effect.py paired DIR_A:WAY DIR_B:WAY   (paired differences, same cases)

`train` builds the testbed checkpoint (benchmarks/testbed.py; seeded, cached in ~/.cache/pos_spatial_testbed
or $POS_TESTBED_CACHE) and prints its path. `eval` runs held-out (prompt, seed) cases through the pack's
own nodes in-process in the real ComfyUI (PoS Relations from Prompt, PoS Guidance, PoS Seed Search, stock
KSampler code), segments both objects exactly from their latent patterns, scores them with pos_core
(PSE, VISOR verdicts, object accuracy) and prints a Markdown table with bootstrap 95 % intervals and
seconds per image; --out also writes results.json and table.md.

Ways (--ways, comma-separated): unguided; psg@S (PoS Guidance, pos objective, scale S); center@S (the same
guidance, schedule and maps with the center objective); layout (no gradient: regional conditioning from
stock nodes, `layout_conditioning`); layout+psg[@S] (that conditioning with PoS Guidance on the model, scale
20 unless @S); psg+search[@S] (PoS Seed Search, attention ranking, default N = 8, over a PoS-Guided model);
search-attention (N = 8); search-pse (N = 4). `tune` chooses the scale of a scale-bearing way (psg, center,
layout+psg, psg+search) from a grid on validation cases disjoint from the reported ones
(pos_core.scenes.validation_cases) and prints it.

With --objects 3 every way runs on three-object cases (pos_core.scenes.eval_cases3: two relations sharing
their object, held-out triples); a case counts as right when all three objects are drawn and both relations'
VISOR verdicts are right ("all relations right"), and the table adds the per-relation accuracy. layout then
gives each object its bands on the relations' axes (`layout_regions_many`), one "a {name}" prompt per object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS, CFG, SAMPLER, SCHEDULER, SIZE = 20, 5.0, "euler", "normal", 128
DEFAULT_SCALE = 20.0  # PoS Guidance's default, for ways named without @S
SEARCH_N = 8  # PoS Seed Search's default candidates (attention mode)
# layout: each object's region is its half of the image, less LAYOUT_MARGIN (a fraction of the side) on the
# midline side, so the two regions are 2 * LAYOUT_MARGIN apart (128 px: halves of 56 px, a 16 px gap);
# pos_core.layout.MARGIN, PoS Layout from Relations' default
LAYOUT_MARGIN = 1 / 16
# a latent is "in range" when no model-space value exceeds this: the scenes' values are 0 and +/-0.9 (AMPLITUDE),
# the Flux testbed's unguided samples stay under about 1.6 (the UNet testbed's reach about 2.5: there the
# column is too strict); a guidance step that throws the latent far outside what the model learned can still
# segment into objects by direction (segment() takes any norm above half an object's)
IN_RANGE = 2.0
SCALED = ("psg", "center", "layout+psg", "psg+search")  # ways that take @S, and that `tune` tunes
TUNE_GRID = "5,10,20,40,80,160,320"  # wide: the two objectives' gradients differ in size


def setup() -> None:
    """Put ComfyUI (COMFYUI_PATH), the tests' host helpers and this folder on sys.path; CPU if no GPU."""
    comfy = os.environ.get("COMFYUI_PATH")
    if not comfy or not Path(comfy, "comfy").is_dir():
        sys.exit("effect.py: set COMFYUI_PATH to a ComfyUI checkout")
    for p in (str(ROOT / "benchmarks"), str(ROOT / "tests"), comfy):
        if p not in sys.path:
            sys.path.insert(0, p)
    import torch
    from comfy.cli_args import args

    args.cpu = args.cpu or not torch.cuda.is_available()
    # PyTorch's SDPA, as on GPUs: ComfyUI's CPU default (sub-quadratic chunks) is many times slower
    # to train through and to take gradients through
    args.use_pytorch_cross_attention = True
    if os.environ.get("POS_THREADS"):  # e.g. 1 on a machine shared with other jobs (no spin-waiting)
        torch.set_num_threads(int(os.environ["POS_THREADS"]))


def bar(done: int, total: int, start: float, what: str) -> None:
    """One-line terminal progress with an estimate of the time left."""
    el = time.time() - start
    left = el / done * (total - done) if done else 0.0
    n = int(30 * done / total)
    print(f"\r{what} [{'#' * n}{'.' * (30 - n)}] {done}/{total}  {el:5.0f} s, ~{left:4.0f} s left", end="",
          file=sys.stderr, flush=True)
    if done == total:
        print(file=sys.stderr)


def config_from(args):
    import testbed

    return testbed.Config(encoder=args.encoder, steps=args.steps, relation_noise=args.relation_noise,
                          seed=args.seed, init=getattr(args, "init", ""), three=args.three)


def arch(args):
    """The testbed module of --arch: testbed (SD1-family UNet), testbed_flux (Flux.1 transformer) or testbed_zimage
    (Z-Image transformer with a causal LLM text encoder, ComfyUI 0.33+)."""
    if getattr(args, "arch", "unet") == "flux":
        import testbed_flux

        return testbed_flux
    if getattr(args, "arch", "unet") == "zimage":
        import testbed_zimage

        return testbed_zimage
    import testbed

    return testbed


def cmd_train(args) -> int:
    cfg = config_from(args)
    snaps = tuple(int(v) for v in args.snapshots.split(",") if v) if getattr(args, "snapshots", "") else ()
    print("encoding the training captions (cached after the first time) ...", file=sys.stderr, flush=True)
    t0: dict[str, float] = {}

    def progress(i: int, n: int, loss: float) -> None:
        # time left from the training steps alone (caption encoding before step 1 would inflate it)
        t0.setdefault("start", time.time())
        bar(i, n, t0["start"], f"training ({loss:.4f})")

    extra = {} if args.arch in ("flux", "zimage") else {"snapshots": snaps}  # the DiT testbeds keep no snapshots
    rep = arch(args).train(cfg, progress=progress, **extra)
    print(json.dumps({"checkpoint": rep.path, "seconds": round(rep.seconds, 1), "steps": rep.steps}))
    return 0


def bootstrap(values: list[float], reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and its bootstrap 95 % interval."""
    if not values:
        return float("nan"), float("nan"), float("nan")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(reps))
    return sum(values) / n, means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


PATCHES = ("FreeU_V2", "PerturbedAttentionGuidance", "SelfAttentionGuidance", "RescaleCFG", "PatchModelAddDownscale",
           "LoraLoaderModelOnly", "EasyCache", "TomePatchModel")
PATCH_INPUTS = {"PatchModelAddDownscale": {"block_number": 1},  # the testbed has 3 input blocks: the one before its downsample
                "EasyCache": {"start_percent": 0.0}, "LoraLoaderModelOnly": {"strength_model": 1.0}}


def stock_node(name: str):
    """A stock ComfyUI node class by its id (comfy_extras loaded once), for the `--patch` graphs."""
    import asyncio

    import nodes

    if name not in nodes.NODE_CLASS_MAPPINGS:
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    if name not in nodes.NODE_CLASS_MAPPINGS:
        sys.exit(f"effect.py: --patch {name}: no such node in this ComfyUI")
    return nodes.NODE_CLASS_MAPPINGS[name]


def apply_patch(model, name: str, lora_path: Path | None = None, strength: float = 1.0):
    """The MODEL after the stock node `name` at its defaults (what a user's graph puts before the pack)."""
    import inspect

    cls = stock_node(name)
    spec = cls.INPUT_TYPES()["required"]
    kw = {}
    for key, s in spec.items():
        if key == "model":
            kw[key] = model
        elif key == "lora_name":
            kw[key] = str(lora_path)
        else:
            opts = s[1] if len(s) > 1 else {}
            first = s[0][0] if isinstance(s[0], list) else (opts.get("options") or [None])[0]
            kw[key] = opts.get("default", first)
    kw.update(PATCH_INPUTS.get(name, {}))
    if name == "LoraLoaderModelOnly":  # a file outside the models folder: ComfyUI's own loader code
        import comfy.sd
        import comfy.utils

        lora = comfy.utils.load_torch_file(str(lora_path), safe_load=True)
        return comfy.sd.load_lora_for_models(model, None, lora, strength, 0)[0]
    if hasattr(cls, "execute") and inspect.ismethod(cls.execute):  # V3 node
        return cls.execute(**kw).result[0]
    return getattr(cls(), cls.FUNCTION)(**kw)[0]


def testbed_lora(model) -> Path:
    """A seeded random rank-4 LoRA on the testbed UNet's attention projections (cached), for --patch LoRA."""
    from safetensors.torch import save_file

    path = Path(os.environ.get("POS_TESTBED_CACHE", Path.home() / ".cache" / "pos_spatial_testbed")) / "random_lora.safetensors"
    if path.exists():
        return path
    import comfy_host

    weights = [("diffusion_model." + n[:-len(".weight")], p) for n, p in model.model.diffusion_model.named_parameters()
               if n.endswith(".weight")]
    sd = comfy_host.random_lora(weights, lambda n: ".attn1.to_" in n or ".attn2.to_" in n, seed=11, scale=0.02)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


class Bench:
    """The testbed model and the pack's nodes, loaded once in-process."""

    def __init__(self, ckpt: Path, module=None, blocks: str = "auto", patch: str = "", lora_file: str = "",
                 max_step: float = -1.0, lora_strength: float = 1.0):
        import comfy_host
        import testbed
        import torch

        import nodes

        comfy_host.load_pack()
        from pos_spatial_pack.nodes import guidance, relations, seed_search
        from pos_spatial_pack.pos_core.detect import ColorKeyDetector

        self.torch, self.nodes, self.tb = torch, nodes, testbed
        self.guidance, self.relations, self.search = guidance, relations, seed_search
        with torch.inference_mode():
            self.model, self.clip, self.vae = (module or testbed).load(ckpt)
            self.neg = nodes.CLIPTextEncode().encode(self.clip, "")[0]
            self.latent = nodes.EmptyLatentImage().generate(SIZE, SIZE, 1)[0]
            if patch:  # the user's graph: a stock model patch before the pack's nodes
                lora = testbed_lora(self.model) if patch == "LoraLoaderModelOnly" else None
                self.model = apply_patch(self.model, patch, lora)
            if lora_file:  # a trained LoRA file (benchmarks/pos_lora.py, distill.py), as Load LoRA applies it
                self.model = apply_patch(self.model, "LoraLoaderModelOnly", Path(lora_file), lora_strength)
        self.detector = ColorKeyDetector(testbed.colors())
        self.blocks = blocks  # Flux / SD3 only: PoS Guidance's blocks input
        self.max_step = max_step  # PoS Guidance's max_step (step rule; -1 = the family's default)
        self._enc: dict[str, tuple] = {}

    def encode(self, prompt: str):
        if prompt not in self._enc:
            with self.torch.inference_mode():
                cond, rels, _ = self.relations.PoSRelationsFromPrompt.execute(prompt, self.clip).result
            self._enc[prompt] = (cond, rels)
        return self._enc[prompt]

    def sample(self, model, cond, seed: int):
        with self.torch.inference_mode():
            return self.nodes.common_ksampler(model, seed, STEPS, CFG, SAMPLER, SCHEDULER, cond, self.neg,
                                              self.latent)[0]["samples"][0]

    def guided(self, rels, scale: float, objective: str = "pos"):
        with self.torch.inference_mode():
            return self.guidance.PoSGuidance.execute(self.model, rels, scale, 0.5, -1.0, True, "auto",
                                                     self.blocks, objective=objective,
                                                     max_step=self.max_step).result

    def layout_conditioning(self, prompt: str, cond, rels):
        """What a ComfyUI user builds for a layout from stock nodes: one prompt per object ("a cat", "a dog",
        CLIPTextEncode) on its side's region (ConditioningSetAreaPercentage, strength 1), combined with the
        whole prompt's conditioning (ConditioningCombine). The whole prompt comes first and is PoS Relations
        from Prompt's CONDITIONING, so PoS Guidance on the model reads only it (nodes/conds.py).
        ConditioningSetAreaPercentage, not ConditioningSetArea: the latter's widgets stop at 64 px in steps
        of 8, which cannot draw a 56 px region of the 128 px testbed image; both set the same `area`."""
        # each object's bands on the relations' axes: one relation gives its two halves (layout_regions)
        regions = layout_regions_many([(r.subject, r.relation, r.object) for r in rels.relations])
        nodes = self.nodes
        with self.torch.inference_mode():
            out = cond
            for name, (x, y, w, h) in regions.items():
                part = nodes.CLIPTextEncode().encode(self.clip, f"a {name}")[0]
                part = nodes.ConditioningSetAreaPercentage().append(part, w, h, x, y, 1.0)[0]
                out = nodes.ConditioningCombine().combine(out, part)[0]
        return out

    def seed_search(self, cond, rels, seed: int, mode: str, candidates: int, search_steps: int = 4, model=None):
        kw = dict(model=model if model is not None else self.model, positive=cond, negative=self.neg, latent_image=self.latent, relations=rels,
                  seed=seed, candidates=candidates, mode=mode, steps=STEPS, search_steps=search_steps, cfg=CFG,
                  sampler_name=SAMPLER, scheduler=SCHEDULER, batch_size=0, blocks=self.blocks)
        if mode == "pse":
            kw.update(vae=self.vae, detector=self.detector)
        with self.torch.inference_mode():
            return self.search.PoSSeedSearch.execute(**kw).result[0]["samples"][0]

    def run(self, way: str, prompt: str, seed: int):
        """The final LATENT [4, h, w] of one way, and the attention run state where there is one."""
        cond, rels = self.encode(prompt)
        name, scale = parse_way(way)
        if way == "unguided":  # scale 0 only records attention (bit-identical images, a host test checks it)
            model, run = self.guided(rels, 0.0)
            return self.sample(model, cond, seed), run
        if name in ("psg", "center"):
            model, run = self.guided(rels, scale, "center" if name == "center" else "pos")
            return self.sample(model, cond, seed), run
        if name == "layout":  # no gradient: scale 0 records the whole prompt's maps only
            model, run = self.guided(rels, 0.0)
            return self.sample(model, self.layout_conditioning(prompt, cond, rels), seed), run
        if name == "layout+psg":
            model, run = self.guided(rels, scale)
            return self.sample(model, self.layout_conditioning(prompt, cond, rels), seed), run
        if name == "psg+search":
            model, _ = self.guided(rels, scale)
            return self.seed_search(cond, rels, seed, "attention", SEARCH_N, model=model), None
        if way == "search-attention":
            return self.seed_search(cond, rels, seed, "attention", 8), None
        if way == "search-pse":
            return self.seed_search(cond, rels, seed, "pse", 4), None
        raise ValueError(f"unknown way {way!r}")


def parse_way(way: str) -> tuple[str, float | None]:
    """(name, scale) of a --ways entry: "center@40" -> ("center", 40.0); a scale-bearing way named without
    @S gets DEFAULT_SCALE ("layout+psg" -> ("layout+psg", 20.0)); other ways have no scale."""
    name, at, value = way.partition("@")
    if at and name not in SCALED:
        raise ValueError(f"way {way!r}: only {', '.join(SCALED)} take @scale")
    if name in SCALED:
        scale = float(value) if at else DEFAULT_SCALE
        if not scale >= 0:
            raise ValueError(f"way {way!r}: the scale must be >= 0")
        return name, scale
    if name not in ("unguided", "layout", "search-attention", "search-pse"):
        raise ValueError(f"unknown way {way!r}")
    return name, None


def layout_regions(relation: str, margin: float = LAYOUT_MARGIN) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(subject region, object region) of a relation, each (x, y, width, height) as fractions of the image:
    the pack's layout (pos_core.layout.halves, what PoS Layout from Relations gives)."""
    from pos_core import layout

    return layout.halves(relation, margin)


def layout_regions_many(relations: list[tuple[str, str, str]], margin: float = LAYOUT_MARGIN
                        ) -> dict[str, tuple[float, float, float, float]]:
    """name -> (x, y, width, height) region of every object of several relations (pos_core.layout.regions:
    bands on each relation's axis; one relation gives layout_regions' two halves)."""
    from pos_core import layout

    return layout.regions(relations, margin)


def case_objects(case: tuple) -> list[tuple[str, str, str]]:
    """The (subject, relation, object) triples of an eval case: (prompt, s, rel, o, seed) or the three-object
    (prompt, a, r1, b, r2, c, seed) (pos_core.scenes.eval_cases3), whose relations are a-r1-b and c-r2-b."""
    if len(case) == 5:
        return [(case[1], case[2], case[3])]
    _, a, r1, b, r2, c, _ = case
    return [(a, r1, b), (c, r2, b)]


def score_case_many(tb, latent, relations: list[tuple[str, str, str]]) -> dict:
    """Verdicts for several relations in one latent: correct = every object drawn and every relation's VISOR
    verdict right ("all relations right"); rel_correct = the fraction of relations right (both of its objects
    drawn and its verdict right); pse = the mean of the relations' PSE; parts = each relation's verdicts."""
    from pos_core import evaluate

    names = list(dict.fromkeys(n for s, _, o in relations for n in (s, o)))
    m = tb.masks_of(latent, names)
    parts = []
    for s, rel, o in relations:
        r = evaluate.score_relation(evaluate.from_mask(m[s]), rel, evaluate.from_mask(m[o]))
        r["drawn"] = not (r["missing_subject"] or r["missing_object"])
        r["correct"] = bool(r["drawn"] and r.get("visor"))
        parts.append(r)
    drawn = all(bool(m[n].any()) for n in names)
    return {"correct": bool(drawn and all(p["correct"] for p in parts)), "drawn": drawn,
            "rel_correct": sum(p["correct"] for p in parts) / len(parts),
            "pse": sum(float(p["pse"] or 0.0) for p in parts) / len(parts),
            "missing_subject": any(p["missing_subject"] for p in parts),
            "missing_object": any(p["missing_object"] for p in parts), "parts": parts, "max_abs": max_abs(tb, latent)}


def score_any(tb, latent, case: tuple) -> dict:
    """score_case for a two-object case, score_case_many for a three-object one."""
    rels = case_objects(case)
    return score_case(tb, latent, *rels[0]) if len(rels) == 1 else score_case_many(tb, latent, rels)


def cases_of(objects: int, n: int, validation: bool = False, seen: bool = False, val_pairs: str = "held") -> list:
    """The eval cases (or, with validation, the validation cases) of two or three objects."""
    from pos_core import scenes

    if objects not in (2, 3):
        raise ValueError(f"--objects must be 2 or 3, got {objects}")
    if validation:
        return (scenes.validation_cases if objects == 2 else scenes.validation_cases3)(n, val_pairs)
    return (scenes.eval_cases if objects == 2 else scenes.eval_cases3)(n, held_out=not seen)


def score_case(tb, latent, s: str, rel: str, o: str) -> dict:
    """pos_core's verdicts on the exact masks of one generated latent."""
    from pos_core import evaluate

    m = tb.masks_of(latent, [s, o])
    a, b = evaluate.from_mask(m[s]), evaluate.from_mask(m[o])
    r = evaluate.score_relation(a, rel, b)
    r["drawn"] = not (r["missing_subject"] or r["missing_object"])
    r["correct"] = bool(r["drawn"] and r.get("visor"))
    r["max_abs"] = max_abs(tb, latent)
    return r


def right_in_range(row: dict) -> bool:
    """A scored case that is right with its latent in range (max_abs <= IN_RANGE)."""
    return bool(row["correct"]) and row["max_abs"] <= IN_RANGE


def max_abs(tb, latent) -> float:
    """Largest |value| of a sampler LATENT in model space (stored * SCALE_FACTOR): in range if <= IN_RANGE."""
    return float((latent.float() * tb.SCALE_FACTOR).abs().max())


def alignment(run, latent, tb, s: str, o: str) -> dict | None:
    """How well the subject's and object's token maps sit on their drawn objects (recorded maps,
    mean over the guided half of the steps): centroid nearer its own object, and map mass inside it."""
    import torch
    import torch.nn.functional as F

    if run is None or not run.maps:
        return None
    m = tb.masks_of(latent, [s, o])
    if not (m[s].any() and m[o].any()):
        return None
    steps = sorted(run.maps)[: max(1, len(run.maps) // 2)]
    maps = torch.stack([run.maps[k][0] for k in steps]).mean(0)  # [G, h, w]
    maps = F.interpolate(maps[None], size=m[s].shape, mode="bilinear", align_corners=False)[0].clamp_min(0)
    out = {"own_nearer": [], "mass_in_own": []}
    cents = {}
    for name in (s, o):
        ys, xs = torch.nonzero(m[name], as_tuple=True)
        cents[name] = torch.stack([ys.float().mean(), xs.float().mean()])
    yy, xx = torch.meshgrid(torch.arange(maps.shape[1]).float(), torch.arange(maps.shape[2]).float(), indexing="ij")
    for g, (own, other) in enumerate(((s, o), (o, s))):
        p = maps[g] / maps[g].sum().clamp_min(1e-12)
        c = torch.stack([(p * yy).sum(), (p * xx).sum()])
        out["own_nearer"].append(bool((c - cents[own]).norm() < (c - cents[other]).norm()))
        out["mass_in_own"].append(float(p[m[own]].sum()))
    return out


def cmd_eval(args) -> int:
    import testbed

    cfg = config_from(args)
    ckpt = Path(args.checkpoint) if args.checkpoint else arch(args).checkpoint_path(cfg)
    if not ckpt.exists() and args.checkpoint:
        sys.exit(f"effect.py: no checkpoint at {ckpt}")
    if not ckpt.exists():
        print(f"no trained testbed for this config yet; training it first ({cfg.steps} steps)", file=sys.stderr)
        cmd_train(args)
    if args.lora and not Path(args.lora).is_file():
        sys.exit(f"effect.py: --lora {args.lora}: no such file")
    bench = Bench(ckpt, arch(args), args.blocks, args.patch, args.lora, args.max_step, args.lora_strength)
    # validation: choosing a setting (a LoRA's weight), never the reported cases
    cases = cases_of(args.objects, args.n, validation=args.validation, seen=args.seen)
    k, parts = (int(v) for v in args.part.split("/"))
    cases = cases[k::parts]  # one slice of the cases, so several processes can share an evaluation
    ways = args.ways.split(",")
    for way in ways:  # a typo stops here, not after the first ways' hours
        parse_way(way)
    results: dict[str, dict] = {}
    total = len(ways) * len(cases)
    start, done = time.time(), 0
    for way in ways:
        rows, secs, aligns, choices = [], [], [], []
        for case in cases:
            prompt, seed = case[0], case[-1]
            t0 = time.time()
            latent, run = bench.run(way, prompt, seed)
            secs.append(time.time() - t0)
            rows.append(score_any(testbed, latent, case))
            if run is not None:
                al = alignment(run, latent, testbed, case[1], case[3]) if len(case) == 5 else None
                if al:
                    aligns.append(al)
                if run.choice is not None:  # --blocks maps: what the run chose, and the seconds it took
                    choices.append({"kept": ",".join(run.choice["kept"]), "seconds": run.choice["seconds"]})
            done += 1
            bar(done, total, start, f"{way:>16}")
        results[way] = summarize(rows, secs, aligns)
        if choices:
            kept: dict[str, int] = {}
            for c in choices:
                kept[c["kept"]] = kept.get(c["kept"], 0) + 1
            results[way]["maps_choice"] = {"kept": dict(sorted(kept.items(), key=lambda kv: -kv[1])),
                                           "seconds_mean": sum(c["seconds"] for c in choices) / len(choices),
                                           "n": len(choices)}
        results[way]["raw"] = {"rows": [{k2: r[k2] for k2 in ("correct", "drawn", "pse", "missing_subject",
                                                              "missing_object", "visor", "geneval", "t2i_compbench",
                                                              "relation", "rel_correct", "parts", "max_abs")
                                         if k2 in r} for r in rows], "secs": secs, "aligns": aligns}
        report = {"config": cfg.__dict__, "arch": args.arch, "blocks": args.blocks, "patch": args.patch,
                  "max_step": args.max_step,
                  "checkpoint": str(ckpt), "lora": args.lora,
                  "lora_strength": args.lora_strength, "validation": args.validation, "objects": args.objects,
                  "cases": args.n, "part": args.part, "held_out": not args.seen, "steps": STEPS, "cfg": CFG,
                  "sampler": SAMPLER, "ways": results}
        if args.out:  # after every way, so a long run keeps what it finished
            Path(args.out).mkdir(parents=True, exist_ok=True)
            Path(args.out, "results.json").write_text(json.dumps(report, indent=1))
    table = markdown(report)
    print(table)
    if args.out:  # results.json is already written after the last way
        Path(args.out, "table.md").write_text(table + "\n")
    return 0


def choose_scale(results: dict[float, dict], in_range: bool = False) -> float:
    """The grid scale with the highest validation relation accuracy (with `in_range`: counting only cases
    whose latent also stays in range, IN_RANGE, so a scale that wins by throwing latents out of what the
    model draws is not chosen); ties go to the higher mean PSE, then to the smaller scale (the gentler push)."""
    key = "correct_in_range" if in_range else "relation_accuracy"
    return min(results, key=lambda sc: (-results[sc][key], -results[sc]["mean_pse"], sc))


def tune_scales(bench, way: str, grid: list[float], cases: list) -> dict[float, dict]:
    """{scale: validation figures} of `way` (one of SCALED) at every grid scale, on `cases`."""
    import testbed

    if way not in SCALED:
        raise ValueError(f"tune: {way!r} takes no scale; one of {', '.join(SCALED)}")
    results: dict[float, dict] = {}
    start, done, total = time.time(), 0, len(grid) * len(cases)
    for scale in grid:
        name = f"{way}@{scale:g}"
        rows = []
        for case in cases:
            rows.append(score_any(testbed, bench.run(name, case[0], case[-1])[0], case))
            done += 1
            bar(done, total, start, f"{name:>16}")
        results[scale] = {"way": name, "n": len(rows),
                          "relation_accuracy": sum(r["correct"] for r in rows) / len(rows),
                          "object_accuracy": sum(r["drawn"] for r in rows) / len(rows),
                          "mean_pse": sum(float(r["pse"] or 0.0) for r in rows) / len(rows),
                          "in_range": sum(r["max_abs"] <= IN_RANGE for r in rows) / len(rows),
                          "correct_in_range": sum(right_in_range(r) for r in rows) / len(rows)}
    return results


def cmd_tune(args) -> int:
    """Run `args.way` at every scale of the grid on validation cases, print the table and the chosen scale."""
    import testbed

    cfg = config_from(args)
    ckpt = Path(args.checkpoint) if args.checkpoint else arch(args).checkpoint_path(cfg)
    if not ckpt.exists():
        sys.exit(f"effect.py tune: no trained testbed at {ckpt} (run `effect.py train` first)")
    cases = cases_of(args.objects, args.n_val, validation=True, val_pairs=args.val_pairs)
    reported = cases_of(args.objects, args.n_report)
    shared = {c[-1] for c in cases} & {c[-1] for c in reported}
    if shared:  # validation_cases is built to make this impossible; say so loudly if it ever is not
        sys.exit(f"effect.py tune: validation and reported cases share noise seeds {sorted(shared)[:5]}")
    grid = [float(v) for v in args.grid.split(",") if v.strip()]
    if not grid:
        sys.exit("effect.py tune: --grid names no scale")
    bench = Bench(ckpt, arch(args), args.blocks, args.patch, max_step=args.max_step)
    results = tune_scales(bench, args.way, grid, cases)
    chosen = choose_scale(results, args.in_range)
    lines = [f"Tuning `{args.way}` on {len(cases)} {args.objects}-object validation cases ({args.val_pairs} pairs, noise seeds "
             f"{cases[0][-1]}..{max(c[-1] for c in cases)}; no case shared with eval's first {args.n_report}); chosen by "
             f"{'right and in range' if args.in_range else 'relation accuracy'}", "",
             f"| scale | {'all relations right' if args.objects == 3 else 'relation accuracy'} % | objects drawn % | "
             f"mean PSE | latent in range % | right and in range % |", "|---|---|---|---|---|---|"]
    lines += [f"| {sc:g}{' (chosen)' if sc == chosen else ''} | {100 * r['relation_accuracy']:.1f} | "
              f"{100 * r['object_accuracy']:.1f} | {r['mean_pse']:.3f} | {100 * r['in_range']:.1f} | "
              f"{100 * r['correct_in_range']:.1f} |" for sc, r in results.items()]
    print("\n".join(lines))
    out = {"way": args.way, "chosen_scale": chosen, "report_as": f"{args.way}@{chosen:g}", "val_pairs": args.val_pairs,
           "chosen_by": "correct_in_range" if args.in_range else "relation_accuracy", "max_step": args.max_step,
           "objects": args.objects,
           "n_val": len(cases), "grid": grid, "checkpoint": str(ckpt),
           "results": {f"{sc:g}": r for sc, r in results.items()}}
    print(f"chosen scale for {args.way}: {chosen:g}  (evaluate it with: effect.py eval --ways {out['report_as']})")
    print(json.dumps({k: out[k] for k in ("way", "chosen_scale", "report_as")}))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "tune.json").write_text(json.dumps(out, indent=1))
    return 0


def summarize(rows: list[dict], secs: list[float], aligns: list[dict]) -> dict:
    from pos_core import evaluate

    correct = [float(r["correct"]) for r in rows]
    drawn = [float(r["drawn"]) for r in rows]
    pse = [float(r["pse"] or 0.0) for r in rows]
    agg = evaluate.summarize([r.get("parts", [r]) for r in rows])  # a three-object row: its two relations
    out = {"relation_accuracy": bootstrap(correct), "object_accuracy": bootstrap(drawn), "mean_pse": bootstrap(pse),
           "visor_cond": agg.get("visor", {}).get("VISOR_cond"), "pse_accuracy": agg["accuracy"],
           "seconds_per_image": sum(secs) / len(secs), "n": len(rows)}
    if rows and all("max_abs" in r for r in rows):  # latents the model could have drawn (see IN_RANGE)
        out["in_range"] = bootstrap([float(r["max_abs"] <= IN_RANGE) for r in rows])
        out["correct_in_range"] = bootstrap([float(right_in_range(r)) for r in rows])
        out["max_abs_median"] = sorted(r["max_abs"] for r in rows)[len(rows) // 2]
    if rows and "rel_correct" in rows[0]:  # three objects: the fraction of a case's relations right
        out["per_relation"] = bootstrap([float(r["rel_correct"]) for r in rows])
    if aligns:
        own = [float(v) for a in aligns for v in a["own_nearer"]]
        mass = [v for a in aligns for v in a["mass_in_own"]]
        out["alignment"] = {"centroid_nearer_own": sum(own) / len(own), "mass_in_own": sum(mass) / len(mass),
                            "n": len(own)}
    return out


def markdown(report: dict) -> str:
    def ci(t):
        return f"{100 * t[0]:.1f} [{100 * t[1]:.1f}, {100 * t[2]:.1f}]"

    blocks = f", blocks {report['blocks']}" if report.get("arch") == "flux" else ""
    three = report.get("objects", 2) == 3
    three_cfg = report["config"].get("three") or 0
    lines = [f"Testbed ({report.get('arch', 'unet')}{blocks}{f', trained with {three_cfg:g} three-object scenes' if three_cfg else ''}) "
             f"`{report['config']['encoder']}` encoder, up to {report['cases']} "
             f"{'held-out' if report['held_out'] else 'seen'} {'three-object ' if three else ''}(prompt, seed) cases, "
             f"{report['sampler']} {report['steps']} steps, cfg {report['cfg']}",
             "",
             f"| way | cases | {'all relations right' if three else 'relation accuracy'} % [95 % CI] | "
             f"{'per-relation % [95 % CI] | ' if three else ''}objects drawn % [95 % CI] | mean PSE | VISOR cond % "
             "| s / image |",
             f"|---|---|---|{'---|' if three else ''}---|---|---|---|"]
    for way, r in report["ways"].items():
        vc = r["visor_cond"]
        per = f"{ci(r['per_relation'])} | " if three and "per_relation" in r else ("- | " if three else "")
        lines.append(f"| {way} | {r['n']} | {ci(r['relation_accuracy'])} | {per}{ci(r['object_accuracy'])} | "
                     f"{r['mean_pse'][0]:.3f} | {'-' if vc is None else f'{vc:.1f}'} | {r['seconds_per_image']:.2f} |")
    rng = [(w, r) for w, r in report["ways"].items() if "in_range" in r]
    if rng:
        lines += ["", f"| way | latent in range (max model-space value <= {IN_RANGE:g}) % [95 % CI] | right and in range % "
                      "[95 % CI] | median max model-space value |", "|---|---|---|---|"]
        lines += [f"| {w} | {ci(r['in_range'])} | {ci(r['correct_in_range'])} | {r['max_abs_median']:.2f} |" for w, r in rng]
    al = [(w, r["alignment"]) for w, r in report["ways"].items() if "alignment" in r]
    if al:
        lines += ["", "| way | token map centroid nearer its own object | map mass on its own object | maps |",
                  "|---|---|---|---|"]
        lines += [f"| {w} | {100 * a['centroid_nearer_own']:.1f} % | {100 * a['mass_in_own']:.1f} % | {a['n']} |"
                  for w, a in al]
    ch = [(w, r["maps_choice"]) for w, r in report["ways"].items() if "maps_choice" in r]
    if ch:
        lines += ["", "| way | blocks kept by maps (cases) | decision pass, mean s |", "|---|---|---|"]
        for w, c in ch:
            kept = ", ".join(f"{k or 'auto'} x{v}" for k, v in c["kept"].items())
            lines.append(f"| {w} | {kept} | {c['seconds_mean']:.3f} |")
    return "\n".join(lines)


def cmd_table(args) -> int:
    """One table from several eval runs' results.json (ways run in separate processes, same cases)."""
    sys.path.insert(0, str(ROOT))
    reports = [json.loads(Path(d, "results.json").read_text()) for d in args.dirs]
    merged = dict(reports[0], ways={})
    raw: dict[str, dict] = {}
    for r in reports:
        key = ("checkpoint", "held_out", "lora", "validation", "objects")
        if [r.get(k) for k in key] != [merged.get(k) for k in key]:
            sys.exit("effect.py table: the runs used different checkpoints, LoRAs or case sets")
        for way, res in r["ways"].items():  # parts of one way are pooled, then summarised again
            acc = raw.setdefault(way, {"rows": [], "secs": [], "aligns": []})
            for key in acc:
                acc[key] += res["raw"][key]
    for way, acc in raw.items():
        merged["ways"][way] = {**summarize(acc["rows"], acc["secs"], acc["aligns"]), "raw": acc}
    merged["cases"] = max(len(acc["rows"]) for acc in raw.values())
    table = markdown(merged)
    print(table)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "results.json").write_text(json.dumps(merged, indent=1))
        Path(args.out, "table.md").write_text(table + "\n")
    return 0


def paired(a: list[float], b: list[float], reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over the same cases and its bootstrap 95 % interval (cases resampled together)."""
    if len(a) != len(b) or not a:
        raise ValueError("paired: the two ways must have the same, non-empty cases")
    return bootstrap([x - y for x, y in zip(a, b)], reps, seed)


def cmd_paired(args) -> int:
    """Paired differences A - B (DIR:WAY each, same cases) of every per-case figure, in points."""
    def rows(spec: str) -> tuple[dict, list[dict]]:
        folder, _, way = spec.rpartition(":")
        r = json.loads(Path(folder, "results.json").read_text())
        return r, r["ways"][way]["raw"]["rows"]

    (ra, a), (rb, b) = rows(args.a), rows(args.b)
    for key in ("checkpoint", "held_out", "validation", "objects"):
        if ra.get(key) != rb.get(key):
            sys.exit(f"effect.py paired: the runs differ in {key}")
    cols = [("correct", "all relations right" if ra.get("objects") == 3 else "relation accuracy")]
    if "rel_correct" in a[0]:
        cols.append(("rel_correct", "per-relation"))
    cols.append(("drawn", "objects drawn"))
    if all("max_abs" in x for x in a + b):  # right with the latent in range (IN_RANGE), when both runs recorded it
        for x in a + b:
            x["correct_in_range"] = right_in_range(x)
        cols.append(("correct_in_range", "right and in range"))
    out = {}
    for key, label in cols:
        m, lo, hi = paired([float(x[key]) for x in a], [float(x[key]) for x in b])
        out[key] = (m, lo, hi)
        print(f"{args.a} - {args.b}: {label} {100 * m:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}] (n = {len(a)})")
    print(json.dumps({"a": args.a, "b": args.b, "n": len(a), **out}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="merge eval runs (results.json folders) into one table")
    t.add_argument("dirs", nargs="+")
    t.add_argument("--out", default="")
    pr = sub.add_parser("paired", help="paired differences A - B of two ways on the same cases (DIR:WAY each)")
    pr.add_argument("a")
    pr.add_argument("b")
    for name in ("train", "eval", "tune"):
        p = sub.add_parser(name, help="choose a way's scale on validation cases disjoint from eval's"
                           if name == "tune" else None)
        p.add_argument("--encoder", choices=("isolated", "mixing"), default="isolated",
                       help="isolated: CLIP tokens do not mix (object tokens carry location); "
                            "mixing: the random CLIP as it is")
        p.add_argument("--steps", type=int, default=2400, help="training steps (batch 32; about 19 min on 2 CPU cores)")
        p.add_argument("--relation-noise", type=float, default=0.0, help="fraction of scenes placed at random")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--three", type=float, default=0.0,
                       help="fraction of training scenes with three objects (the mixed testbed; 0: two objects only)")
        p.add_argument("--arch", choices=("unet", "flux", "zimage"), default="unet",
                       help="unet: the SD1-family testbed; flux: the Flux-family one (same scenes and text)")
        if name == "train":
            p.add_argument("--snapshots", default="", help="comma-separated steps to also save checkpoints at")
            p.add_argument("--init", default="", help="continue training from this testbed checkpoint")
        if name == "eval":
            p.add_argument("--n", type=int, default=200, help="held-out (prompt, seed) cases")
            p.add_argument("--ways", default="unguided,psg@20,psg@5,psg@80,search-attention,search-pse",
                           help="comma-separated: unguided, psg@S, center@S, layout, layout+psg[@S], "
                                "psg+search[@S], search-attention, search-pse")
            p.add_argument("--seen", action="store_true", help="cases on training pairs instead of held-out ones")
            p.add_argument("--part", default="0/1", help="k/K: evaluate every K-th case from the k-th (parallel runs)")
            p.add_argument("--lora", default="", help="apply this LoRA file to the testbed model first")
            p.add_argument("--lora-strength", type=float, default=1.0, help="--lora's strength (Load LoRA's)")
            p.add_argument("--validation", action="store_true",
                           help="validation cases (pos_core.scenes.validation_cases) instead of the reported ones")
        if name == "tune":
            p.add_argument("--way", required=True, choices=SCALED, help="the scale-bearing way whose scale to choose")
            p.add_argument("--grid", default=TUNE_GRID, help="comma-separated scales to try")
            p.add_argument("--n-val", type=int, default=60, help="validation (prompt, seed) cases")
            p.add_argument("--in-range", action="store_true",
                           help="choose the scale by relations right with the latent in range (IN_RANGE), not by "
                                "relations right alone")
            p.add_argument("--val-pairs", choices=("held", "seen"), default="held",
                           help="held: the held-out object pairs with noise seeds no eval case uses; seen: the "
                                "training pairs (pos_core.scenes.validation_cases)")
            p.add_argument("--n-report", type=int, default=1000,
                           help="check disjointness against eval's first N cases (eval --n up to this)")
        if name in ("eval", "tune"):
            p.add_argument("--objects", type=int, choices=(2, 3), default=2,
                           help="3: three-object cases, two relations sharing their object (pos_core.scenes."
                                "eval_cases3 / validation_cases3); scored as all relations right")
            p.add_argument("--out", default="", help="folder for results.json and table.md (tune: tune.json)")
            p.add_argument("--checkpoint", default="", help="evaluate this testbed checkpoint file instead")
            p.add_argument("--max-step", type=float, default=-1.0,
                           help="PoS Guidance's max_step for every guided way (-1 = the family's default: 0 on "
                                "UNets, 0.3 on Flux / SD3; 0 = no cap, the paper's step)")
            p.add_argument("--patch", default="", choices=("",) + PATCHES,
                           help="run every way beside this stock model patch at its defaults (PoS Guidance after it)")
            p.add_argument("--blocks", default="auto",
                           help="--arch flux: the blocks input of PoS Guidance and PoS Seed Search (e.g. s0,s1, or maps)")
    args = ap.parse_args(argv)
    if args.cmd == "table":
        return cmd_table(args)
    if args.cmd == "paired":
        return cmd_paired(args)
    setup()
    if args.cmd == "tune":
        return cmd_tune(args)
    return cmd_train(args) if args.cmd == "train" else cmd_eval(args)


if __name__ == "__main__":
    sys.exit(main())
