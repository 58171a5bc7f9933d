"""Command line: one module per group of verbs, each with a `register(subparsers)`."""
from __future__ import annotations

import argparse
import importlib
import sys

# Verb groups, in the order `hipot --help` lists them.
VERB_MODULES = ["predict", "tasks", "bench", "train", "distill", "evaluate"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hipot", description="HIENet-class interatomic potentials")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in VERB_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "pass_through", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra  # verbs with their own option parser (bench) take these
    from ..checkpoint import ModelFileError
    from ..graph import StructureError

    try:
        return args.func(args)
    except (StructureError, ModelFileError, KeyError, FileNotFoundError) as e:
        print(f"hipot {args.command}: error: {e}", file=sys.stderr)
        return 2
