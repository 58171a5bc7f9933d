"""DFT-D3(BJ) dispersion (hipot.dispersion): the sum model + D3 against simple-dftd3's own ASE
calculator, finite differences, slabs, batching, names, and the errors."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule

from conftest import make_tiny, rattled
from hipot import HIPotCalculator
from hipot.evaluator import Evaluator
from hipot.optional import MissingDependency
from hipot.types import StructureError

pytest.importorskip("dftd3")
from dftd3.ase import DFTD3  # noqa: E402

from hipot.dispersion import D3BJ, PBE  # noqa: E402

SPECIES = [1, 6, 7, 8, 14, 29]


@pytest.fixture(scope="module")
def tiny():
    return make_tiny(species=SPECIES)


@pytest.fixture(scope="module")
def calcs(tiny):
    return (HIPotCalculator(tiny, device="cpu", dtype="float64"),
            HIPotCalculator(tiny, device="cpu", dtype="float64", dispersion="d3bj"))


def graphite() -> Atoms:
    """AB graphite, sheared a little and rattled: a triclinic cell with a large D3 stress."""
    a, c = 2.46, 6.9
    cell = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0.1, 0.05, c]])
    frac = [[0, 0, 0.25], [1 / 3, 2 / 3, 0.25], [0, 0, 0.75], [2 / 3, 1 / 3, 0.75]]
    return rattled(Atoms("C4", scaled_positions=frac, cell=cell, pbc=True), 0.05, seed=5)


def slab() -> Atoms:
    s = fcc111("Cu", (2, 2, 3), vacuum=8.0)
    s.pbc = [True, True, False]
    return rattled(s, 0.03, seed=6)


STRUCTURES = {"graphite": graphite, "methanol": lambda: rattled(molecule("CH3OH"), 0.05),
              "copper": lambda: rattled(bulk("Cu", "fcc", a=3.6) * (2, 1, 1), 0.05), "slab": slab}


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_sum_matches_dftd3_ase_calculator(calcs, name):
    """(model + D3) - model = simple-dftd3's ASE calculator (PBE, D3(BJ)): energy, forces, stress."""
    plain, d3 = calcs
    atoms = STRUCTURES[name]()
    ref = atoms.copy()
    ref.calc = DFTD3(method="PBE", damping="d3bj")
    a, b = atoms.copy(), atoms.copy()
    a.calc, b.calc = plain, d3
    assert ref.get_potential_energy() < -1e-3  # a real dispersion energy
    assert abs(b.get_potential_energy() - a.get_potential_energy() - ref.get_potential_energy()) < 1e-10
    np.testing.assert_allclose(b.get_forces() - a.get_forces(), ref.get_forces(), atol=1e-10)
    assert abs(b.get_potential_energies().sum() - b.get_potential_energy()) < 1e-10
    if atoms.pbc.all():
        np.testing.assert_allclose(b.get_stress() - a.get_stress(), ref.get_stress(), atol=1e-10)
        assert np.abs(ref.get_stress()).max() > 1e-4


def _d3_energy(atoms: Atoms) -> float:
    return D3BJ().structure(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)["energy"]


@pytest.mark.parametrize("name", ["graphite", "methanol", "slab"])
def test_d3_forces_are_minus_the_energy_gradient(name):
    atoms = STRUCTURES[name]()
    forces = D3BJ().structure(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)["forces"]
    h = 1e-5
    for i in range(0, len(atoms), max(1, len(atoms) // 4)):
        for d in range(3):
            p, m = atoms.copy(), atoms.copy()
            p.positions[i, d] += h
            m.positions[i, d] -= h
            assert abs(-(_d3_energy(p) - _d3_energy(m)) / (2 * h) - forces[i, d]) < 1e-7


def test_d3_stress_is_the_strain_derivative():
    """Small strains: D3's hard coordination-number cutoff makes ~1e-7 eV steps in the energy
    where a pair crosses it (hipot.dispersion.D3Settings), which strains of 1e-5 can meet."""
    atoms = graphite()
    stress = D3BJ().structure(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)["stress"]
    h, vol = 1e-6, atoms.get_volume()
    for i, j in [(0, 0), (2, 2), (0, 1), (1, 2)]:
        eps = np.zeros((3, 3))
        eps[i, j] = eps[j, i] = h
        energies = []
        for sign in (1, -1):
            a = atoms.copy()
            a.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
            energies.append(_d3_energy(a))
        assert abs((energies[0] - energies[1]) / (2 * h) / vol / (1 if i == j else 2) - stress[i, j]) < 1e-8


def test_slab_does_not_depend_on_where_the_atoms_sit():
    """A slab shifted across the cell boundary along its non-periodic axis keeps its dispersion,
    and equals the same slab periodic in 3D behind a vacuum wider than the D3 cutoffs. (simple-
    dftd3 itself wraps positions along non-periodic axes: hipot places the atoms in a box first.)"""
    s = slab()
    e = _d3_energy(s)
    shifted = s.copy()
    shifted.positions[:, 2] -= 12.0
    assert abs(_d3_energy(shifted) - e) < 1e-10
    bulky = s.copy()
    bulky.cell[2] = [0, 0, 2 * PBE.pair_cutoff + 20]
    bulky.pbc = True
    assert abs(_d3_energy(bulky) - e) < 1e-8
    far = shifted.copy()
    far.positions[:, 0] += 100.0  # along a periodic axis: a lattice image, same energy
    assert abs(_d3_energy(far) - e) < 1e-10


def test_batched_equals_one_by_one(tiny):
    ev = Evaluator(tiny, device="cpu", dtype="float64", dispersion="d3bj")
    structures = [STRUCTURES[k]() for k in STRUCTURES]
    batched = ev.evaluate(structures, batch_size=4)
    for s, res in zip(structures, batched):
        (one,) = ev.evaluate([s], batch_size=1)
        assert abs(res["energy"] - one["energy"]) < 1e-10
        np.testing.assert_allclose(res["forces"], one["forces"], atol=1e-10)
        np.testing.assert_allclose(res["energies"], one["energies"], atol=1e-10)
        assert ("stress" in res) == bool(s.pbc.all())


def test_float32_model_gets_float32_dispersion(tiny):
    calc = HIPotCalculator(make_tiny(species=SPECIES, dtype=torch.float32), device="cpu", dtype="float32",
                           dispersion="d3bj")
    ref = HIPotCalculator(tiny, device="cpu", dtype="float64", dispersion="d3bj")
    a, b = graphite(), graphite()
    a.calc, b.calc = calc, ref
    assert abs(a.get_potential_energy() - b.get_potential_energy()) < 1e-4
    np.testing.assert_allclose(a.get_stress(), b.get_stress(), atol=1e-5)


def test_names_say_d3_was_added(tiny, calcs):
    plain, d3 = calcs
    assert d3.name == "HIENet+D3(BJ)" and plain.name == "HIENet"
    assert Evaluator(tiny, device="cpu", dispersion="d3bj").name == "HIENet+D3(BJ)"


def test_tasks_take_the_dispersion_of_the_calculator(calcs):
    """Tasks unwrap a HIPotCalculator to its Evaluator: the relaxed energy includes D3."""
    from hipot.tasks.relax import relax

    _, d3 = calcs
    (res,) = relax([graphite()], d3, fmax=0.5, steps=3)
    a = res.atoms.copy()
    a.calc = d3
    assert abs(res.energy - a.get_potential_energy()) < 1e-10


def test_unknown_dispersion_and_evaluator_conflict(tiny):
    with pytest.raises(ValueError, match="dispersion must be one of d3bj"):
        Evaluator(tiny, device="cpu", dispersion="d4")
    ev = Evaluator(tiny, device="cpu")
    with pytest.raises(ValueError, match="pass dispersion to the Evaluator"):
        HIPotCalculator(ev, dispersion="d3bj")


def test_element_without_d3_parameters():
    with pytest.raises(StructureError, match=r"structure: element\(s\) Rf have no D3 parameters"):
        D3BJ().structure(np.array([104, 1]), np.array([[0.0, 0, 0], [0, 0, 2.0]]), np.zeros((3, 3)), [False] * 3)


def test_missing_package_names_the_extra(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "dftd3.interface", None)  # import now raises ImportError
    with pytest.raises(MissingDependency, match=r"pip install 'hipot\[d3\]'"):
        HIPotCalculator(tiny, device="cpu", dispersion="d3bj")


def test_per_atom_energies_of_large_structures_are_nan(monkeypatch):
    """Above PER_ATOM_MAX_ATOMS the pair matrices are not formed: NaN per atom, the rest unchanged."""
    import hipot.dispersion as dispersion

    atoms = graphite()
    full = D3BJ().structure(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)
    monkeypatch.setattr(dispersion, "PER_ATOM_MAX_ATOMS", 3)
    big = D3BJ().structure(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)
    assert np.isnan(big["energies"]).all() and big["energy"] == full["energy"]
    np.testing.assert_array_equal(big["forces"], full["forces"])


def test_slab_in_any_orientation():
    """A triclinic slab rotated, and behind a vacuum in 3D: the same D3 energy. simple-dftd3's own
    handling of mixed periodicity (pbc T T F) is not rotation-invariant (9e-3 eV apart here, found
    by the contract, tests/test_contract.py), so hipot gives it the slab as periodic in 3D with a
    vacuum beyond its cutoffs."""
    from hipot.check import contract_structures
    from hipot.testing import random_rotation, transformed

    _, s, _ = contract_structures([8, 14])
    energies = [_d3_energy(transformed(s, R)) for R in (np.eye(3), random_rotation(0), random_rotation(1))]
    boxed = s.copy()
    n = np.cross(s.cell[0], s.cell[1])
    boxed.set_cell([s.cell[0], s.cell[1], n / np.linalg.norm(n) * 150.0], scale_atoms=False)
    boxed.pbc = True
    np.testing.assert_allclose(energies, _d3_energy(boxed), atol=1e-10, rtol=0)



def test_other_cutoffs_through_a_d3_instance(tiny):
    """dispersion= takes a D3BJ with other settings (docs/tasks.md#dispersion: the cutoff options):
    a longer pair cutoff adds the pairs between 60 and 80 Bohr, a little more binding."""
    from ase.units import Bohr

    from hipot.dispersion import D3Settings

    atoms = graphite()
    longer = Evaluator(tiny, device="cpu", dtype="float64", dispersion=D3BJ(D3Settings(pair_cutoff=80 * Bohr)))
    default = Evaluator(tiny, device="cpu", dtype="float64", dispersion="d3bj")
    assert longer.name == default.name and longer.name.endswith("+D3(BJ)")
    e_long, e_default = (ev.evaluate([atoms])[0]["energy"] for ev in (longer, default))
    assert -1e-2 < e_long - e_default < 0
