"""Bad and extreme structures through the graph builder, each in its own process (a floating-point
exception kills the interpreter): outcome, time, edges, and for the ones that give a number, the
energy with HIENet-V3 in float32 and float64 (and the largest force difference between them).

    python benchmarks/graph_cases.py [--timeout 120] [--model hienet-v3] [--cases NAME ...]

Runs with any version of hipot.graph that has build_graph(structures, cutoff, species).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule


def cu2(cell, pbc) -> Atoms:
    return Atoms("Cu2", positions=[[0, 0, 0], [1.25, 0.7, 0.4]], cell=cell, pbc=pbc)


def cases() -> dict[str, Atoms]:
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    si.positions += np.random.default_rng(0).normal(scale=0.05, size=si.positions.shape)
    far = si.copy()
    far.positions += 1e4
    h2o = molecule("H2O")
    h2o.cell = [1e7, 1e7, 1e7]
    h2o.pbc = True
    h2o.center()
    return {
        "fpe_zero_and_parallel_2d": cu2([[2.5, 0, 0], [5, 0, 0], [0, 0, 0]], [True, True, False]),
        "parallel_2d": cu2([[2.5, 0, 0], [5, 0, 0], [0, 0, 10]], [True, True, False]),
        "near_parallel_2d": cu2([[2.5, 0, 0], [5, 1e-3, 0], [0, 0, 0]], [True, True, False]),
        "flat_det_1.25e-6": cu2([[2.5, 0, 0], [0, 2.5, 0], [1, 1, 2e-7]], True),
        "flat_1e-3": cu2([[2.5, 0, 0], [0, 2.5, 0], [0, 0, 1e-3]], True),
        "skewed_thin": cu2([[3, 0, 0], [0, 3, 0], [3, 0, 0.05]], True),
        "one_atom_0.3A": Atoms("Cu", cell=[0.3, 0.3, 0.3], pbc=True),
        "wire_far_1e6": Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 1e6]], cell=[2.5, 0, 0], pbc=[True, False, False]),
        "molecule_far_apart_1e6": Atoms("CO", positions=[[0, 0, 0], [1e6, 0, 0]]),
        "Si8_shift_1e4": far,
        "Si8": si,
        "H2O_box_1e7": h2o,
    }


def run_one(name: str, model: str) -> dict:
    from hipot.graph import build_graph

    atoms = cases()[name]
    out: dict = {"case": name}
    t = time.perf_counter()
    try:
        g = build_graph([atoms], 5.0, None)
    except Exception as e:  # report any error, ours or not
        out.update(outcome=f"{type(e).__name__}: {e}", seconds=time.perf_counter() - t)
        return out
    out.update(outcome="graph", seconds=time.perf_counter() - t, edges=int(g.center.numel()))
    if model and out["edges"] < 50_000:
        from hipot import predict

        res = {}
        for dtype in ("float32", "float64"):
            try:
                (r,) = predict([atoms], model=model, device="cpu", dtype=dtype)
                res[dtype] = r
            except Exception as e:
                out[f"E_{dtype}"] = f"{type(e).__name__}: {e}"
        if len(res) == 2:
            out["E_float32"] = res["float32"]["energy"]
            out["E_float64"] = res["float64"]["energy"]
            out["max_dF_32_vs_64"] = float(np.abs(res["float32"]["forces"] - res["float64"]["forces"]).max())
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--model", default="hienet-v3", help="'' for graphs only")
    p.add_argument("--cases", nargs="*", default=None)
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print("RESULT " + json.dumps(run_one(a.one, a.model)))
        return
    for name in a.cases or list(cases()):
        t = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, __file__, "--one", name, "--model", a.model], capture_output=True,
                               text=True, timeout=a.timeout)
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
            if lines:
                res = json.loads(lines[-1][7:])
            else:
                res = {"case": name, "outcome": f"process died, exit {r.returncode}: {r.stderr.strip()[-200:]}"}
        except subprocess.TimeoutExpired:
            res = {"case": name, "outcome": f"no answer after {a.timeout:.0f} s (killed)"}
        res["wall_s"] = round(time.perf_counter() - t, 1)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
