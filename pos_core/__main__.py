"""Command line: `python -m pos_core parse "PROMPT"` / `parse --file PATH`, `evaluate` (PSE of a folder), `demo`."""

from __future__ import annotations

import argparse
import json
import sys

from .relations import parse


def _parse_command(args: argparse.Namespace) -> int:
    if (args.prompt is None) == (args.file is None):
        print("parse: give one PROMPT or --file PATH", file=sys.stderr)
        return 2
    if args.prompt is not None:
        prompts = [args.prompt]
    else:
        try:
            with open(args.file, encoding="utf-8") as f:
                prompts = [line.rstrip("\r\n") for line in f]
        except OSError as e:
            print(f"parse: cannot read --file {args.file!r}: {e.strerror}", file=sys.stderr)
            return 2
    for prompt in prompts:
        rels = [r.to_json() for r in parse(prompt)]
        print(json.dumps({"prompt": prompt, "relations": rels}, ensure_ascii=False))
    return 0


def _evaluate_command(args: argparse.Namespace) -> int:
    import os

    from . import evaluate

    try:
        records = evaluate.load_records(args.images, args.prompts)
        if not records:
            print(f"evaluate: no images to score in {args.images!r}", file=sys.stderr)
            return 2
        detector = depth = None
        if args.device == "auto":
            import torch

            args.device = "cuda" if torch.cuda.is_available() else "cpu"
        if args.detector:
            from .detect import load_detector

            detector = load_detector(args.detector, args.models_dir, args.sam, args.device)
        if args.depth:
            from .detect import load_depth

            depth = load_depth(args.depth, args.models_dir, args.device)
        rows, summary = evaluate.evaluate_records(
            records, detector, depth, args.threshold,
            progress=lambda k, n: print(f"\rscored {k}/{n}", end="", file=sys.stderr))
        print(file=sys.stderr)
    except ValueError as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "per_image.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    table = evaluate.summary_table(summary)
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    evaluate.summary_chart(summary, os.path.join(args.out, "chart.png"))
    print(table)
    print(f"\nwrote per_image.jsonl, summary.json, summary.md and chart.png to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m pos_core`."""
    ap = argparse.ArgumentParser(prog="python -m pos_core", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parse", help="print the spatial relations of prompts as JSON")
    p.add_argument("prompt", nargs="?", help="one prompt")
    p.add_argument("--file", help="a text file with one prompt a line; prints one JSON object a line")
    p.set_defaults(func=_parse_command)
    e = sub.add_parser("evaluate", help="PSE (and VISOR / GenEval / T2I-CompBench) of a folder of images")
    e.add_argument("--images", required=True, help="folder of images")
    e.add_argument("--prompts", required=True,
                   help="JSONL with image, prompt and optional objects (phrase -> mask file or boxes), or a "
                        "text file with one prompt a line and images named <line index>_*.png")
    e.add_argument("--detector", help="detector folder or hub name (Grounding DINO, OWLv2, OWL-ViT)")
    e.add_argument("--sam", help="SAM folder or hub name for masks from the boxes")
    e.add_argument("--depth", help="Depth Anything folder or hub name, for front / behind")
    e.add_argument("--models-dir", action="append", default=[], help="folder to look for models in (repeatable)")
    e.add_argument("--threshold", type=float, default=-1.0, help="box threshold (-1: the authors')")
    e.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    e.add_argument("--out", default="pos_eval", help="output folder (default: pos_eval)")
    e.set_defaults(func=_evaluate_command)
    from .sr4g.cli import add_parser as add_sr4g

    add_sr4g(sub)
    from .bench.cli import add_bench_parser

    add_bench_parser(sub)
    from .demo import add_parser as add_demo

    add_demo(sub)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
