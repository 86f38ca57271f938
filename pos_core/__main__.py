"""Command line: `python -m pos_core parse "PROMPT"` or `python -m pos_core parse --file PATH`."""

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


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m pos_core`."""
    ap = argparse.ArgumentParser(prog="python -m pos_core", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parse", help="print the spatial relations of prompts as JSON")
    p.add_argument("prompt", nargs="?", help="one prompt")
    p.add_argument("--file", help="a text file with one prompt a line; prints one JSON object a line")
    p.set_defaults(func=_parse_command)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
