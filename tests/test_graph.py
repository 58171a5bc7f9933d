"""Neighbour lists against ASE's, and bad input rejected with a clear message."""
from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import primitive_neighbor_list

from hipot import HIPotCalculator, predict
from hipot.graph import StructureError, build_graph, neighbor_list
from conftest import make_tiny, rattled


def _pairs(i, j, S):
    return sorted(zip(i.tolist(), j.tolist(), map(tuple, np.asarray(S).tolist())))


def structures():
    tri = rattled(bulk("Cu", "fcc", a=3.6), 0.0)
    tri.set_cell([[2.5, 0.3, 0.1], [0.7, 2.9, 0.2], [0.4, -0.5, 3.1]], scale_atoms=True)
    lh = rattled(bulk("NaCl", "rocksalt", a=5.6), 0.1, seed=3)
    lh.set_cell(lh.cell.array[[2, 1, 0]])
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    mol = molecule("CH3CH2OH")
    boxed = mol.copy()
    boxed.cell = [8, 8, 8]
    wire = rattled(bulk("Cu", "fcc", a=3.6, cubic=True), 0.05)
    wire.pbc = [False, False, True]
    return {"triclinic_small": tri, "left_handed": lh, "slab": slab, "molecule": mol, "boxed": boxed, "wire": wire}


@pytest.mark.parametrize("name", list(structures()))
def test_neighbor_list_matches_ase(name):
    atoms = structures()[name]
    cutoff = 5.0
    i, j, S, d = neighbor_list(atoms, cutoff)
    ai, aj, aS = primitive_neighbor_list("ijS", atoms.pbc, atoms.cell.array, atoms.positions, cutoff,
                                         self_interaction=True)
    keep = ~((ai == aj) & np.all(aS == 0, axis=1))
    assert _pairs(i, j, S) == _pairs(ai[keep], aj[keep], aS[keep])
    g = build_graph([atoms], cutoff)
    np.testing.assert_allclose(g.edge_vectors().norm(dim=1).numpy(), d, atol=1e-12)


def test_batch_offsets():
    s = structures()
    g = build_graph([s["molecule"], s["slab"]], 5.0)
    n0 = len(s["molecule"])
    assert g.ptr.tolist() == [0, n0, n0 + len(s["slab"])]
    assert (g.batch[g.center] == g.batch[g.neighbor]).all()
    assert int(g.center[g.batch[g.center] == 1].min()) >= n0


BAD = {
    "empty": (Atoms(), "empty"),
    "nan": (Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]]), "non-finite"),
    "unknown element": (Atoms("HPo", positions=[[0, 0, 0], [0, 0, 2]]), "Po"),
    "zero cell": (Atoms("H", positions=[[0, 0, 0]], pbc=True), "zero"),
    "flat cell": (Atoms("H", positions=[[0, 0, 0]], cell=[[2, 0, 0], [0, 2, 0], [2, 2, 0]], pbc=True), "volume"),
    "overlap": (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.01]]), "overlap"),
    "nan cell": (Atoms("H", positions=[[0, 0, 0]], cell=[[np.nan, 0, 0], [0, 2, 0], [0, 0, 2]], pbc=True), "cell"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_clear_error(case):
    atoms, words = BAD[case]
    model = make_tiny(species=[1, 6, 8])
    good = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    with pytest.raises(StructureError, match=words) as info:
        predict([good, atoms], model=model, device="cpu")
    assert "structure 1" in str(info.value)
    calc = HIPotCalculator(model=model, device="cpu")
    atoms = atoms.copy()
    atoms.calc = calc
    with pytest.raises(StructureError, match=words):
        atoms.get_potential_energy()
    # the calculator still works afterwards
    good.calc = calc
    assert np.isfinite(good.get_potential_energy())


@pytest.mark.parametrize("name", ["triclinic_small", "left_handed", "slab", "molecule", "wire"])
def test_torch_neighbor_list_matches(name):
    """vesin's torch backend (used on GPUs) gives the same list; run here on the CPU."""
    import torch

    from hipot.graph import _neighbor_list_torch, gpu_neighbor_list_available

    if not gpu_neighbor_list_available():
        pytest.skip("vesin-torch is not installed")

    atoms = structures()[name]
    i, j, S, d = neighbor_list(atoms, 5.0)
    ti, tj, tS, td = _neighbor_list_torch(atoms, 5.0, torch.device("cpu"))
    assert _pairs(i, j, S) == _pairs(ti.numpy(), tj.numpy(), tS.long().numpy())


def test_small_batch_neighbor_lists_match():
    """The batched all-pairs lists used for small structures on GPUs (run here on the CPU)."""
    import torch

    from hipot.graph import small_batch_neighbor_lists

    s = structures()
    batch = [s[k] for k in ("triclinic_small", "left_handed", "slab", "molecule", "boxed", "wire")]
    moved = s["left_handed"].copy()
    moved.positions += 7.3  # unwrapped positions
    batch.append(moved)
    i, j, S, d, b = small_batch_neighbor_lists(batch, 5.0, torch.device("cpu"))
    for k, atoms in enumerate(batch):
        sel = b == k
        ri, rj, rS, _ = neighbor_list(atoms, 5.0)
        assert _pairs(i[sel].numpy(), j[sel].numpy(), S[sel].long().numpy()) == _pairs(ri, rj, rS), k


def test_build_graph_batched_small_same_graph():
    s = structures()
    batch = list(s.values())
    a = build_graph(batch, 5.0)
    b = build_graph(batch, 5.0, batch_small=True)
    for g in (a, b):
        assert g.center.numel() == a.center.numel()
    key = lambda g: sorted(zip(g.center.tolist(), g.neighbor.tolist(), map(tuple, g.cell_shift.long().tolist())))  # noqa: E731
    assert key(a) == key(b)


def test_overlap_found_in_batched_small_lists():
    good = molecule("H2O")
    bad = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.01]])
    with pytest.raises(StructureError, match="mine: atoms 0 and 1 overlap"):
        build_graph([good, bad], 5.0, labels=["ok", "mine"], batch_small=True)


def test_structures_without_edges():
    """Free atoms (reference energies) and batches with no edge at all: energy = the atoms' shifts."""
    model = make_tiny(species=[11, 17])
    frames = [Atoms("Na"), Atoms("NaCl", positions=[[0, 0, 0], [9, 0, 0]]), Atoms("Cl", cell=[20, 20, 20], pbc=True)]
    res = predict(frames, model=model, device="cpu", dtype="float64")
    for r in res:
        assert np.isfinite(r["energy"]) and np.all(r["forces"] == 0)
    # no neighbours: each atom's energy depends on its species alone
    assert abs(res[1]["energy"] - res[0]["energy"] - res[2]["energy"]) < 1e-12
    assert np.all(res[2]["stress"] == 0)
