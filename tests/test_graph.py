"""Neighbour lists against ASE's and a brute-force reference, every method the same graph, the
graph relative to each structure, and bad input rejected with a clear message."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import primitive_neighbor_list

from hipot import HIPotCalculator, predict
from hipot.derivatives import ForceStressModel
from hipot.execution import ExecutionOptions
from hipot.graph import (StructureBatch, StructureError, build_graph, build_graph_from_tensors, graph_from_lists,
                         neighbor_list, neighbor_lists)
from hipot.types import AtomGraph
from conftest import make_tiny, rattled


def _pairs(i, j, S):
    return sorted(zip(np.asarray(i).tolist(), np.asarray(j).tolist(), map(tuple, np.asarray(S).tolist())))


def _rotate(atoms: Atoms, seed: int) -> Atoms:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    atoms = atoms.copy()
    atoms.positions, atoms.cell = atoms.positions @ q.T, atoms.cell.array @ q.T
    return atoms


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
    skewed = rattled(bulk("Si", "diamond", a=5.43), 0.05, seed=4)  # the same lattice, a needle-like basis
    skewed.set_cell(np.array([[1, 0, 0], [7, 1, 0], [-5, 3, 1]]) @ skewed.cell.array)
    unwrapped = lh.copy()
    unwrapped.positions += [[7.3, -11.0, 30.2]] * len(lh)  # atoms far outside their cell
    unwrapped.positions[0] += 3 * lh.cell.array[1]
    return {"triclinic_small": tri, "left_handed": lh, "slab": slab, "molecule": mol, "boxed": boxed, "wire": wire,
            "rotated_slab": _rotate(slab, 1), "rotated_wire": _rotate(wire, 2), "skewed_basis": skewed,
            "unwrapped": unwrapped}


def _ase_list(atoms, cutoff):
    ai, aj, aS = primitive_neighbor_list("ijS", atoms.pbc, atoms.cell.array, atoms.positions, cutoff,
                                         self_interaction=True)
    keep = ~((ai == aj) & np.all(aS == 0, axis=1))
    return ai[keep], aj[keep], aS[keep]


METHODS = ["vesin", "pairs", "vesin-torch"]


def _need(method):
    from hipot.neighbors import gpu_neighbor_list_available

    if method == "vesin-torch" and not gpu_neighbor_list_available():
        pytest.skip("vesin-torch is not installed")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(structures()))
def test_neighbor_list_matches_ase(name, method):
    """Pairs and integer shifts of the input cell, for the positions as given, and distances."""
    _need(method)
    atoms = structures()[name]
    cutoff = 5.0
    i, j, S, d = neighbor_list(atoms, cutoff, method=method)
    assert _pairs(i, j, S) == _pairs(*_ase_list(atoms, cutoff))
    vec = atoms.positions[j] - atoms.positions[i] + S @ atoms.cell.array
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), d, atol=1e-9)
    g = build_graph([atoms], cutoff, method=method)
    assert g.center.numel() == len(i)
    np.testing.assert_allclose(np.sort(g.edge_vectors().norm(dim=1).numpy()), np.sort(d), atol=1e-9)


def _brute_force(atoms: Atoms, cutoff: float, reach: tuple[int, int, int]) -> list:
    """Every image within `reach` cells along each periodic direction, positions as given."""
    grid = [np.arange(-r, r + 1) if p else np.array([0]) for p, r in zip(atoms.pbc, reach)]
    shifts = np.stack(np.meshgrid(*grid, indexing="ij"), -1).reshape(-1, 3)
    p = atoms.positions
    vec = p[None, :, None] - p[:, None, None] + (shifts @ atoms.cell.array)[None, None]
    d = np.linalg.norm(vec, axis=-1)
    i, j, m = np.nonzero((d < cutoff) & ~((np.arange(len(p))[:, None, None] == np.arange(len(p))[None, :, None])
                                          & (np.abs(shifts).sum(1) == 0)[None, None]))
    return _pairs(i, j, shifts[m])


def extreme():
    """Inputs vesin cannot take as they are (huge or elongated boxes, parts far apart) and cells the
    builder reduces; each with the reach of its brute-force reference."""
    h2o = molecule("H2O")
    big = h2o.copy()
    big.cell, big.pbc = [1e7, 1e7, 1e7], True
    big.positions += 5e6
    long_box = h2o.copy()
    long_box.cell, long_box.pbc = [1e6, 3.0, 3.0], True  # an image 3 A away along y and z
    long_box.positions += [5e5, 0.0, 0.0]
    apart = molecule("CH4") + Atoms("H2", positions=[[1e6, 0, 0], [1e6, 0, 0.74]]) + Atoms("O", [[-3e5, 2e5, 0]])
    slab = fcc111("Cu", size=(2, 2, 2), vacuum=0.0)
    slab.cell[2] = [0.3, 0.2, 1e5]
    slab.pbc = [True, True, True]  # a huge periodic vacuum, and an adsorbate far away
    slab += Atoms("O", positions=[[1.0, 1.0, 5e4]])
    wire = Atoms("Cu3", positions=[[0, 0, 0], [1.2, 1.3, 0.1], [0.4, 0.5, 2e5]], cell=[2.6, 0, 0],
                 pbc=[True, False, False])
    needle = Atoms("Cu", cell=[[2.5, 0, 0], [1500, 2.5, 0], [0, 0, 3.0]], pbc=True)  # reduces to 2.5 x 2.5 x 3
    thin_2d = Atoms("Cu2", positions=[[0, 0, 0], [0.5, 0.3, 1.0]], cell=[[2.5, 0, 0], [5, 0.7, 0], [0, 0, 0]],
                    pbc=[True, True, False])
    return {"box_1e7": (big, (1, 1, 1)), "box_1e6x3x3": (long_box, (1, 3, 3)), "parts_1e6_apart": (apart, (0, 0, 0)),
            "slab_1e5_vacuum": (slab, (3, 3, 1)), "wire_far_atom": (wire, (3, 0, 0)),
            "needle_basis": (needle, (605, 3, 3)), "thin_2d_basis": (thin_2d, (14, 7, 0))}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(extreme()))
def test_extreme_inputs_exact_lists(name, method):
    _need(method)
    atoms, reach = extreme()[name]
    i, j, S, _d = neighbor_list(atoms, 4.0, method=method)
    assert _pairs(i, j, S) == _brute_force(atoms, 4.0, reach)


def test_vesin_cell_prediction_guards_the_crash():
    """vesin's cell count for an elongated box rounds to zero cells (its floating-point exception):
    the neighbour list gives vesin a larger cutoff instead (checked against a brute force in
    test_extreme_inputs_exact_lists); for 2e6 cells along one direction that is the only way."""
    from hipot.neighbors import _vesin_cells_ok, _vesin_cutoff

    assert not _vesin_cells_ok(np.array([4e5 * 4.0, 4.0, 4.0]), 4.0)
    assert _vesin_cells_ok(np.array([300.0, 300.0, 300.0]), 4.0)  # capped, but every dimension keeps cells
    assert _vesin_cutoff(np.array([1e5 * 4.0 * 1.5, 4.0, 4.0]), 4.0) > 4.0 * 1.5
    assert _vesin_cutoff(np.array([1e7, 4.0, 4.0]), 4.0) is None


def test_batch_offsets():
    s = structures()
    g = build_graph([s["molecule"], s["slab"]], 5.0)
    n0 = len(s["molecule"])
    assert g.ptr.tolist() == [0, n0, n0 + len(s["slab"])]
    assert (g.batch[g.center] == g.batch[g.neighbor]).all()
    assert int(g.center[g.batch[g.center] == 1].min()) >= n0


def _cu2(cell, pbc=True):
    return Atoms("Cu2", positions=[[0, 0, 0], [1.25, 0.7, 0.4]], cell=cell, pbc=pbc)


BAD = {
    "empty": (Atoms(), "empty"),
    "nan": (Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]]), "non-finite"),
    "far from the origin": (Atoms("H2", positions=[[0, 0, 2e9], [0, 0.7, 2e9]]), "from the origin"),
    "unknown element": (Atoms("HPo", positions=[[0, 0, 0], [0, 0, 2]]), "Po"),
    "no element": (Atoms(numbers=[0, 1], positions=[[0, 0, 0], [0, 0, 2]]), "X not supported"),
    "zero cell": (Atoms("H", positions=[[0, 0, 0]], pbc=True), "periodic along a1 but the cell vector a1 is zero"),
    "flat cell": (Atoms("H", positions=[[0, 0, 0]], cell=[[2, 0, 0], [0, 2, 0], [2, 2, 0]], pbc=True), "volume"),
    "overlap": (Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.01]]), "atoms 0 and 1 overlap"),
    "nan cell": (Atoms("H", positions=[[0, 0, 0]], cell=[[np.nan, 0, 0], [0, 2, 0], [0, 0, 2]], pbc=True), "cell"),
    # the cells of issue 13: each once crashed the interpreter, hung for minutes or gave nonsense
    "zero and parallel 2D vectors": (_cu2([[2.5, 0, 0], [5, 0, 0], [0, 0, 0]], [True, True, False]), "parallel"),
    "parallel 2D vectors": (_cu2([[2.5, 0, 0], [5, 0, 0], [0, 0, 10]], [True, True, False]), "vectors a1 and a2 are parallel"),
    "nearly parallel 2D vectors": (_cu2([[2.5, 0, 0], [5, 1e-3, 0], [0, 0, 0]], [True, True, False]),
                                   r"own periodic image: the lattice vector 2 a1 - a2 of the cell is 0.001 A"),
    "flat cell above 1e-6 A^3": (_cu2([[2.5, 0, 0], [0, 2.5, 0], [1, 1, 2e-7]]), "own periodic image"),
    "thin skewed cell": (_cu2([[3, 0, 0], [0, 3, 0], [3, 0, 0.05]]), r"own periodic image: the lattice vector a1 - a3 of"),
    "one atom, 0.3 A cell": (Atoms("Cu", cell=[0.3, 0.3, 0.3], pbc=True), "neighbours per atom"),
    "positions in nm": (Atoms("C60", positions=0.1 * np.random.default_rng(0).uniform(0, 7, (60, 3))),
                        "neighbours per atom|overlap"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_clear_error(case):
    atoms, words = BAD[case]
    model = make_tiny(species=[1, 6, 8, 29])
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


def test_own_image_overlap_found_by_the_list():
    """An atom closer to its own image than min_distance, found by the neighbour list itself (here
    the lattice check is told nothing of min_distance), says so."""
    from hipot.neighbors import find_edges
    from hipot.structures import checked_frame

    fr, n_img = checked_frame(StructureBatch.from_atoms([bulk("Cu", "fcc", a=3.6)], ["cu"]), None, 4.0, 0.0)
    with pytest.raises(StructureError, match=r"cu: atom 0 and its own periodic image \(cell shift \[.*\]\) are 2.5"):
        find_edges(fr, n_img, 4.0, min_distance=2.6)


def test_limits_are_parameters():
    dense = Atoms("Cu", cell=[0.3, 0.3, 0.3], pbc=True)
    g = build_graph([dense], 1.0, max_neighbors=1e5)  # accepted when asked for
    assert g.center.numel() > 100
    with pytest.raises(StructureError, match="overlap"):
        build_graph([molecule("H2O")], 5.0, min_distance=1.0)


def test_graph_dtype_and_device():
    s = structures()
    g = build_graph([s["slab"], s["molecule"]], 5.0, device="cpu", dtype=torch.float32)
    for t in (g.positions, g.cell, g.cell_shift):
        assert t.dtype == torch.float32
    for t in (g.center, g.neighbor, g.batch, g.ptr, g.numbers):
        assert t.dtype == torch.int64
    assert g.pbc.dtype == torch.bool
    assert build_graph([s["slab"]], 5.0).positions.dtype == torch.float64  # the default


def _energy(model, graph: AtomGraph):
    return ForceStressModel(model)(graph.to(dtype=torch.float64), ExecutionOptions())


def test_graph_relative_to_each_structure_same_energy(tiny):
    """Positions shifted, wrapped or not, cells reduced: the same graph up to float64 round-off, so
    the same energy, forces and stress."""
    s = structures()
    batch = [s["left_handed"], s["unwrapped"], s["skewed_basis"], s["slab"], s["rotated_wire"]]
    g = build_graph(batch, tiny.cutoff)
    e = _energy(tiny, g)
    e.energy = e.energy.detach()
    for k, atoms in enumerate(batch):
        far = atoms.copy()
        far.positions += [1e4, -3e4, 2e4]
        alone = _energy(tiny, build_graph([far], tiny.cutoff))
        alone.energy = alone.energy.detach()
        assert abs(float(alone.energy[0]) - float(e.energy[k])) < 1e-9
        sl = slice(int(g.ptr[k]), int(g.ptr[k + 1]))
        np.testing.assert_allclose(alone.forces.detach().numpy(), e.forces[sl].detach().numpy(), atol=1e-9)
        np.testing.assert_allclose(alone.stress[0].detach().numpy(), e.stress[k].detach().numpy(), atol=1e-10)
    # the graph's positions are those of the structure, not of its place in space
    assert float(g.positions.abs().max()) < 30


def _naive_graph(atoms: Atoms, cutoff: float) -> AtomGraph:
    """The graph as hipot built it before: input positions and cell (the negative control)."""
    i, j, S, _d = neighbor_list(atoms, cutoff)
    n = len(atoms)
    return AtomGraph(numbers=torch.from_numpy(atoms.numbers.astype(np.int64)),
                     positions=torch.from_numpy(atoms.positions.copy()), cell=torch.from_numpy(atoms.cell.array[None]),
                     pbc=torch.from_numpy(np.asarray(atoms.pbc)[None]), center=torch.from_numpy(i),
                     neighbor=torch.from_numpy(j), cell_shift=torch.from_numpy(S.astype(np.float64)),
                     batch=torch.zeros(n, dtype=torch.long), ptr=torch.tensor([0, n]))


@pytest.mark.parametrize("case", ["Si8 shifted by 1e4 A", "H2O in a 1e7 A box"])
def test_float32_far_from_the_origin(case):
    """float32 results of a structure far from the origin equal those of the same structure at
    the origin to float32 round-off; computed from the input coordinates (as before) they did not."""
    model = make_tiny(dtype=torch.float32, species=[1, 8, 14])
    if case.startswith("Si8"):
        near = rattled(bulk("Si", "diamond", a=5.43, cubic=True), 0.05, seed=2)
        far = near.copy()
        far.positions += 1e4
    else:
        near = molecule("H2O")
        far = near.copy()
        far.cell, far.pbc = [1e7, 1e7, 1e7], True
        far.center()
    ref = ForceStressModel(model)(build_graph([near], model.cutoff, dtype=torch.float32), ExecutionOptions())
    got = ForceStressModel(model)(build_graph([far], model.cutoff, dtype=torch.float32), ExecutionOptions())
    scale = float(ref.forces.abs().max())
    assert abs(float(got.energy[0].detach() - ref.energy[0].detach())) <= 2e-6 * abs(float(ref.energy[0].detach()))
    assert float((got.forces - ref.forces).abs().max()) <= 2e-5 * scale
    naive = ForceStressModel(model)(_naive_graph(far, model.cutoff).to(dtype=torch.float32), ExecutionOptions())
    assert float((naive.forces - ref.forces).abs().max()) > 100 * 2e-5 * scale  # what the test guards against


def _edge_set(g: AtomGraph):
    return sorted(zip(g.center.tolist(), g.neighbor.tolist(), map(tuple, g.cell_shift.round().long().tolist())))


def _as_tensors(batch: list[Atoms]):
    return (torch.from_numpy(np.concatenate([a.positions for a in batch])),
            torch.from_numpy(np.concatenate([a.numbers for a in batch]).astype(np.int64)),
            torch.from_numpy(np.stack([a.cell.array for a in batch])),
            torch.from_numpy(np.stack([np.asarray(a.pbc) for a in batch])),
            torch.repeat_interleave(torch.arange(len(batch)), torch.tensor([len(a) for a in batch])))


@pytest.mark.parametrize("method", METHODS)
def test_tensor_builder_same_graph(method, tiny):
    """build_graph_from_tensors (CPU tensors here) gives build_graph's graph: the same edges as sets,
    the same energies through a tiny model."""
    _need(method)
    s = structures()
    batch = list(s.values()) + [extreme()["box_1e6x3x3"][0], extreme()["needle_basis"][0]]
    ref = build_graph(batch, tiny.cutoff, tiny.species)
    got = build_graph_from_tensors(*_as_tensors(batch), tiny.cutoff, tiny.species, method=method)
    assert got.positions.dtype == torch.float64
    assert _edge_set(got) == _edge_set(ref)
    torch.testing.assert_close(got.positions, ref.positions, atol=1e-12, rtol=0)
    torch.testing.assert_close(_energy(tiny, got).energy, _energy(tiny, ref).energy, atol=1e-10, rtol=0)
    f32 = build_graph_from_tensors(*(t.float() if t.is_floating_point() else t for t in _as_tensors(batch[:3])),
                                   tiny.cutoff, tiny.species, method=method)
    assert f32.positions.dtype == torch.float32  # default dtype: the positions'


def test_tensor_builder_same_errors():
    h2o = molecule("H2O")
    for atoms, words in [BAD["unknown element"], BAD["nearly parallel 2D vectors"], BAD["overlap"], BAD["nan"]]:
        batch = [h2o, atoms]
        with pytest.raises(StructureError, match=words) as a:
            build_graph(batch, 5.0, [1, 6, 8, 29])
        with pytest.raises(StructureError) as b:
            build_graph_from_tensors(*_as_tensors(batch), 5.0, [1, 6, 8, 29])
        assert str(a.value) == str(b.value)
    pos, num, cell, pbc, idx = _as_tensors([h2o, h2o])
    with pytest.raises(StructureError, match="empty"):
        build_graph_from_tensors(pos, num, torch.cat([cell, cell[:1]]), torch.cat([pbc, pbc[:1]]), idx, 5.0)
    with pytest.raises(StructureError, match="non-decreasing"):
        build_graph_from_tensors(pos, num, cell, pbc, idx.flip(0), 5.0)


def test_graph_from_lists_is_build_graph():
    """Training's path (lists computed once per structure, joined per batch) gives the same graph."""
    s = structures()
    batch = list(s.values())
    ref = build_graph(batch, 5.0)
    lists = neighbor_lists(batch, 5.0)
    ptr = np.concatenate([[0], np.cumsum([len(a) for a in batch])])
    cat = lambda k: torch.from_numpy(np.concatenate([li[k] + (ptr[b] if k < 2 else 0)  # noqa: E731
                                                     for b, li in enumerate(lists)]))
    got = graph_from_lists(StructureBatch.from_atoms(batch), cat(0), cat(1), cat(2))
    assert _edge_set(got) == _edge_set(ref)
    torch.testing.assert_close(got.positions, ref.positions, atol=0, rtol=0)
    torch.testing.assert_close(got.cell, ref.cell, atol=0, rtol=0)


def test_training_errors_carry_the_same_reason():
    from hipot.training.data import DataError, LabelKeys, add_neighbors, sample_from_atoms

    for atoms, _words in [BAD["overlap"], BAD["one atom, 0.3 A cell"], BAD["thin skewed cell"]]:
        a = atoms.copy()
        a.info["REF_energy"] = 0.0
        sample, _ = sample_from_atoms(a, LabelKeys())
        with pytest.raises(StructureError) as ref:
            build_graph([atoms], 5.0, labels=["train.xyz:7"])
        with pytest.raises(DataError) as got:
            add_neighbors(sample, 5.0, label="train.xyz:7")
        assert str(got.value) == str(ref.value)


def test_small_batch_pairs_overlap_found():
    good = molecule("H2O")
    bad = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.01]])
    with pytest.raises(StructureError, match="mine: atoms 0 and 1 overlap"):
        build_graph([good, bad], 5.0, labels=["ok", "mine"], method="pairs")


def test_torch_neighbor_list_cpu():
    """vesin's torch backend (used on GPUs) gives the same list; run here on the CPU."""
    from hipot.neighbors import _neighbor_list_torch, gpu_neighbor_list_available

    if not gpu_neighbor_list_available():
        pytest.skip("vesin-torch is not installed")
    atoms = structures()["triclinic_small"]
    ti, tj, tS, _td = _neighbor_list_torch(atoms, 5.0, torch.device("cpu"))
    assert _pairs(ti.numpy(), tj.numpy(), tS.numpy()) == _pairs(*_ase_list(atoms, 5.0))


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


def test_missing_torch_backend_warns_once(monkeypatch):
    """Without vesin-torch, large cells on a GPU fall back to the CPU list with one warning."""
    import warnings

    import hipot.neighbors as nb

    monkeypatch.setattr(nb, "_TORCH_NL", False)
    monkeypatch.setattr(nb, "_WARNED", False)
    with pytest.warns(UserWarning, match="hipot\\[gpu\\]"):
        assert nb._gpu_list_or_warn() is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nb._gpu_list_or_warn() is False
    with pytest.raises(RuntimeError, match="hipot\\[gpu\\]"):
        build_graph([molecule("H2O")], 5.0, method="vesin-torch")


class _SyncCounter:
    """Counts what makes a GPU wait for the host's question: reading a value (`item`, `bool`, `int`),
    data-dependent shapes (`nonzero`, `unique`) and copies to the host (`.cpu()`)."""

    OPS = ("nonzero", "_unique2", "unique_dim", "unique_consecutive", "_local_scalar_dense")

    def __init__(self, monkeypatch):
        from torch.utils._python_dispatch import TorchDispatchMode

        self.count = 0
        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func.__name__.split(".")[0] in counter.OPS:
                    counter.count += 1
                return func(*args, **(kwargs or {}))

        self.mode = Mode()
        cpu = torch.Tensor.cpu

        def counted_cpu(t, *a, **k):
            counter.count += 1
            return cpu(t, *a, **k)

        monkeypatch.setattr(torch.Tensor, "cpu", counted_cpu)


@pytest.mark.parametrize("method", ["pairs", "vesin"])
def test_tensor_builder_syncs_per_batch_not_per_structure(method, monkeypatch):
    """The host waits on the device a fixed number of times per batch, not once per structure."""
    s = structures()
    kinds = [s["molecule"], s["triclinic_small"], s["slab"], s["wire"]]
    counts = []
    for n in (8, 40):
        batch = [kinds[k % 4] for k in range(n)]
        tensors = _as_tensors(batch)
        counter = _SyncCounter(monkeypatch)
        with counter.mode:
            g = build_graph_from_tensors(*tensors, 5.0, method=method)
        counts.append(counter.count)
        assert g.num_graphs == n
    assert 0 < counts[0] == counts[1] < 20, counts  # (0 would mean the counter sees nothing)
