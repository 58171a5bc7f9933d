"""Forces and stress are exact derivatives of the energy (float64, tiny random model)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from hipot import HIPotCalculator, predict
from hipot.derivatives import ForceStressModel
from hipot.execution import ExecutionOptions
from hipot.graph import build_graph
from conftest import make_tiny, rattled


def energy(model, atoms):
    return predict([atoms], model=model, device="cpu", dtype="float64")[0]["energy"]


@pytest.mark.parametrize("kind", ["crystal", "molecule", "slab"])
def test_forces_finite_difference(tiny, nacl, molecule, kind):
    atoms = {"crystal": nacl, "molecule": molecule}.get(kind)
    if kind == "slab":
        atoms = nacl.copy()
        atoms.pbc = [True, True, False]
    (res,) = predict([atoms], model=tiny, device="cpu", dtype="float64")
    h = 1e-5
    rng = np.random.default_rng(0)
    for a in rng.choice(len(atoms), size=min(3, len(atoms)), replace=False):
        for d in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, d] += h
            minus.positions[a, d] -= h
            fd = -(energy(tiny, plus) - energy(tiny, minus)) / (2 * h)
            assert abs(fd - res["forces"][a, d]) < 1e-6 * max(1.0, abs(fd)), (a, d, fd, res["forces"][a, d])


@pytest.mark.slow
@pytest.mark.parametrize("left_handed", [False, True])
def test_stress_finite_strain(tiny, nacl, left_handed):
    atoms = nacl.copy()
    if left_handed:  # the same crystal described by a left-handed cell: its stress must not flip
        atoms.set_cell(atoms.cell.array[[1, 0, 2]], scale_atoms=False)
        assert np.linalg.det(atoms.cell.array) < 0
    (res,) = predict([atoms], model=tiny, device="cpu", dtype="float64")
    h = 1e-6
    volume = abs(np.linalg.det(atoms.cell.array))
    fd = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            eps = np.zeros((3, 3))
            eps[i, j] = eps[j, i] = h / 2 if i != j else h
            es = []
            for sign in (1, -1):
                s = atoms.copy()
                s.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
                es.append(energy(tiny, s))
            fd[i, j] = (es[0] - es[1]) / (2 * h) / volume
    from ase.stress import full_3x3_to_voigt_6_stress

    np.testing.assert_allclose(res["stress"], full_3x3_to_voigt_6_stress(fd), atol=1e-8)


def test_left_handed_same_as_right_handed(tiny, nacl):
    lh = nacl.copy()
    lh.set_cell(-nacl.cell.array, scale_atoms=False)  # det < 0, same lattice
    r0, r1 = predict([nacl, lh], model=tiny, device="cpu", dtype="float64")
    assert abs(r0["energy"] - r1["energy"]) < 1e-10
    np.testing.assert_allclose(r1["stress"], r0["stress"], atol=1e-12)


def test_forces_sum_to_zero(tiny, nacl, molecule):
    for r in predict([nacl, molecule], model=tiny, device="cpu", dtype="float64"):
        np.testing.assert_allclose(r["forces"].sum(0), 0, atol=1e-10)


def test_energies_sum_to_energy(tiny, nacl):
    (r,) = predict([nacl], model=tiny, device="cpu", dtype="float64")
    assert abs(r["energies"].sum() - r["energy"]) < 1e-10


def test_no_stress_without_full_periodicity(tiny, molecule):
    boxed = molecule.copy()
    boxed.cell = [10, 10, 10]  # a box, but not periodic
    slab = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    slab.pbc = [True, True, False]
    results = predict([molecule, boxed, slab], model=make_tiny(species=[1, 6, 8, 29]), device="cpu", dtype="float64")
    for r in results:
        assert "stress" not in r
        assert np.all(np.isfinite(r["forces"])) and np.isfinite(r["energy"])
    calc = HIPotCalculator(model=tiny, device="cpu", dtype="float64")
    molecule = molecule.copy()
    molecule.calc = calc
    assert np.isfinite(molecule.get_potential_energy())
    from ase.calculators.calculator import PropertyNotImplementedError

    calls = []
    evaluate = calc.evaluator.evaluate
    calc.evaluator.evaluate = lambda *a, **kw: calls.append(1) or evaluate(*a, **kw)
    with pytest.raises(PropertyNotImplementedError):
        molecule.get_stress()
    assert not calls  # refused before a second evaluation of the same structure
    assert np.isfinite(molecule.get_potential_energy()) and not calls


def test_isolated_atom_and_small_cell(tiny):
    """An atom with no neighbour, and a cell much smaller than the cutoff (many self-images)."""
    lone = Atoms("Na", positions=[[0, 0, 0]])
    tiny_cell = Atoms("Cu", positions=[[0, 0, 0]], cell=[[1.8, 1.8, 0], [0, 1.8, 1.8], [1.8, 0, 1.8]], pbc=True)
    model = make_tiny(species=[11, 29])
    r_lone, r_small = predict([lone, tiny_cell], model=model, device="cpu", dtype="float64")
    np.testing.assert_allclose(r_lone["forces"], 0, atol=1e-14)
    assert np.isfinite(r_lone["energy"])
    np.testing.assert_allclose(r_small["forces"], 0, atol=1e-10)  # one atom per cell: no net force
    g = build_graph([tiny_cell], model.cutoff, model.species)
    assert g.center.numel() == 18 and bool((g.center == g.neighbor).all())


def test_training_mode_gradients_flow(nacl):
    """With create_graph the force loss can be differentiated w.r.t. the weights."""
    model = make_tiny().train()
    g = build_graph([nacl], model.cutoff, model.species).to(dtype=torch.float64)
    pred = ForceStressModel(model)(g, ExecutionOptions.training())
    loss = pred.forces.pow(2).mean() + pred.stress.pow(2).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(gr is not None for gr in grads)
    assert any(gr.abs().sum() > 0 for gr in grads)


@pytest.mark.parametrize("chunk", [1 << 17, 7])
def test_recompute_gives_same_derivatives(nacl, chunk):
    model = ForceStressModel(make_tiny())
    g = build_graph([nacl], model.cutoff, model.species).to(dtype=torch.float64)
    ref = model(g)
    got = model(g, ExecutionOptions(recompute=True, edge_chunk=chunk))
    torch.testing.assert_close(got.energy, ref.energy, atol=1e-12, rtol=0)
    torch.testing.assert_close(got.forces, ref.forces, atol=1e-12, rtol=0)
    torch.testing.assert_close(got.stress, ref.stress, atol=1e-12, rtol=0)


def test_folded_edge_linear_equals_unfolded(nacl):
    """In evaluation the radial -> edge -> MLP linear maps are folded into one; training with
    dropout keeps them apart. Both compute the same function."""
    net = make_tiny(dropout=0.1, dropout_attn=0.0)
    model = ForceStressModel(net)
    g = build_graph([nacl], model.cutoff, model.species).to(dtype=torch.float64)
    ref = model(g)
    net.train()
    for m in net.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 1e-300  # active code path, numerically the identity
    got = model(g)
    torch.testing.assert_close(got.energy, ref.energy, atol=1e-10, rtol=0)
    torch.testing.assert_close(got.forces, ref.forces, atol=1e-10, rtol=0)


@pytest.mark.parametrize("layout", ["padded", "edges"])
def test_inference_paths_give_same_derivatives(nacl, layout):
    """The inference options (radial hidden layer kept, with and without recomputing atom runs or
    edge chunks) give the ordinary path's energy, forces and stress."""
    net = make_tiny()
    net.set_backend(layout)
    model = ForceStressModel(net)
    g = build_graph([nacl], model.cutoff, model.species).to(dtype=torch.float64)
    ref = model(g)
    for recompute in (False, True):
        got = model(g, ExecutionOptions.inference(recompute=recompute, edge_chunk=7))
        for f in ("energy", "forces", "stress"):
            torch.testing.assert_close(getattr(got, f), getattr(ref, f), atol=1e-12, rtol=0)


@pytest.mark.slow
def test_cuequivariance_lean_and_frozen_finetuning(nacl):
    """cuEquivariance kernels (their plain-PyTorch method on the CPU): the inference path equals
    the reference, and training with frozen blocks still differentiates the force loss."""
    pytest.importorskip("cuequivariance_torch")
    net = make_tiny()
    model = ForceStressModel(net)
    g = build_graph([nacl], model.cutoff, model.species).to(dtype=torch.float64)
    ref = model(g)
    net.set_backend("cueq")
    got = model(g, ExecutionOptions.inference())
    for f in ("energy", "forces", "stress"):
        torch.testing.assert_close(getattr(got, f), getattr(ref, f), atol=1e-10, rtol=0)
    net.train()
    for p in net.blocks.parameters():
        p.requires_grad_(False)
    pred = model(g, ExecutionOptions.training())
    (pred.forces.pow(2).mean() + pred.stress.pow(2).mean()).backward()
    assert net.embedding.grad is not None and net.embedding.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["crystal", "molecule"])
def test_virial_and_atom_virials(tiny, nacl, molecule, kind):
    """The virial is -stress |V| for a crystal and sum_i r_i (x) F_i for a molecule (whose forces
    sum to zero); the per-atom virials sum to it, and float64 edge vectors give float64 outputs
    from a float32 model (what LAMMPS passes)."""
    atoms = nacl if kind == "crystal" else molecule
    model = ForceStressModel(tiny)
    g = build_graph([atoms], model.cutoff, model.species, dtype=torch.float64)
    pred = model(g, stress=True, atom_virials=True)
    w = pred.virial[0]
    torch.testing.assert_close(pred.atom_virials.sum(0), w, atol=1e-12, rtol=0)
    torch.testing.assert_close(w, w.T, atol=1e-14, rtol=0)
    if kind == "crystal":
        volume = abs(float(np.linalg.det(atoms.cell.array)))
        torch.testing.assert_close(-pred.stress[0] * volume, w, atol=1e-12, rtol=0)
    else:
        r = torch.as_tensor(atoms.positions)
        rf = r.T @ pred.forces
        torch.testing.assert_close(0.5 * (rf + rf.T), w, atol=1e-10, rtol=0)
    pred32 = ForceStressModel(make_tiny(dtype=torch.float32)).predict(g.potential_input(), atom_virials=True)
    assert pred32.forces.dtype == pred32.virial.dtype == pred32.atom_virials.dtype == torch.float64
    torch.testing.assert_close(pred32.forces, pred.forces, atol=1e-5, rtol=0)
