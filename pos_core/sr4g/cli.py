"""`python -m pos_core sr4g build ...` and `python -m pos_core sr4g prompts ...`."""

from __future__ import annotations

import argparse
import sys
import time

from .rules import RELATIONS


def relation_name(text: str) -> str:
    """'left_of', 'left-of', 'Left of' -> 'left of'; unknown names are refused with the list."""
    name = " ".join(text.lower().replace("_", " ").replace("-", " ").split())
    if name not in RELATIONS:
        raise argparse.ArgumentTypeError(f"unknown relation {text!r}: use some of {', '.join(RELATIONS)}")
    return name


def _build(args: argparse.Namespace) -> int:
    from .dataset import Options, build, export
    from .coco import AnnotationError

    rels = tuple(r for r in RELATIONS if r in set(args.relations)) if args.relations else RELATIONS
    opts = Options(relations=rels, split_seed=args.split_seed, max_per_image=args.max_per_image,
                   min_area=args.min_area, max_count=args.max_count, unseen_fraction=args.unseen_fraction,
                   val_fraction=args.val_fraction, test_fraction=args.test_fraction, use_masks=not args.no_masks)
    t0, last = time.time(), [0.0]

    def progress(k, n):
        now = time.time()
        if now - last[0] > 1.0 or k == n:
            last[0] = now
            print(f"\rimages {k}/{n}", end="", file=sys.stderr)

    try:
        summary = build(args.annotations, args.images, args.out, opts, progress=progress,
                        log=lambda m: print(m, file=sys.stderr))
        print(file=sys.stderr)
        for kind, dest in args.export or []:
            n = export(args.out, args.images, dest, kind, args.export_split, copy=args.copy)
            print(f"exported {n} {args.export_split} pairs ({kind}) to {dest}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\nsr4g build: interrupted; run the same command again to resume from {args.out}", file=sys.stderr)
        return 130
    except (AnnotationError, ValueError, OSError) as e:
        print(f"\nsr4g build: {e}", file=sys.stderr)
        return 2
    dt = time.time() - t0
    print(f"{summary['triplets']} triplets from {summary['images']} images in {dt:.1f} s "
          f"({', '.join(f'{k} {v}' for k, v in summary['per_split'].items())}); wrote {args.out}/triplets.jsonl "
          f"and {args.out}/summary.json")
    return 0


def _prompts(args: argparse.Namespace) -> int:
    from .dataset import prompts

    try:
        rows = prompts(args.dataset, args.split, args.out, args.limit)
    except (ValueError, OSError) as e:
        print(f"sr4g prompts: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} {args.split} prompts to {args.out}")
    return 0


def add_parser(sub) -> None:
    """Adds `sr4g` with its `build` and `prompts` subcommands to the `python -m pos_core` parser."""
    p = sub.add_parser("sr4g", help="SR4G: spatial captions from COCO-format annotations (build, prompts)")
    s = p.add_subparsers(dest="sr4g_command", required=True)
    b = s.add_parser("build", help="derive the 14-relation triplets, captions and splits from COCO annotations")
    b.add_argument("--annotations", required=True, help="COCO instances JSON (e.g. instances_train2017.json)")
    b.add_argument("--images", required=True, help="folder of the annotated images (e.g. train2017)")
    b.add_argument("--out", default="sr4g", help="output folder: triplets.jsonl, summary.json (default: sr4g)")
    b.add_argument("--split-seed", type=int, default=0, help="seed of the unseen categories and image splits")
    b.add_argument("--max-per-image", type=int, default=0, help="keep at most K captions per image (0: all)")
    b.add_argument("--relations", nargs="+", type=relation_name,
                   help=f"relations to derive (default: all 14): {', '.join(r.replace(' ', '_') for r in RELATIONS)}")
    b.add_argument("--min-area", type=float, default=0.02, help="objects below this share of the image are ignored")
    b.add_argument("--max-count", type=int, default=4, help="classes with more instances are left out")
    b.add_argument("--unseen-fraction", type=float, default=0.2, help="share of categories held out (unseen)")
    b.add_argument("--val-fraction", type=float, default=0.01, help="share of images for val")
    b.add_argument("--test-fraction", type=float, default=0.05, help="share of images for test_seen/test_unseen")
    b.add_argument("--no-masks", action="store_true", help="decide 'overlapping' from boxes, without masks")
    b.add_argument("--export", nargs=2, action="append", metavar=("KIND", "DIR"),
                   help="also write image + caption pairs: 'kohya DIR' (image + .txt) or 'hf DIR' (metadata.jsonl)")
    b.add_argument("--export-split", default="train", help="split to export (default: train)")
    b.add_argument("--copy", action="store_true", help="copy images into exports instead of linking them")
    b.set_defaults(func=_build)
    q = s.add_parser("prompts", help="evaluation prompts of one split, as JSONL for `python -m pos_core evaluate`")
    q.add_argument("--dataset", default="sr4g", help="the --out folder of `sr4g build` (default: sr4g)")
    q.add_argument("--split", default="test_unseen", help="train, val, test_seen or test_unseen (default)")
    q.add_argument("--out", default="prompts.jsonl", help="JSONL file to write (default: prompts.jsonl)")
    q.add_argument("--limit", type=int, default=0, help="at most this many prompts (0: all)")
    q.set_defaults(func=_prompts)
