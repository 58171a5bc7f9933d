"""`pair_style hipot`'s Python half (hipot.lammps.driver) in-process, without LAMMPS or a compiler:
one rank and simulated ranks splitting one structure (tests/fake_lammps.py) against the ASE
calculator, the exchange's negative controls, the timing counts, and hipot's per-atom stresses
and virials against LAMMPS's per-atom virials."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from hipot import Evaluator, HIPotCalculator
from hipot.checkpoint import save_model
from hipot.graph import build_graph
from conftest import make_tiny, rattled
from fake_lammps import FakeComm, gather, run, split

TOL = 1e-10  # float64; the compiled plugin is held to 1e-9 (tests/test_lammps.py)
VOIGT_LAMMPS = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])  # xx yy zz xy xz yz


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("driver") / "tiny"
    save_model(make_tiny(), path)
    return str(path)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def crystal() -> Atoms:
    a = bulk("NaCl", "rocksalt", a=5.64) * (2, 2, 1)
    a.set_cell(a.cell.array + np.array([[0.1, 0.0, 0.05], [0.0, 0.2, 0.0], [0.1, 0.0, -0.1]]), scale_atoms=True)
    return rattled(a, 0.1, seed=1)


def small_cell() -> Atoms:
    """Two atoms in a cell smaller than the cutoff: each sees many images of the other and of itself."""
    return rattled(bulk("NaCl", "rocksalt", a=3.9), 0.05, seed=2)


def slab() -> Atoms:
    """The crystal periodic along its first two cell vectors only (LAMMPS's `boundary p p f`)."""
    a = crystal()
    a.pbc = [True, True, False]
    return a


def butane() -> Atoms:
    return rattled(molecule("trans-butane"), 0.05, seed=4)


STRUCTURES = {"crystal": (crystal, ["Na", "Cl"]), "small_cell": (small_cell, ["Na", "Cl"]),
              "slab": (slab, ["Na", "Cl"]), "molecule": (butane, ["H", "C"])}


def reference(model_dir: str, atoms: Atoms) -> dict[str, np.ndarray]:
    """The evaluator's energy, forces, per-atom energies, virial and per-atom virials (LAMMPS order)."""
    ev = Evaluator(model_dir, device="cpu", dtype="float64")
    g = build_graph([atoms], ev.model.cutoff, ev.model.species, dtype=torch.float64)
    p = ev.step(g, stress=True, atom_virials=True)
    w, wa = p.virial[0].numpy(), p.atom_virials.numpy()
    return {"energy": float(p.energy[0]), "forces": p.forces.numpy(), "energies": p.energies.numpy(),
            "virial": w[VOIGT_LAMMPS], "atom_virials": wa[:, VOIGT_LAMMPS[0], VOIGT_LAMMPS[1]]}


def check(ranks, atoms, energy, virial, ref, tol=TOL) -> None:
    f, e, v = gather(ranks, len(atoms))
    assert abs(energy - ref["energy"]) < tol
    np.testing.assert_allclose(f, ref["forces"], rtol=0, atol=tol)
    np.testing.assert_allclose(e, ref["energies"], rtol=0, atol=tol)
    np.testing.assert_allclose(virial, ref["virial"], rtol=0, atol=tol)
    np.testing.assert_allclose(v, ref["atom_virials"], rtol=0, atol=tol)


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_one_rank_folds_every_ghost(model_dir, name):
    """One rank: every ghost is an image of a local atom, so the graph has the local atoms only,
    no exchange happens, and the results are the calculator's."""
    make, elements = STRUCTURES[name]
    atoms = make()
    ranks = split(atoms, 1, make_tiny().cutoff, elements)
    r = ranks[0]
    if atoms.pbc.any():
        assert r.nghost > len(atoms)  # LAMMPS-like ghosts exist, several images per atom
    energy, virial, drivers = run(ranks, [model_dir, "device", "cpu", "dtype", "float64", "timing", "yes"], elements)
    assert len(r.nodes) == len(atoms) and not r.calls  # nothing exchanged: communicate never called
    check(ranks, atoms, energy, virial, reference(model_dir, atoms))
    names, values = drivers[0].timing()
    counts = dict(zip(names.split(), values))
    assert counts["graph_nodes"] == len(atoms) and counts["exchanged_rows"] == 0 and counts["steps"] == 1


@pytest.mark.parametrize("name, nranks", [("crystal", 2), ("crystal", 3), ("small_cell", 2), ("slab", 2),
                                          ("slab", 3), ("molecule", 2),
                                          ("molecule", 5)])
def test_ranks_exchange_only_remote_rows(model_dir, name, nranks):
    """Simulated ranks: images of a rank's own atoms fold, only other ranks' atoms are ghost rows
    (one per atom), every rank makes the same communications in the same order (a molecule on
    5 ranks leaves ranks without atoms), and the results are the calculator's."""
    make, elements = STRUCTURES[name]
    atoms = make()
    ranks = split(atoms, nranks, make_tiny().cutoff, elements)
    energy, virial, drivers = run(ranks, [model_dir, "device", "cpu", "dtype", "float64", "timing", "yes"], elements)
    check(ranks, atoms, energy, virial, reference(model_dir, atoms))
    for r in ranks:
        rows = r.atom[r.nodes[r.nlocal:]]
        assert len(set(rows)) == len(rows) and not set(rows) & set(r.atom[: r.nlocal])
    assert all(r.calls == ranks[0].calls for r in ranks)
    num_exchanges = drivers[0].model.num_exchanges
    assert len(ranks[0].calls) == 2 * num_exchanges  # forward and reverse
    if name in ("crystal", "slab"):
        assert all(len(r.nodes) > r.nlocal for r in ranks)  # rows really crossed


@pytest.mark.parametrize("name", ["crystal", "slab", "molecule"])
def test_per_atom_results_are_lammps_virials(model_dir, name):
    """The public per-atom results in LAMMPS's convention, on two simulated ranks: the batched
    Evaluator's "virials" (ASE's Voigt order) are pair_style hipot's per-atom virials (LAMMPS's
    order xx yy zz xy xz yz, ghost rows added to their atoms as LAMMPS does), and ASE's
    get_stresses() are minus them over the volume (LAMMPS's compute stress/atom: minus the
    per-atom virial, in pressure x volume units)."""
    make, elements = STRUCTURES[name]
    atoms = make()
    ranks = split(atoms, 2, make_tiny().cutoff, elements)
    run(ranks, [model_dir, "device", "cpu", "dtype", "float64"], elements)
    vatom = gather(ranks, len(atoms))[2][:, [0, 1, 2, 5, 4, 3]]  # -> ASE's xx yy zz yz xz xy
    assert np.abs(vatom).max() > 1e-3 and np.abs(vatom[:, 3:]).max() > 1e-4  # off-diagonals too
    ev = Evaluator(model_dir, device="cpu", dtype="float64")
    (r,) = ev.evaluate([atoms], stresses=True, virials=True)
    np.testing.assert_allclose(r["virials"], vatom, rtol=0, atol=TOL)
    if atoms.pbc.all():
        a = atoms.copy()
        a.calc = HIPotCalculator(ev)
        np.testing.assert_allclose(a.get_stresses(), -vatom / atoms.get_volume(), rtol=0, atol=TOL)


def test_float32_ranks(model_dir):
    """float32 features travel as pairs in float64 slots, gradients added as float32."""
    atoms = crystal()
    ref = reference(model_dir, atoms)
    ranks = split(atoms, 2, make_tiny().cutoff, ["Na", "Cl"])
    energy, virial, _ = run(ranks, [model_dir, "device", "cpu", "dtype", "float32"], ["Na", "Cl"])
    f, _, _ = gather(ranks, len(atoms))
    assert abs(energy - ref["energy"]) < 1e-5
    np.testing.assert_allclose(f, ref["forces"], rtol=0, atol=5e-7)
    np.testing.assert_allclose(virial, ref["virial"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("broken", ["communication", "keyword"])
def test_without_exchange_differs(model_dir, broken):
    """Negative controls on two ranks: ghost rows that never receive their owners' features
    (a communication that zeroes them; the debugging keyword `exchange no`) give other forces."""
    atoms = crystal()
    ref = reference(model_dir, atoms)
    ranks = split(atoms, 2, make_tiny().cutoff, ["Na", "Cl"])
    args = [model_dir, "device", "cpu", "dtype", "float64"] + (["exchange", "no"] if broken == "keyword" else [])
    run(ranks, args, ["Na", "Cl"], FakeComm(ranks, broken=broken == "communication"))
    f, _, _ = gather(ranks, len(atoms))
    assert np.isfinite(f).all() and np.abs(f - ref["forces"]).max() > 1e-5
    assert bool(ranks[0].calls) == (broken == "communication")


def test_exchange_keyword_idle_on_one_rank(model_dir):
    """On one rank the debugging keyword changes nothing: there is nothing to exchange."""
    atoms = crystal()
    ranks = split(atoms, 1, make_tiny().cutoff, ["Na", "Cl"])
    run(ranks, [model_dir, "device", "cpu", "dtype", "float64", "exchange", "no"], ["Na", "Cl"])
    check(ranks, atoms, *run(split(atoms, 1, make_tiny().cutoff, ["Na", "Cl"]),
                             [model_dir, "device", "cpu", "dtype", "float64"], ["Na", "Cl"])[:2],
          reference(model_dir, atoms))
