"""LAMMPS on one GPU: time per MD step of `pair_style hipot` (one rank, the model on CUDA) against
`hipot md` (ASE, the same model) and against the model alone (`Evaluator.step`, graph already on
the GPU), on the same rattled Si and MgO supercells, NVT at 300 K, float32.

    python3 benchmarks/lammps/gpu.py --kinds Si MgO --atoms 4096 32768 --steps 100 --ase-steps 20 --json gpu.json

The pair style's `timing yes` report splits its time into the model's forward and backward pass,
the ghost-feature exchanges (host round trips through LAMMPS's communication), building the edges
and copying to and from the device; the rest of LAMMPS's loop time is LAMMPS itself.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hipot import Evaluator
from hipot.bench.speed import structure
from hipot.graph import build_graph


def lammps_run(atoms, steps: int, model: str, workdir: Path, device: str = "cuda") -> dict:
    import ase.io

    species = sorted(set(atoms.get_chemical_symbols()), key=lambda s: atoms.get_chemical_symbols().index(s))
    ase.io.write(workdir / "data.lmp", atoms, format="lammps-data", specorder=species, masses=True)
    (workdir / "in.lmp").write_text(f"""units metal
atom_style atomic
boundary p p p
read_data data.lmp
pair_style hipot {model} device {device} dtype float32 timing yes
pair_coeff * * {' '.join(species)}
velocity all create 300 4928459 loop geom
fix 1 all nvt temp 300 300 0.1
thermo {steps}
run {steps}
""")
    lmp = shutil.which("lmp") or str(Path(sys.executable).parent / "lmp")
    started = time.perf_counter()
    res = subprocess.run([lmp, "-in", "in.lmp", "-log", "log.lammps"], cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if res.returncode != 0:
        raise RuntimeError(res.stdout[-3000:] + res.stderr[-3000:])
    loop = float(re.search(r"Loop time of (\S+) on", res.stdout).group(1))
    ghosts = float(re.search(r"Nghost:\s+(\S+) ave", res.stdout).group(1))
    pair = float(re.search(r"^Pair\s+\|\s+\S+\s+\|\s+(\S+)", res.stdout, re.M).group(1))
    report = res.stdout.split("pair hipot timing")[-1]
    parts = {m.group(1): float(m.group(2)) / (steps + 1) for m in re.finditer(r"^\s{2}(\w+)\s+(\S+)\s+\S+$", report, re.M)}
    parts.pop("steps", None)
    return {"s_per_step": loop / steps, "lammps_rest_s_per_step": (loop - pair) / steps, "ghosts": ghosts, "parts_s_per_step": parts, "process_wall_s": wall,
            "timing_report": "pair hipot timing" + report[:1500]}


def ase_run(atoms, ev: Evaluator, steps: int, workdir: Path) -> float:
    """Seconds per step of `hipot md` (NVT, Nose-Hoover chain), the first steps (CUDA-graph
    capture, warm-up) excluded by timing two runs of different length after a warm-up run."""
    from hipot.tasks.md import md

    def run(n: int, tag: str) -> float:
        t = time.perf_counter()
        md(atoms.copy(), ev, ensemble="nvt-nhc", temperature=300, steps=n, interval=10_000,
           trajectory=str(workdir / f"md_{tag}.traj"))
        sync()
        return time.perf_counter() - t

    run(3, "warm")  # the first run pays one-time costs (kernel loading, CUDA-graph capture) the others do not
    short = run(3, "short")
    long = run(3 + steps, "long")
    return (long - short) / steps


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def model_step(atoms, ev: Evaluator, repeats: int = 5) -> float:
    g = build_graph([atoms], ev.model.cutoff, ev.model.species, device=ev.device, dtype=torch.float32)
    for _ in range(2):
        ev.step(g)
    sync()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        ev.step(g)
        sync()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=["Si", "MgO"])
    ap.add_argument("--atoms", type=int, nargs="+", default=[4096, 32768])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--ase-steps", type=int, default=20)
    ap.add_argument("--model", default="hienet-v3")
    ap.add_argument("--device", default="cuda", help="cuda (the point of this script) or cpu (a dry run)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    out = {"card": torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU", "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "steps": args.steps, "rows": []}
    ev = Evaluator(args.model, device=args.device, dtype="float32")
    print("| structure | atoms | ghosts | LAMMPS us/atom/step | hipot md (ASE) us/atom/step | model only us/atom/step | "
          "forward | backward | exchanges | edges+copies | LAMMPS rest |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in args.kinds:
        for n in args.atoms:
            atoms = structure(kind, n)
            with tempfile.TemporaryDirectory() as tmp:
                lm = lammps_run(atoms, args.steps, args.model, Path(tmp), args.device)
                ase_s = ase_run(atoms, ev, args.ase_steps, Path(tmp))
            model_s = model_step(atoms, ev)
            n_at = len(atoms)
            p = lm["parts_s_per_step"]
            fwd, bwd = p.get("forward", 0.0), p.get("backward", 0.0)
            exch = sum(v for k, v in p.items() if k.startswith("exchange") or k.startswith("reverse"))
            other = sum(v for k, v in p.items() if k not in ("forward", "backward") and not
                        (k.startswith("exchange") or k.startswith("reverse")))
            rest = lm["lammps_rest_s_per_step"]
            row = {"kind": kind, "atoms": n_at, **lm, "ase_s_per_step": ase_s, "model_s_per_step": model_s}
            out["rows"].append(row)
            us = lambda s: f"{s / n_at * 1e6:.2f}"  # noqa: E731
            print(f"| {kind} | {n_at:,} | {lm['ghosts']:,.0f} | {us(lm['s_per_step'])} | {us(ase_s)} | {us(model_s)} | "
                  f"{us(fwd)} | {us(bwd)} | {us(exch)} | {us(other)} | {us(rest)} |", flush=True)
            print(lm["timing_report"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
