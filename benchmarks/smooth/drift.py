"""Total-energy drift of `hipot md` NVE logs: slope of E_tot/N against time (least squares) over
the first --ps picoseconds, in meV/atom/ps, and the largest deviation from the start (meV/atom).

    python3 benchmarks/smooth/drift.py md_*.log --atoms 64 [--ps 0.1]
"""
from __future__ import annotations

import argparse
import csv

import numpy as np


def drift(path: str, n_atoms: int, ps: float) -> tuple[float, float, float]:
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if float(r["time_ps"]) <= ps + 1e-9]
    t = np.array([float(r["time_ps"]) for r in rows])
    e = np.array([float(r["etot_eV"]) for r in rows]) / n_atoms * 1e3
    temp = float(np.mean([float(r["temperature_K"]) for r in rows]))
    return float(np.polyfit(t, e, 1)[0]), float(np.max(np.abs(e - e[0]))), temp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("logs", nargs="+")
    ap.add_argument("--atoms", type=int, nargs="+", required=True, help="atoms per log (one value: all)")
    ap.add_argument("--ps", type=float, default=0.1)
    a = ap.parse_args()
    atoms = a.atoms * len(a.logs) if len(a.atoms) == 1 else a.atoms
    print("| run | drift (meV/atom/ps) | max deviation (meV/atom) | mean T (K) |\n|---|---|---|---|")
    for path, n in zip(a.logs, atoms):
        d, m, temp = drift(path, n, a.ps)
        print(f"| {path.rsplit('/', 1)[-1].removesuffix('.log')} | {d:+.3f} | {m:.3f} | {temp:.0f} |")


if __name__ == "__main__":
    main()
