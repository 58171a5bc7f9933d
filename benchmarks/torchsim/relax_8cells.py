"""torch-sim's batched FIRE (Frechet cell filter) against `hipot relax` (ASE FIRE +
FrechetCellFilter in lockstep batches) on the same eight rattled, strained cells, HIENet-V3.

    python benchmarks/torchsim/relax_8cells.py [--dtype float64] [--fmax 0.01] [--json out.json]

Needs torch-sim (Python >= 3.12): pip install -e '.[torchsim]'. Prints wall times, steps and the
largest differences of the relaxed energies (eV/atom) and volumes between the two."""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk


def eight_cells() -> list[Atoms]:
    """The cells of tests/test_torchsim.py: Si, Cu, NaCl, Si (1x1x2), twice, rattled and strained."""
    out = []
    for k, a in enumerate([bulk("Si", "diamond", a=5.43), bulk("Cu", "fcc", a=3.61), bulk("NaCl", "rocksalt", a=5.64),
                           bulk("Si", "diamond", a=5.43) * (1, 1, 2)] * 2):
        a = a.copy()
        a.positions += np.random.default_rng(k).normal(scale=0.05, size=a.positions.shape)
        a.set_cell(a.cell.array * (1.0 + 0.02 * (-1) ** k), scale_atoms=True)
        out.append(a)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="hienet-v3")
    p.add_argument("--dtype", default="float64")
    p.add_argument("--fmax", type=float, default=0.01)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--json")
    args = p.parse_args()

    import torch_sim as ts

    from hipot.tasks.relax import relax
    from hipot.torchsim import HIPotModel

    cells = eight_cells()
    model = HIPotModel(args.model, device="cpu", dtype=args.dtype)
    calls = {"n": 0}
    forward = model.forward

    def counted(state, **kw):
        calls["n"] += 1
        return forward(state, **kw)

    model.forward = counted
    t0 = time.perf_counter()
    state = ts.optimize(system=ts.io.atoms_to_state(cells, model.device, model.dtype), model=model,
                        optimizer=ts.Optimizer.fire, init_kwargs={"cell_filter": ts.CellFilter.frechet},
                        convergence_fn=ts.generate_force_convergence_fn(force_tol=args.fmax, include_cell_forces=True),
                        max_steps=args.steps)
    t_ts = time.perf_counter() - t0
    ts_calls = calls["n"]
    final = forward(state)

    t0 = time.perf_counter()
    ours = relax(cells, model.evaluator, fmax=args.fmax, steps=args.steps)
    t_hipot = time.perf_counter() - t0

    relaxed = ts.io.state_to_atoms(state)
    de = [abs(float(final["energy"][b]) - r.energy) / len(cells[b]) for b, r in enumerate(ours)]
    dv = [abs(relaxed[b].get_volume() / r.atoms.get_volume() - 1) for b, r in enumerate(ours)]
    out = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "dtype": args.dtype, "fmax": args.fmax, "torch_sim_seconds": t_ts, "torch_sim_model_calls": ts_calls,
           "hipot_relax_seconds": t_hipot, "hipot_steps": [r.steps for r in ours],
           "hipot_converged": all(r.converged for r in ours), "max_energy_diff_eV_per_atom": max(de),
           "max_volume_rel_diff": max(dv), "energies_eV_per_atom": [r.energy / len(c) for r, c in zip(ours, cells)]}
    print(json.dumps(out, indent=1))
    if args.json:
        from hipot.io import write_json

        write_json(args.json, out)


if __name__ == "__main__":
    main()
