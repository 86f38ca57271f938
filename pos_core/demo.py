"""`python -m pos_core demo`: relation prompts generated three ways (unguided, PoS Guidance, PoS Seed
Search) by the pack's nodes in a real ComfyUI server, every image scored by PoS Score, and the result
as a grid, a summary table and a chart.

Drives the server over HTTP (`comfy_client`), builds its graphs from the shipped workflows (the bench
runner's `prepare`), summarises like `evaluate` and the bench (`bench.report`); the built-in model is
the effect testbed's, trained on first use by `benchmarks/effect.py train` in a subprocess. No `comfy`
import here: the demo's own process never loads a model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .comfy_client import PACK_ROOT, ComfyError, ComfyServer, api_to_ui, free_port
from .relations import AXIS_2D, parse
from .seeds import SCHEME as SEED_SCHEME

COMFYUI_VERSION = "v0.33.0"  # the newest version the host tests run against (docs/comfyui-versions.md)
COMFYUI_URL = "https://github.com/comfyanonymous/ComfyUI"
WAYS = {"unguided": "unguided", "guidance": "PoS Guidance", "seed_search": "PoS Seed Search"}
BUILTIN = "built-in testbed model"
# the built-in model's training: the testbed's reduced 1200-step version (about 8-10 min on 2 CPU cores,
# so a fresh demo fits 20 min; README, Measured effect: guidance adds about 40 points on it)
BUILTIN_TRAIN_STEPS = 1200
# the testbed's sampling (benchmarks/effect.py): 128 px, 20 euler steps, cfg 5, empty negative
BUILTIN_OVERRIDES = {"width": 128, "height": 128, "steps": 20, "cfg": 5.0, "negative": ""}
CHECKPOINT_EXTS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft")
# ids of the nodes the demo adds (numbers: the front end's workflow format needs them)
SAVE, DETECTOR, SCORE, REPORT = "90", "91", "92", "93"
# prompts for a user's checkpoint (2D: depth needs a Depth Anything model the demo does not assume)
CHECKPOINT_PROMPTS = [
    "a photo of a cat to the left of a dog", "a photo of a dog to the right of a car",
    "a red apple above a blue cup", "a clock below a bird", "a chair on the left of a table",
    "a bicycle to the right of a bench", "a lamp above a sofa", "a book under a vase",
    "a photo of a horse left of a cow", "a banana on the right of an orange", "a kite over a house",
    "a teddy bear beneath a chair", "a laptop to the left of a potted plant", "a boat to the right of a lighthouse",
    "a balloon above a tree", "a suitcase below a clock"]


class DemoError(RuntimeError):
    """A user-facing failure with a message that says what to do."""


# --------------------------------------------------------------------------------------- inputs

def builtin_prompts(n: int = 16) -> list[str]:
    """n testbed prompts on held-out object pairs, every relation and phrasing in turn."""
    from . import scenes  # torch: imported only when the demo runs, so `parse` stays torch-free

    _, held = scenes.pair_split(0)
    out = []
    for i in range(n):  # each (pair, relation) once; the relation turns by one on every pass over the pairs
        s, o = held[i % len(held)]
        rel = scenes.RELATIONS[(i + i // len(held)) % len(scenes.RELATIONS)]
        out.append(scenes.prompt(s, rel, o, i % 3))
    return out


def read_prompts(path: str) -> list[str]:
    """Prompts of a text file (one a line; blank lines and # comments skipped), each with a relation."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DemoError(f"--prompts: cannot read {path!r}: {e.strerror}") from None
    prompts = [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]
    if not prompts:
        raise DemoError(f"--prompts: {path!r} has no prompts (one a line)")
    for k, p in enumerate(prompts):
        if not parse(p):
            raise DemoError(f"--prompts: {p!r} has no spatial relation the parser reads "
                            "(e.g. 'a cat to the left of a dog')")
    return prompts


def check_builtin_prompts(prompts: list[str]) -> None:
    """The built-in model draws (and its colour key finds) its own classes only: say so for other nouns."""
    from . import scenes

    for p in prompts:
        unknown = [n for r in parse(p) for n in (r.subject, r.object) if n not in scenes.CLASSES]
        if unknown:
            raise DemoError(f"--prompts: {p!r} names {unknown}, which the built-in model does not know; use "
                            f"{', '.join(scenes.CLASSES)} (or --checkpoint)")


def checkpoint_files(folder: Path) -> list[str]:
    """Checkpoint names in a folder (subfolders as ComfyUI lists them)."""
    if not folder.is_dir():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in CHECKPOINT_EXTS)


def find_checkpoint(name: str, folder: Path) -> str:
    """`name` if it is a checkpoint in `folder`; else DemoError listing the ones there."""
    files = checkpoint_files(folder)
    if name in files:
        return name
    there = "\n  ".join(files) if files else "(none)"
    raise DemoError(f"--checkpoint: no {name!r} in {folder}; the checkpoints there are:\n  {there}")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_port(preferred: int | None) -> int:
    """`preferred` when it is free on loopback, else (saying so) another free port."""
    if preferred and port_free(preferred):
        return preferred
    port = free_port()
    if preferred:
        print(f"port {preferred} is busy; using {port}", file=sys.stderr)
    return port


def cache_dir() -> Path:
    return Path(os.environ.get("POS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "pos_spatial")


def comfyui_checkout() -> Path:
    """$COMFYUI_PATH, else ComfyUI at COMFYUI_VERSION cloned once into the cache folder."""
    given = os.environ.get("COMFYUI_PATH")
    if given:
        if not Path(given, "main.py").is_file():
            raise DemoError(f"COMFYUI_PATH={given!r} has no main.py: point it at a ComfyUI checkout")
        return Path(given).resolve()
    dest = cache_dir() / f"ComfyUI-{COMFYUI_VERSION}"
    if (dest / "main.py").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ComfyUI-clone-", dir=dest.parent))
    print(f"cloning ComfyUI {COMFYUI_VERSION} into {dest} (once)", file=sys.stderr)
    try:
        r = subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", COMFYUI_VERSION, COMFYUI_URL, str(tmp)],
                           env=dict(os.environ, GIT_TERMINAL_PROMPT="0"), capture_output=True, text=True,
                           timeout=600)
        ok = r.returncode == 0 and (tmp / "main.py").is_file()
        detail = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"git exited with {r.returncode}"
    except (OSError, subprocess.TimeoutExpired) as e:
        ok, detail = False, str(e)
    if not ok:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DemoError(f"could not clone ComfyUI {COMFYUI_VERSION} from {COMFYUI_URL} ({detail}); without the "
                        "network, set COMFYUI_PATH to a ComfyUI checkout and run again")
    tmp.rename(dest)
    return dest


def train_builtin(comfyui: Path, steps: int | None = None) -> Path:
    """The testbed checkpoint: trained on first use by `benchmarks/effect.py train` (its progress bar and
    time left on this terminal), cached in $POS_TESTBED_CACHE or ~/.cache/pos_spatial_testbed."""
    cmd = [sys.executable, str(PACK_ROOT / "benchmarks" / "effect.py"), "train"]
    if steps:
        cmd += ["--steps", str(steps)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ, COMFYUI_PATH=str(comfyui)))
    try:
        out, _ = proc.communicate()
    except BaseException:
        proc.terminate()
        proc.wait(30)
        raise
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise DemoError(f"training the built-in model failed (exit {proc.returncode}); see the messages above")
    path = Path(json.loads(lines[-1])["checkpoint"])
    if not path.is_file():
        raise DemoError(f"the trainer reported {path}, which does not exist")
    return path


# --------------------------------------------------------------------------------------- graphs

def load_workflow(name: str) -> dict:
    return json.loads((PACK_ROOT / "workflows" / f"{name}.json").read_text(encoding="utf-8"))


def shipped_detector() -> tuple[str, str]:
    """(detector, sam) of the shipped PoS Guidance workflow's PoS Detector Loader."""
    node = next(n for n in load_workflow("pos_psg_sd15")["nodes"] if n["type"] == "PoSDetectorLoader")
    return node["widgets_values"][0], node["widgets_values"][1]


def _defaults(node: dict, info: dict, names: list[str] | None = None) -> None:
    """Reset a node's widget inputs (or `names`) to the node's own defaults."""
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if (names is None or name in names) and "default" in opts and not isinstance(
                    node["inputs"].get(name), list):
                node["inputs"][name] = opts["default"]


def way_graph(way: str, bases: dict, object_info: dict, prompt: str, seed: int, checkpoint: str,
              detector: tuple[str, str], overrides: dict, prefix: str) -> dict:
    """The API graph of one image: the shipped workflow's generation (bench `prepare`), then PoS Detector
    Loader, PoS Score on the saved image and Preview Any showing the score's JSON report."""
    from .bench.workflow import SAVE_NODE, prepare

    ov = dict(overrides)
    if way == "seed_search":
        # the bench's override names reach KSampler-like nodes only: name PoS Seed Search's inputs and the
        # negative prompt's encoder (the workflow's one CLIPTextEncode) directly
        ov = {k: v for k, v in ov.items() if k not in ("steps", "cfg", "negative")}
        ov.update({f"PoSSeedSearch.{k}": overrides[k] for k in ("steps", "cfg") if k in overrides})
        if "negative" in overrides:
            ov["CLIPTextEncode.text"] = overrides["negative"]
    g = prepare(bases["seed_search" if way == "seed_search" else "psg"], prompt, seed, checkpoint,
                {**ov, "guided": way == "guidance"}, prefix=prefix)
    g[SAVE] = g.pop(SAVE_NODE)
    for nid, node in g.items():
        if node["class_type"] == "PoSGuidance":
            _defaults(node, object_info["PoSGuidance"])
        if node["class_type"] == "PoSSeedSearch":  # candidates, mode and search steps at the node's defaults
            _defaults(node, object_info["PoSSeedSearch"], ["candidates", "mode", "search_steps", "batch_size"])
            if node["inputs"].get("mode") == "attention":
                # the workflow wires the VAE for pse mode; in attention mode it only decodes the candidates'
                # previews (8 full VAE decodes, about 6 s an image on 2 CPU cores), which the demo never shows
                node["inputs"].pop("vae", None)
    rel = next(n for n, v in g.items() if v["class_type"] == "PoSRelationsFromPrompt")
    g[DETECTOR] = {"class_type": "PoSDetectorLoader", "inputs": {"detector": detector[0], "sam": detector[1]}}
    g[SCORE] = {"class_type": "PoSScore", "inputs": {"images": list(g[SAVE]["inputs"]["images"]),
                                                     "relations": [rel, 1], "detector": [DETECTOR, 0],
                                                     "threshold": -1.0}}
    g[REPORT] = {"class_type": "PreviewAny", "inputs": {"source": [SCORE, 2]}}
    return g


def graph_key(graph: dict) -> str:
    """A hash of what makes the image and its score (output file names left out). A PoS Seed Search graph
    also hashes the name of the node's candidate-seed scheme, so a rerun into an OUT made before the
    candidates changed (seed, seed+1, ... until then) makes its seed-search images again."""
    g = json.loads(json.dumps(graph))
    g[SAVE]["inputs"].pop("filename_prefix", None)
    if any(n.get("class_type") == "PoSSeedSearch" for n in g.values()):
        g = {"graph": g, "candidate_seeds": SEED_SCHEME}
    return hashlib.sha1(json.dumps(g, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------- results

def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson 95 % interval of a proportion k / n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def verdict(relations: list[dict]) -> str:
    """'right' (both objects drawn and every 2D relation holds, VISOR), 'wrong', or 'missing'."""
    if any(r["missing_subject"] or r["missing_object"] for r in relations):
        return "missing"
    two_d = [r for r in relations if r.get("relation") in AXIS_2D]
    return "right" if two_d and all(r.get("visor") for r in two_d) else "wrong"


def headline(records: list[dict]) -> dict[str, dict]:
    """way -> n, relation accuracy with its 95 % interval, object accuracy, mean PSE, seconds per image."""
    out = {}
    for way in WAYS:
        rs = [r for r in records if r["way"] == way]
        if not rs:
            continue
        n = len(rs)
        right = sum(verdict(r["relations"]) == "right" for r in rs)
        drawn = sum(verdict(r["relations"]) != "missing" for r in rs)
        out[way] = {"n": n, "relation_accuracy": right / n, "ci": wilson(right, n), "object_accuracy": drawn / n,
                    "mean_pse": sum(r["pse"] for r in rs) / n, "seconds_per_image": sum(r["seconds"] for r in rs) / n}
    return out


def table(records: list[dict]) -> str:
    """The per-way Markdown table (the one printed at the end and at the top of summary.md)."""
    h = headline(records)
    lines = ["| way | images | relation accuracy % [95 % CI] | object accuracy % | mean PSE | s / image |",
             "|---|---|---|---|---|---|"]
    for way, s in h.items():
        lo, hi = s["ci"]
        lines.append(f"| {WAYS[way]} | {s['n']} | {100 * s['relation_accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
                     f" | {100 * s['object_accuracy']:.1f} | {s['mean_pse']:.3f} | {s['seconds_per_image']:.2f} |")
    return "\n".join(lines)


def write_summary(out: Path, records: list[dict], what: str) -> str:
    """OUT/summary.md (the headline table, then `evaluate`'s metrics per way side by side), OUT/chart.png
    and OUT/summary/<way>/ (`evaluate`'s summary per way), through the bench's report writer."""
    from .bench import report

    rows = [{"config": r["way"], "status": "ok", "relations": json.dumps(r["relations"]), "prompt_id": r["prompt"]}
            for r in records]
    side = report.write(str(out), rows, list(WAYS))
    head = table(records)
    text = (f"# PoS spatial demo: {what}\n\n{head}\n\nRelation accuracy: both objects found and every relation "
            "right (VISOR's verdict from the masks); interval: Wilson 95 %. Seconds per image: the server's "
            "whole graph (generation and PoS Score).\n\n## All of `evaluate`'s metrics, per way\n\n"
            f"{side}\n")
    (out / "summary.md").write_text(text, encoding="utf-8")
    return head


def write_grid(out: Path, records: list[dict], tile: int = 192) -> Path:
    """OUT/grid.png: a row per (prompt, seed), a column per way; each tile with its verdict and PSE."""
    from PIL import Image, ImageDraw

    rows: dict[tuple[str, int], dict[str, dict]] = {}
    for r in records:
        rows.setdefault((r["prompt"], r["seed"]), {})[r["way"]] = r
    label_w, head, foot = 260, 28, 22
    grid = Image.new("RGB", (label_w + tile * len(WAYS), head + (tile + foot) * len(rows)), "white")
    d = ImageDraw.Draw(grid)
    for c, name in enumerate(WAYS.values()):
        d.text((label_w + c * tile + 8, 8), name, fill="black")
    colours = {"right": (30, 150, 60), "wrong": (200, 40, 40), "missing": (150, 150, 150)}
    for i, ((prompt, seed), ways) in enumerate(rows.items()):
        y = head + i * (tile + foot)
        words, line, lines = prompt.split(), "", []
        for w in words:
            if len(line) + len(w) > 36:
                lines.append(line)
                line = ""
            line = f"{line} {w}".strip()
        lines += [line, f"seed {seed}"]
        for k, l in enumerate(lines):
            d.text((8, y + 8 + 14 * k), l, fill="black")
        for c, way in enumerate(WAYS):
            r = ways.get(way)
            if r is None:
                continue
            x = label_w + c * tile
            im = Image.open(out / r["image"]).convert("RGB").resize((tile - 8, tile - 8), Image.NEAREST)
            v = verdict(r["relations"])
            d.rectangle([x, y, x + tile - 1, y + tile - 1], fill=colours[v])
            grid.paste(im, (x + 4, y + 4))
            d.text((x + 6, y + tile + 4), f"{v}  PSE {r['pse']:.2f}", fill=colours[v])
    path = out / "grid.png"
    grid.save(path)
    return path


class Bar:
    """One-line progress over the whole run with an estimate of the time left (stderr)."""

    def __init__(self, total: int):
        self.total, self.start, self.done = total, time.time(), 0

    def step(self, what: str, done: int | None = None) -> None:
        self.done = self.done + 1 if done is None else done
        el = time.time() - self.start
        left = el / self.done * (self.total - self.done) if self.done else 0.0
        n = int(30 * self.done / self.total)
        print(f"\r[{'#' * n}{'.' * (30 - n)}] {self.done}/{self.total} {el:4.0f} s, ~{left:4.0f} s left  "
              f"{what[:48]:<48}", end="", file=sys.stderr, flush=True)
        if self.done == self.total:
            print(file=sys.stderr)


# --------------------------------------------------------------------------------------- the run

def run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    comfy = comfyui_checkout()
    if args.checkpoint:
        ckpt_dir = comfy / "models" / "checkpoints"
        ckpt = find_checkpoint(args.checkpoint, ckpt_dir)
        prompts = read_prompts(args.prompts) if args.prompts else list(CHECKPOINT_PROMPTS)
        overrides: dict = {}
        what = f"checkpoint {ckpt}"
    else:
        prompts = read_prompts(args.prompts) if args.prompts else builtin_prompts()
        check_builtin_prompts(prompts)
        path = train_builtin(comfy, args.train_steps)
        ckpt_dir, ckpt = path.parent, path.name
        overrides = dict(BUILTIN_OVERRIDES)
        what = f"{BUILTIN} ({ckpt})"
    if args.limit:
        prompts = prompts[:args.limit]
    seeds = [1000 + k for k in range(args.seeds)]
    models = {"pos_models": str(comfy / "models" / "pos_models")} if (comfy / "models" / "pos_models").is_dir() else {}
    detector = ("pos-testbed-colors", "none") if not args.checkpoint else shipped_detector()
    if args.detector:
        detector = (args.detector, "none")
    out.mkdir(parents=True, exist_ok=True)
    done = {}
    results = out / "results.jsonl"
    if results.exists():  # a rerun reuses the images it already made for the same graphs
        for line in results.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            if (out / r["image"]).is_file():
                done[r["key"]] = r
    total = len(prompts) * len(seeds) * len(WAYS)
    print(f"demo: {len(prompts)} prompts x {len(seeds)} seed(s) x {len(WAYS)} ways = {total} images on {what}",
          file=sys.stderr)
    scratch = Path(tempfile.mkdtemp(prefix="pos_demo_server_"))
    server = None
    records: list[dict] = []
    try:
        t0 = time.time()
        try:
            server = ComfyServer.start(comfy, scratch, port=pick_port(args.port), checkpoints=ckpt_dir, models=models,
                                       extra_args=["--use-pytorch-cross-attention"], start_timeout=600)
        except ComfyError as e:
            raise DemoError(f"the ComfyUI server did not start: {e}") from None
        print(f"ComfyUI {comfy} on {server.url} ({'GPU' if '--cpu' not in server.proc.args else 'CPU'}), "
              f"started in {time.time() - t0:.0f} s", file=sys.stderr)
        info = server.object_info()
        missing = [n for n in ("PoSScore", "PoSGuidance", "PoSSeedSearch", "PreviewAny") if n not in info]
        if missing:
            raise DemoError(f"the server lacks nodes {missing}; its log:\n{server.log_tail()}")
        bases = {"psg": server.to_api(load_workflow("pos_psg_sd15")),
                 "seed_search": server.to_api(load_workflow("pos_seed_search"))}
        bar = Bar(total)
        with open(results, "a", encoding="utf-8") as log:
            for i, prompt in enumerate(prompts):
                for seed in seeds:
                    for way in WAYS:
                        name = f"images/{way}/p{i:02d}_s{seed}"
                        g = way_graph(way, bases, info, prompt, seed, ckpt, detector, overrides, f"pos_demo/{way}")
                        key = graph_key(g)
                        if key in done:
                            records.append(done[key])
                            bar.step(f"(cached) {way}: {prompt}")
                            continue
                        t = time.time()
                        outputs = server.run(g, extra_data={"extra_pnginfo": {"workflow": api_to_ui(g, info)}})
                        secs = time.time() - t
                        png = server.images(outputs, SAVE)
                        reports = outputs.get(REPORT, {}).get("text") or []
                        if len(png) != 1 or not reports:
                            raise DemoError(f"the server returned {len(png)} images and {len(reports)} scores "
                                            f"for {prompt!r} ({way})")
                        (out / name).parent.mkdir(parents=True, exist_ok=True)
                        (out / f"{name}.png").write_bytes(png[0])
                        rep = json.loads(reports[0])["images"][0]
                        rec = {"key": key, "way": way, "prompt": prompt, "seed": seed, "image": f"{name}.png",
                               "pse": rep["pse"], "relations": rep["relations"], "seconds": round(secs, 3),
                               "checkpoint": ckpt}
                        records.append(rec)
                        log.write(json.dumps(rec) + "\n")
                        log.flush()
                        bar.step(f"{way}: {prompt}")
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the ComfyUI server", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
            shutil.copyfile(server.log, out / "comfyui.log")
        shutil.rmtree(scratch, ignore_errors=True)
    head = write_summary(out, records, what)
    grid = write_grid(out, records)
    print(head)
    print(f"\nwrote {grid}, {out / 'summary.md'}, {out / 'chart.png'} and the images (workflows embedded) "
          f"under {out / 'images'}")
    return 0


def command(args: argparse.Namespace) -> int:
    try:
        if args.comfyui_path:
            print(comfyui_checkout())
            return 0
        return run(args)
    except DemoError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    except ComfyError as e:
        print(f"demo: ComfyUI failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def add_parser(sub) -> None:
    """The `demo` subcommand of `python -m pos_core`."""
    p = sub.add_parser("demo", help="relation prompts made three ways (unguided, PoS Guidance, PoS Seed Search) "
                                    "in a ComfyUI server, scored by PoS Score: grid, table and chart")
    env = os.environ.get  # POS_DEMO_*: defaults a test (or a script) sets around the command as written
    p.add_argument("--out", default=env("POS_DEMO_OUT", "pos_demo"), help="output folder (default: pos_demo)")
    p.add_argument("--checkpoint", help="a checkpoint file in ComfyUI's models/checkpoints (default: the built-in "
                                        "testbed model, trained on first use)")
    p.add_argument("--prompts", help="text file of prompts, one a line (default: the built-in set of 16)")
    p.add_argument("--seeds", type=int, default=int(env("POS_DEMO_SEEDS", 2)), help="seeds per prompt (default: 2)")
    p.add_argument("--limit", type=int, default=int(env("POS_DEMO_LIMIT", 0)), help="use only the first N prompts")
    p.add_argument("--detector", help="PoS Detector Loader's detector for --checkpoint (default: the shipped "
                                      "workflow's)")
    p.add_argument("--port", type=int, default=0, help="loopback port for the server (default: a free one; a busy "
                                                       "one is replaced by a free one)")
    p.add_argument("--train-steps", type=int, default=int(env("POS_DEMO_TRAIN_STEPS", BUILTIN_TRAIN_STEPS)),
                   help=f"training steps of the built-in model (default: {BUILTIN_TRAIN_STEPS}, the testbed's reduced "
                        "version; 2400 is the full testbed)")
    p.add_argument("--comfyui-path", action="store_true", help="only find (or clone) ComfyUI and print its path")
    p.set_defaults(func=command)
