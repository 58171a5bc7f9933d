"""Graphite relaxed with HIENet-V3 with and without DFT-D3(BJ): the interlayer spacing (c) is
where dispersion shows (experiment: a = 2.46 A, c = 6.71 A).

    python benchmarks/torchsim/graphite_d3.py [--json out.json]

hipot relax (FIRE + FrechetCellFilter, fmax 0.005 eV/A), float64, on the CPU; needs hipot[d3]."""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from ase import Atoms


def graphite(a: float = 2.464, c: float = 6.711) -> Atoms:
    cell = [[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]]
    frac = [[0, 0, 0.25], [1 / 3, 2 / 3, 0.25], [0, 0, 0.75], [2 / 3, 1 / 3, 0.75]]
    return Atoms("C4", scaled_positions=frac, cell=cell, pbc=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    args = p.parse_args()
    from hipot.evaluator import Evaluator
    from hipot.tasks.relax import relax

    out = {}
    for dispersion in (None, "d3bj"):
        ev = Evaluator("hienet-v3", device="cpu", dtype="float64", dispersion=dispersion)
        t0 = time.perf_counter()
        (r,) = relax([graphite()], ev, fmax=0.005, steps=2000)
        a, _, c = r.atoms.cell.cellpar()[:3]
        out[ev.name] = {"a": float(a), "c": float(c), "converged": r.converged, "steps": r.steps,
                        "energy_per_atom": r.energy / 4, "seconds": time.perf_counter() - t0}
    print(json.dumps(out, indent=1))
    if args.json:
        from hipot.io import write_json

        write_json(args.json, out)


if __name__ == "__main__":
    main()
