"""`python -m pos_core bench run ...`: the argument parser and the command (imports Ray only when run)."""

from __future__ import annotations

import argparse
import sys

HELP = """Generate a benchmark's images with ComfyUI servers and score them with PSE and the baselines, over a
Ray cluster (local by default). Work unit: prompt x seed x config. Restarting the same command resumes:
finished units are skipped, failed attempts retried (--retries), then recorded as failed."""


def add_bench_parser(sub) -> None:
    """Add `bench` (with `run`) to the subcommands of `python -m pos_core`."""
    b = sub.add_parser("bench", help="benchmark reproduction on Ray: generate with ComfyUI, score, tabulate",
                       description=HELP)
    bsub = b.add_subparsers(dest="bench_command", required=True)
    r = bsub.add_parser("run", help="run or resume a benchmark", description=HELP)
    r.add_argument("--prompts", required=True,
                   help="sr2d (VISOR's SR2D, built here), geneval-position:FILE, t2i-spatial:FILE, "
                        "sr4g-test-seen:FILE, sr4g-test-unseen:FILE (FILE: the benchmark's own prompt file, or "
                        "SR4G's triplets.jsonl), or a JSONL (prompt, optional prompt_id) / text file")
    r.add_argument("--configs", required=True,
                   help="YAML: configs: [{name, workflow (shipped name or path, UI or API format), checkpoint, "
                        "overrides: {guided, scale, fraction, steps, cfg, width, height, NODE.input, ...}}], "
                        "optional defaults: and scoring: {detector, sam, depth, models_dir, threshold}")
    r.add_argument("--out", required=True, help="output folder (images/, shards/, summary.md, chart.png)")
    r.add_argument("--seeds", type=int, default=4, help="images per prompt and config (default 4)")
    r.add_argument("--address", help="Ray cluster address (ray://HOST:10001 or auto); default: a local Ray")
    r.add_argument("--workers", type=int, help="generation workers, each with its own ComfyUI server "
                                                "(default: one per GPU of the cluster, 1 without GPUs)")
    r.add_argument("--scorers", type=int, default=1, help="scoring workers (default 1)")
    r.add_argument("--comfyui", help="ComfyUI checkout each worker starts main.py from (default $COMFYUI_PATH)")
    r.add_argument("--url", dest="urls", action="append", default=[],
                   help="use this running ComfyUI server instead of starting one (repeatable, one worker each)")
    r.add_argument("--checkpoints", help="checkpoint folder the servers see (default <comfyui>/models/checkpoints)")
    r.add_argument("--comfy-arg", dest="extra_args", action="append", default=[],
                   help="extra argument for main.py (repeatable), e.g. --comfy-arg=--fp16-vae")
    r.add_argument("--threads", type=int, help="CPU threads per server without GPUs (default: cores / workers)")
    r.add_argument("--detector", help="detector folder or hub name (overrides scoring.detector)")
    r.add_argument("--sam", help="SAM folder or hub name for masks")
    r.add_argument("--depth", help="Depth Anything folder or hub name, for front / behind")
    r.add_argument("--models-dir", action="append", default=[], help="folder to look for models in (repeatable)")
    r.add_argument("--threshold", type=float, help="box threshold (-1: the authors')")
    r.add_argument("--device", help="scoring device: auto (default), cpu, cuda")
    r.add_argument("--retries", type=int, default=2, help="retries of a failing unit before it is recorded failed")
    r.add_argument("--batch-size", type=int, default=8, help="images per scoring call (default 8)")
    r.add_argument("--shard-size", type=int, default=32, help="rows per Parquet shard (default 32)")
    r.add_argument("--limit", type=int, help="use this many prompts of the set (a fixed random sample)")
    r.add_argument("--base-seed", type=int, default=0, help="changes every unit's seed (default 0)")
    r.add_argument("--scorer-gpus", type=float, default=0.2,
                   help="GPU share of a scoring worker on a GPU cluster; each generation worker then takes the rest "
                        "of its GPU (default 0.2; 0: score on the CPU)")
    r.add_argument("--unit-timeout", type=float, default=1800.0, help="seconds one image may take (default 1800)")
    r.set_defaults(func=run_command)


# the modules `bench run` imports that ComfyUI does not install (requirements-bench.txt)
BENCH_MODULES = ("ray", "pyarrow")


def import_problem(module: str) -> str | None:
    """None if `module` imports; else a message naming the module and the cause: not installed, or
    installed (which version) but failing to import, with the ImportError's own text (e.g. pyarrow 26
    beside the numpy < 2 that ComfyUI-Manager installs: "pyarrow requires NumPy 2.0 or newer")."""
    from importlib import import_module, metadata

    try:
        import_module(module)
        return None
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and e.name == module:
            return f"{module} is not installed: pip install -r requirements-bench.txt"
        try:
            installed = f"{module} {metadata.version(module)} is installed"
        except metadata.PackageNotFoundError:
            installed = f"{module} is installed"
        return (f"{installed} but does not import: {type(e).__name__}: {e}\n"
                f"requirements-bench.txt names the versions the bench needs (pyarrow < 26 for NumPy 1.x, "
                f"which ComfyUI-Manager installs): pip install -r requirements-bench.txt")


def run_command(args: argparse.Namespace) -> int:
    for module in BENCH_MODULES:
        problem = import_problem(module)
        if problem:
            print(f"bench: {problem}", file=sys.stderr)
            return 2
    from .runner import Options, run

    fields = set(Options.__dataclass_fields__)
    opts = Options(**{k: v for k, v in vars(args).items() if k in fields})
    try:
        result = run(opts)
    except ValueError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"bench: {e}\nrestart the same command to resume", file=sys.stderr)
        return 1
    print(f"bench: {result['made']} units made ({result['failed']} failed), {result['skipped']} were done before; "
          f"summary in {args.out}/summary.md")
    return 0 if not result["failed"] else 1
