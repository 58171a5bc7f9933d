"""Accuracy report against DFT: a thin alias of `hipot evaluate` (same arguments).

    python benchmarks/accuracy.py --quick                            # CPU smoke run, minutes, into evaluate-quick/
    python benchmarks/accuracy.py --out benchmarks/ACCURACY.md       # full run (one GPU): the committed report
"""
from __future__ import annotations

import sys

from hipot.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
