"""Accuracy report against DFT: a thin alias of `hipot evaluate` (same arguments).

    python benchmarks/accuracy.py --quick          # CPU smoke run, minutes
    python benchmarks/accuracy.py                  # full run (one GPU), writes benchmarks/ACCURACY.md
"""
from __future__ import annotations

import sys

from hipot.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
