"""Cost of hipot's DFT-D3(BJ) term (simple-dftd3, CPU, float64) per structure: energy, forces and
stress, and the per-atom energies (pair matrices) on top.

    python benchmarks/torchsim/d3_speed.py [--repeats 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from ase import Atoms


def graphite(rep: tuple[int, int, int]) -> Atoms:
    a, c = 2.464, 6.711
    cell = [[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]]
    frac = [[0, 0, 0.25], [1 / 3, 2 / 3, 0.25], [0, 0, 0.75], [2 / 3, 1 / 3, 0.75]]
    return Atoms("C4", scaled_positions=frac, cell=cell, pbc=True) * rep


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args()
    from hipot.dispersion import D3BJ

    d3 = D3BJ()
    rows = []
    for rep in [(2, 2, 1), (4, 4, 2), (8, 8, 4)]:
        a = graphite(rep)
        timing = {}
        for per_atom in (False, True):
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                d3.structure(a.numbers, a.positions, a.cell.array, a.pbc, per_atom=per_atom)
                ts.append(time.perf_counter() - t0)
            timing[per_atom] = min(ts)
        rows.append({"atoms": len(a), "seconds_energy_forces_stress": timing[False],
                     "seconds_with_per_atom_energies": timing[True]})
        print(json.dumps(rows[-1]))
    if args.json:
        from hipot.io import write_json

        write_json(args.json, rows)


if __name__ == "__main__":
    main()
