"""Command line: one module per group of verbs, each with a `register(subparsers)`.

Every error that is the input's or the environment's fault ends as one line on stderr,
`hipot VERB: error: ...`, with exit status 2 (1 for a failure of a run itself, 130 for Ctrl-C);
a traceback means a bug.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Verb groups, in the order `hipot --help` lists them.
VERB_MODULES = ["predict", "tasks", "bench", "train", "distill", "evaluate"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="hipot", description="HIENet-class interatomic potentials")
    parser.add_argument("--version", action="version", version=f"hipot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in VERB_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _interrupted(args: argparse.Namespace) -> str:
    """The line Ctrl-C prints: how far the command got and how to go on."""
    tally = getattr(args, "tally", None)
    how = getattr(args, "resume_hint", None) or "rerun the same command to start over (this command keeps no partial results)"
    if tally is not None and tally.total:
        return f"interrupted: {tally.done} of {tally.total} {tally.unit}(s) done; {how}"
    return f"interrupted; {how}"


def _errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the input's or the environment's fault (one line, no traceback)."""
    from ..checkpoint import ModelFileError
    from ..optional import MissingDependency
    from ..tasks.common import InputFileError
    from ..training.data import DataError
    from ..types import StructureError
    from .common import CLIError

    return (CLIError, StructureError, ModelFileError, MissingDependency, InputFileError, DataError,
            FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "pass_through", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra  # verbs with their own option parser (bench) take these
    errors = _errors()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        from ..distributed import world

        if world().is_main:
            print(f"\nhipot {args.command}: {_interrupted(args)}", file=sys.stderr)
        return 130
    except errors as e:
        code = getattr(e, "code", 2)
        print(f"hipot {args.command}: error: {e}", file=sys.stderr)
        return code if isinstance(code, int) else 2
