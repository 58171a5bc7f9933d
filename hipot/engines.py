"""The doors of a model as contract engines (hipot.testing): callables that map a list of
ase.Atoms to one result dict each, with the ASE calculator's keys and units, whatever the door.
LAMMPS is driven through `lmp` in tests/test_lammps_contract.py (its engine needs the program),
and its driver in process, on simulated ranks, by tests/fake_lammps.py's DriverEngine.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.stress import full_3x3_to_voigt_6_stress

from .testing import Engine


def calculator_engine(calc: Calculator) -> Engine:
    """An ASE calculator, one structure at a time: energy and forces; stress for structures
    periodic in all three directions; per-atom energies and stresses where it implements them."""
    props = set(getattr(calc, "implemented_properties", ()))

    def run(structures: Sequence[Atoms]) -> list[dict]:
        out = []
        for atoms in structures:
            a = atoms.copy()
            a.calc = calc
            r = {"energy": float(a.get_potential_energy()), "forces": a.get_forces().copy()}
            if np.all(a.pbc):
                r["stress"] = a.get_stress().copy()
                if "stresses" in props:
                    r["stresses"] = a.get_stresses().copy()
            if "energies" in props:
                r["energies"] = a.get_potential_energies().copy()
            out.append(r)
        return out

    return run


def evaluator_engine(evaluator, batch_size: int = 64, max_atoms: int | None = 4096,
                     per_atom_virials: bool | None = None) -> Engine:
    """hipot's batched Evaluator: the structures of a call evaluated together in batches, with
    per-atom stresses and virials ("stresses", "virials") when `per_atom_virials` (default: when
    it has them, i.e. no dispersion)."""
    per_atom = evaluator.dispersion is None if per_atom_virials is None else per_atom_virials
    return lambda structures: evaluator.evaluate(list(structures), batch_size=batch_size, max_atoms=max_atoms,
                                                 stresses=per_atom, virials=per_atom)


def torchsim_engine(model) -> Engine:
    """A torch-sim ModelInterface (hipot.torchsim.HIPotModel, or any other): one state per run of
    structures sharing their periodicity (a torch-sim state has one pbc for all its systems);
    stress kept for systems periodic in all three directions; per-atom energies and stresses when
    the model returns them ('energies'; 'stresses' (N, 3, 3), kept as ASE's Voigt (N, 6) where the
    stress is)."""
    import torch
    import torch_sim as ts

    def run(structures: Sequence[Atoms]) -> list[dict]:
        out: list[dict] = [{} for _ in structures]
        k = 0
        while k < len(structures):
            pbc = tuple(bool(p) for p in structures[k].pbc)
            group = [k]
            while group[-1] + 1 < len(structures) and tuple(bool(p) for p in structures[group[-1] + 1].pbc) == pbc:
                group.append(group[-1] + 1)
            state = ts.initialize_state([structures[i] for i in group], model.device, model.dtype)
            res = {key: v.detach().to("cpu", torch.float64).numpy() for key, v in model(state).items()}
            counts = np.bincount(state.system_idx.cpu().numpy(), minlength=len(group))
            ptr = np.concatenate([[0], np.cumsum(counts)])
            for b, i in enumerate(group):
                s = slice(ptr[b], ptr[b + 1])
                r = {"energy": float(res["energy"][b]), "forces": res["forces"][s]}
                if "stress" in res and all(pbc):
                    r["stress"] = full_3x3_to_voigt_6_stress(res["stress"][b])
                if "stresses" in res and all(pbc):
                    r["stresses"] = full_3x3_to_voigt_6_stress(res["stresses"][s])
                if "energies" in res:
                    r["energies"] = res["energies"][s]
                out[i] = r
            k = group[-1] + 1
        return out

    return run
