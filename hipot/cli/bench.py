"""`hipot bench`: the speed benchmark (hipot.bench.speed), with its own options."""
from __future__ import annotations

import argparse


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench.speed import main

    return main(args.extra)


def register(sub) -> None:
    p = sub.add_parser("bench", help="speed of E+F+S steps: hipot vs the official code and peers "
                                     "(hipot bench --help lists its options)", add_help=False)
    p.set_defaults(func=cmd_bench, pass_through=True)
