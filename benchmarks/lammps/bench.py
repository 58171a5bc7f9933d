"""Time per MD step of HIENet-V3 in LAMMPS (pair_style hipot, 1 and more MPI ranks) against the
ASE calculator on the same structure (Si diamond, NVE at 300 K, float32, CPU).

    python benchmarks/lammps/bench.py --atoms 64 512 --ranks 1 2 --steps 5 --json benchmarks/lammps/cpu.json

Every configuration uses all `--cores`: one rank with `--cores` threads, k ranks with
cores // k threads each, the calculator with `--cores` threads; `--threads N` gives every process
(each rank, the calculator) N threads instead (on a machine shared with other work, one thread
per process avoids the slowdown of oversubscribed OpenMP threads). LAMMPS's figure is its loop time
over `--steps` steps (the setup step, which includes the first call, is not in it); the
calculator's is the mean over the same number of velocity-Verlet steps after one warm-up call.
The per-part split inside the pair style comes from its `timing yes` report (mean over ranks),
with the graph's nodes and the rows each exchange receives per rank.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
COUNTS = ("graph_nodes", "exchanged_rows")  # in the pair style's timing report: per step, not seconds


def silicon(n_atoms: int):
    from ase.build import bulk

    reps = round((n_atoms / 8) ** (1 / 3))
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (reps, reps, reps)
    assert len(atoms) == n_atoms, f"{n_atoms} is not 8 n^3"
    return atoms


def lammps_step(n_atoms: int, ranks: int, threads: int, steps: int, model: str, workdir: Path) -> dict:
    reps = round((n_atoms / 8) ** (1 / 3))
    script = f"""units metal
atom_style atomic
boundary p p p
lattice diamond 5.43
region box block 0 {reps} 0 {reps} 0 {reps}
create_box 1 box
create_atoms 1 box
mass 1 28.0855
velocity all create 300 4928459 loop geom
pair_style hipot {model} device cpu dtype float32 timing yes
pair_coeff * * Si
fix 1 all nve
thermo {steps}
run {steps}
"""
    (workdir / "in.lmp").write_text(script)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [str(BIN / "lmp"), "-in", "in.lmp", "-log", f"log_{n_atoms}_{ranks}.lammps"]
    if ranks > 1:
        cmd = [str(BIN / "mpiexec"), "-n", str(ranks)] + cmd
    started = time.perf_counter()
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if res.returncode != 0:
        raise RuntimeError(res.stdout[-2000:] + res.stderr[-2000:])
    loop = float(re.search(r"Loop time of (\S+) on", res.stdout).group(1))
    ghosts = float(re.search(r"Nghost:\s+(\S+) ave", res.stdout).group(1))
    report = {m.group(1): float(m.group(2))
              for m in re.finditer(r"^\s{2}(\w+)\s+(\S+)\s+\S+$", res.stdout.split("pair hipot timing")[-1], re.M)}
    counts = {k: report.pop(k) for k in COUNTS if k in report}  # already means per step
    report.pop("steps", None)
    parts = {k: v / (steps + 1) for k, v in report.items()}
    return {"atoms": n_atoms, "ranks": ranks, "threads_per_rank": threads, "s_per_step": loop / steps,
            "ghosts_per_rank": ghosts, "pair_parts_s_per_step": parts, "graph_per_rank": counts,
            "process_wall_s": wall, "command": " ".join(cmd[:-2]).replace(str(BIN) + "/", "")}


def ase_step(n_atoms: int, threads: int, steps: int, model: str) -> dict:
    import torch
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    from hipot import HIPotCalculator

    torch.set_num_threads(threads)
    atoms = silicon(n_atoms)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))  # as velocity create
    atoms.calc = HIPotCalculator(model, device="cpu", dtype="float32")
    atoms.get_forces()
    dyn = VelocityVerlet(atoms, units.fs)
    started = time.perf_counter()
    dyn.run(steps)
    return {"atoms": n_atoms, "threads": threads, "s_per_step": (time.perf_counter() - started) / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atoms", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--threads", type=int, help="threads of every process (default: cores shared out)")
    ap.add_argument("--model", default="hienet-v3")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    rows: dict = {"commit": commit, "torch": torch.__version__, "machine": f"{platform.machine()}, {args.cores} cores",
                  "load_average_start": os.getloadavg(), "date": time.strftime("%Y-%m-%d"), "steps": args.steps, "lammps": [], "ase": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.atoms:
            rows["ase"].append(ase_step(n, args.threads or args.cores, args.steps, args.model))
            print(json.dumps(rows["ase"][-1]), flush=True)
            for k in args.ranks:
                threads = args.threads or max(1, args.cores // k)
                rows["lammps"].append(lammps_step(n, k, threads, args.steps, args.model, Path(tmp)))
                print(json.dumps(rows["lammps"][-1]), flush=True)
    rows["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
