"""Per-atom virials and stresses: the statements of `hipot.types.Prediction` checked from scratch
(each atom half of every edge touching it, virial = -dE/d(strain), ASE stresses = -W_i / |V|),
then through the ASE calculator (`get_stresses()`, computed only when asked, never twice, refused
for molecules, slabs and D3 without evaluating) and the batched Evaluator (mixed batches, both
keys, D3 refused). LAMMPS's per-atom virials: tests/test_lammps_driver.py; torch-sim:
tests/test_torchsim.py; the contract's per-atom sums and their negative controls:
tests/test_contract.py."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from ase.calculators.calculator import PropertyNotImplementedError
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

from conftest import make_tiny
from hipot import Evaluator, HIPotCalculator
from hipot.check import contract_structures
from hipot.graph import build_graph


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator(make_tiny(), device="cpu", dtype="float64")


@pytest.fixture(scope="module")
def structures(evaluator):
    """A rattled triclinic crystal, the same as a slab, a molecule (hipot.check's)."""
    return contract_structures(evaluator.model.species)


def counted(evaluator: Evaluator) -> list[int]:
    """Counts the evaluator's model evaluations (its `step`s) from now on: [count]."""
    calls = [0]
    step = evaluator.step

    def counting(*a, **kw):
        calls[0] += 1
        return step(*a, **kw)

    evaluator.step = counting
    return calls


def test_statements_of_prediction(evaluator, structures, nacl):
    """From scratch, on a crystal and a molecule: the per-atom virials are -1/2 sym(d_e (x) dE/dd_e)
    summed over the edges touching each atom (a loop over edges, from the model's own gradient);
    the virial is -dE/d(strain) (central differences of the energy); ASE's per-atom stresses are
    -W_i / |V|, summing to the stress."""
    model = evaluator.model
    for atoms in (nacl, structures[2]):
        g = build_graph([atoms], model.cutoff, model.species, dtype=torch.float64)
        pred = evaluator.step(g, stress=True, atom_virials=True)
        vec = g.edge_vectors().detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(g.numbers, g.center, g.neighbor, vec, g.num_atoms).sum(), vec)
        want = np.zeros((len(atoms), 3, 3))
        for c, n, d, ge in zip(g.center.tolist(), g.neighbor.tolist(), vec.detach().numpy(), grad.numpy()):
            share = -0.25 * (np.outer(d, ge) + np.outer(ge, d))  # half of -sym(d (x) g) to each end
            want[c] += share
            want[n] += share
        np.testing.assert_allclose(pred.atom_virials.numpy(), want, atol=1e-12, rtol=0)
        np.testing.assert_allclose(want.sum(0), pred.virial[0].numpy(), atol=1e-12, rtol=0)
        assert np.abs(want).max() > 1e-3  # not trivially zero
        if atoms.pbc.all():
            volume = abs(atoms.get_volume())
            np.testing.assert_allclose(pred.atom_stresses.numpy(), -want / volume, atol=1e-14, rtol=0)
            np.testing.assert_allclose(pred.atom_stresses.sum(0).numpy(), pred.stress[0].numpy(), atol=1e-14, rtol=0)
        else:
            assert not pred.atom_stresses.any()  # no volume: zeros, as the stress
    # virial = -dE/d(strain), LAMMPS's sign (the contract checks the stress = -W/V the same way)
    h, w = 1e-4, evaluator.evaluate([nacl], virials=True)[0]["virials"].sum(0)
    for k, (i, j) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        e = []
        for step in (h, -h):
            eps = np.eye(3)
            eps[i, j] += step / 2
            eps[j, i] += step / 2
            a = nacl.copy()
            a.set_cell(nacl.cell.array @ eps, scale_atoms=True)
            e.append(evaluator.evaluate([a], stress=False)[0]["energy"])
        assert abs(-(e[0] - e[1]) / (2 * h) - w[k]) < 1e-6 * max(1.0, abs(w[k])), (i, j)


def test_calculator_stresses(evaluator, structures):
    """get_stresses(): (N, 6) summing to get_stress(), the Evaluator's per-atom stresses; computed
    only when asked; once computed, every other property without evaluating again."""
    crystal = structures[0]
    calc = HIPotCalculator(evaluator)
    assert "stresses" in calc.implemented_properties
    calls = counted(evaluator)
    try:
        a = crystal.copy()
        a.calc = calc
        stresses = a.get_stresses()
        assert stresses.shape == (len(a), 6) and calls[0] == 1
        a.get_stress(), a.get_forces(), a.get_potential_energy(), a.get_potential_energies()
        assert calls[0] == 1  # all came with the per-atom stresses
        np.testing.assert_allclose(stresses.sum(0), a.get_stress(), atol=1e-14, rtol=0)
        (ref,) = evaluator.evaluate([crystal], stresses=True, virials=True)
        np.testing.assert_allclose(stresses, ref["stresses"], atol=1e-15, rtol=0)
        np.testing.assert_allclose(stresses, -ref["virials"] / crystal.get_volume(), atol=1e-15, rtol=0)
        full = a.get_stresses(voigt=False)
        np.testing.assert_allclose(full, full.transpose(0, 2, 1))  # ASE's Voigt order: yz, xz, xy
        np.testing.assert_allclose(full_3x3_to_voigt_6_stress(full), stresses)
        # not asked, not computed: an energy call leaves them out, asking then evaluates once
        b = crystal.copy()
        b.positions[0, 0] += 0.01  # another structure: the calculator's results go
        b.calc = calc
        calls[0] = 0
        b.get_potential_energy()
        assert "stresses" not in calc.results and "stress" in calc.results
        b.get_stresses()
        b.get_stress()
        assert calls[0] == 2
    finally:
        del evaluator.step


@pytest.mark.parametrize("which", [1, 2])
def test_calculator_refuses_without_a_3d_cell(evaluator, structures, which):
    """A slab or molecule: PropertyNotImplementedError, as for get_stress(), before evaluating, or
    after an energy without a second evaluation."""
    calc = HIPotCalculator(evaluator)
    calls = counted(evaluator)
    try:
        a = structures[which].copy()
        a.calc = calc
        with pytest.raises(PropertyNotImplementedError, match="stresses is defined only for structures periodic"):
            a.get_stresses()
        assert calls[0] == 0
        a.get_potential_energy()
        with pytest.raises(PropertyNotImplementedError, match="periodic in all three"):
            a.get_stresses()
        assert calls[0] == 1
    finally:
        del evaluator.step


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_evaluator_mixed_batches(structures, nacl, dtype):
    """Crystals, a slab and a molecule together, in batches of every size: "stresses" for the
    periodic ones, summing to the stress; "virials" for all, summing to -stress V (crystal) or
    sym(sum_i r_i (x) F_i) (molecule); the same in any batch as alone; neither unless asked."""
    ev = Evaluator(make_tiny(), device="cpu", dtype=dtype)
    tol = 1e-12 if dtype == "float64" else 1e-5
    batch = [structures[0], structures[2], nacl, structures[1]]
    alone = [ev.evaluate([a], stresses=True, virials=True)[0] for a in batch]
    assert all("stresses" not in r and "virials" not in r for r in ev.evaluate(batch))
    for size in (2, 4):
        for atoms, r, ref in zip(batch, ev.evaluate(batch, batch_size=size, stresses=True, virials=True), alone):
            assert r["virials"].shape == (len(atoms), 6)
            np.testing.assert_allclose(r["virials"], ref["virials"], atol=tol * 100, rtol=0)
            w = voigt_6_to_full_3x3_stress(r["virials"].sum(0))
            if atoms.pbc.all():
                assert r["stresses"].shape == (len(atoms), 6)
                np.testing.assert_allclose(r["stresses"], ref["stresses"], atol=tol, rtol=0)
                np.testing.assert_allclose(r["stresses"].sum(0), r["stress"], atol=tol, rtol=0)
                np.testing.assert_allclose(w, -voigt_6_to_full_3x3_stress(r["stress"]) * atoms.get_volume(),
                                           atol=tol * 100, rtol=0)
            else:
                assert "stresses" not in r and "stress" not in r
                if not atoms.pbc.any():
                    rf = atoms.positions.T @ r["forces"]
                    np.testing.assert_allclose(w, 0.5 * (rf + rf.T), atol=tol * 100, rtol=0)
    # only the per-atom stresses asked: no virials key, and none computed for a batch without a 3D cell
    (r,) = ev.evaluate([nacl], stresses=True)
    assert "stresses" in r and "virials" not in r
    assert "stresses" not in ev.evaluate([structures[2]], stresses=True)[0]


@pytest.mark.skipif(not importlib.util.find_spec("dftd3"), reason="needs simple-dftd3 (pip install 'hipot[d3]')")
def test_dispersion_gives_no_per_atom_virials(structures):
    """simple-dftd3 has no per-atom virials: with D3 on, per-atom stresses and virials are refused
    before any evaluation (ValueError; the calculator does not implement 'stresses'), never the
    model's alone, which would not sum to the total."""
    ev = Evaluator(make_tiny(), device="cpu", dtype="float64", dispersion="d3bj")
    calls = counted(ev)
    for kw in ({"stresses": True}, {"virials": True}):
        with pytest.raises(ValueError, match="no per-atom virials"):
            ev.evaluate(structures, **kw)
    calc = HIPotCalculator(ev)
    assert "stresses" not in calc.implemented_properties
    a = structures[0].copy()
    a.calc = calc
    with pytest.raises(PropertyNotImplementedError):
        a.get_stresses()
    with pytest.raises(PropertyNotImplementedError, match="no per-atom stresses with dispersion"):
        calc.calculate(a, ["stresses"])
    assert calls[0] == 0
    assert "stresses" in HIPotCalculator(make_tiny(), device="cpu").implemented_properties  # the class keeps it
    a.get_stress()
    assert calls[0] == 1 and "stresses" not in calc.results
