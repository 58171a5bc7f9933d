"""Fuzz: a few hundred random and degenerate structures, each a finite result or hipot's own error.

The graph builder runs over the whole set in one child process: a floating-point exception in a
neighbour list kills the interpreter, and the child's death (or a hang past its timeout) fails the
test instead of the test run. The child reports, per structure, the outcome and the number of
edges; the parent then checks the outcomes and that edges stay bounded (a degenerate cell once gave
328,712 edges for 2 atoms), and evaluates the structures that gave a graph with a tiny model,
batched and one by one. Negative controls show that the same harness catches what it is for:
vesin called directly on such inputs, as the graph builder once did, dies or returns absurd lists.

    python tests/test_fuzz.py --time    # build_graph over the fuzz set: outcomes and time
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule

SEED = 20261201
SPECIES = [1, 6, 8, 11, 14, 17, 29]  # the tiny test model's (tests/conftest.py)
CUTOFF = 4.0
MAX_EDGES_PER_ATOM = 2000  # hipot's default max_neighbors: the builder's estimate keeps lists below this
ROOT = Path(__file__).resolve().parents[1]


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def fuzz_structures(seed: int = SEED) -> list[tuple[str, Atoms]]:
    """(kind, structure) pairs, the same for a given seed."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, Atoms]] = []
    z = lambda n: rng.choice(SPECIES, size=n)  # noqa: E731

    def add(kind, atoms):
        out.append((kind, atoms))

    def random_cell(scale=(2.0, 8.0)):
        lengths = rng.uniform(*scale, 3)
        return (np.eye(3) + rng.normal(scale=0.25, size=(3, 3))) * lengths[:, None]

    for _ in range(50):  # molecules and clusters, some with overlapping atoms
        n = int(rng.integers(1, 12))
        add("molecule", Atoms(z(n), positions=rng.uniform(0, 1.6 * n ** (1 / 3) + 1, (n, 3))))
    for _ in range(60):  # random cells, random periodicity, atoms inside
        n = int(rng.integers(1, 8))
        cell = random_cell()
        add("random cell", Atoms(z(n), scaled_positions=rng.uniform(0, 1, (n, 3)), cell=cell,
                                 pbc=rng.integers(0, 2, 3).astype(bool)))
    for name in ("Si", "Cu", "NaCl"):  # crystals: rattled, strained, skewed supercells, rotated
        base = {"Si": bulk("Si", "diamond", a=5.43), "Cu": bulk("Cu", "fcc", a=3.6),
                "NaCl": bulk("NaCl", "rocksalt", a=5.64)}[name]
        for _ in range(8):
            a = base.copy()
            p = np.eye(3, dtype=int) + rng.integers(-2, 3, (3, 3)) * (rng.uniform() < 0.5)
            if abs(np.linalg.det(p)) < 0.5 or abs(np.linalg.det(p)) > 6:
                p = np.eye(3, dtype=int)
            from ase.build import make_supercell
            a = make_supercell(a, p)
            a.set_cell(a.cell.array @ (np.eye(3) + rng.normal(scale=0.03, size=(3, 3))), scale_atoms=True)
            a.positions += rng.normal(scale=0.05, size=a.positions.shape)
            r = _rotation(rng)
            a.positions, a.cell = a.positions @ r.T, a.cell.array @ r.T
            add("crystal", a)
    for _ in range(12):  # slabs and wires in rotated frames
        s = fcc111("Cu", size=(2, 2, int(rng.integers(1, 4))), vacuum=float(rng.uniform(0, 30)))
        r = _rotation(rng)
        s.positions, s.cell = s.positions @ r.T, s.cell.array @ r.T
        add("slab", s)
        w = bulk("Cu", "fcc", a=3.6, cubic=True)
        w.pbc = np.roll([False, False, True], int(rng.integers(0, 3)))
        w.positions += rng.normal(scale=0.05, size=w.positions.shape)
        add("wire", w)
    for _ in range(70):  # degenerate and nearly degenerate cells, mixed periodicity
        n = int(rng.integers(1, 4))
        a = rng.uniform(1.5, 4) * np.array([1.0, 0, 0])
        b = rng.uniform(1.5, 4) * _unit(rng)
        c = rng.uniform(1.5, 4) * _unit(rng)
        eps = 10.0 ** rng.uniform(-14, -1)
        kind = int(rng.integers(0, 6))
        cell = [np.array([a, b, c]),
                np.array([a, 2 * a, c]),  # exactly parallel
                np.array([a, 2 * a + eps * b, c]),  # nearly parallel
                np.array([a, b, a + b + eps * c]),  # nearly coplanar
                np.array([a, b, np.zeros(3)]),  # a zero vector
                np.array([a, b, c]) * 10.0 ** rng.uniform(-3, 0)][kind]  # tiny cell
        pbc = rng.integers(0, 2, 3).astype(bool)
        if rng.uniform() < 0.5:
            pbc[:2] = True
        add("degenerate cell", Atoms(z(n), positions=rng.uniform(0, 3, (n, 3)), cell=cell, pbc=pbc))
    for _ in range(24):  # huge boxes, cubic and elongated
        m = molecule(str(rng.choice(["H2O", "CH4", "C2H6", "HCl"])))
        size = 10.0 ** rng.uniform(2, 8.5)
        lengths = np.array([size, size, size]) if rng.uniform() < 0.5 else np.array([size, 3.0, 3.0])
        m.cell = np.diag(rng.permutation(lengths))
        m.pbc = rng.integers(0, 2, 3).astype(bool)
        m.center()
        add("huge box", m)
    for _ in range(20):  # far from the origin, periodic or not
        a = bulk("Si", "diamond", a=5.43, cubic=True) if rng.uniform() < 0.5 else molecule("CH3CH2OH")
        a.positions += rng.normal(scale=0.03, size=a.positions.shape) + 10.0 ** rng.uniform(2, 10) * _unit(rng)
        add("far from origin", a)
    for _ in range(12):  # parts far apart (vesin's cell list once died on these)
        a = molecule("H2O")
        far = Atoms(z(2), positions=[[0, 0, 0], [0, 0, 1.2]])
        far.positions += 10.0 ** rng.uniform(3, 9) * _unit(rng)
        b = a + far
        if rng.uniform() < 0.5:
            b.cell, b.pbc = np.diag([2.7, 30, 30]), [True, False, False]
        add("far apart", b)
    bad = [Atoms(), Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]]),
           Atoms("H", positions=[[0, 0, 0]], cell=[[np.inf, 0, 0], [0, 2, 0], [0, 0, 2]], pbc=True),
           Atoms("HHe", positions=[[0, 0, 0], [0, 0, 1.5]]), Atoms(numbers=[0, 1], positions=[[0, 0, 0], [1, 0, 0]]),
           Atoms("H2", positions=[[0, 0, 0], [0, 0, 0]]), Atoms("Cu", cell=[0.3, 0.3, 0.3], pbc=True),
           Atoms("H", positions=[[0, 0, 0]], pbc=True), Atoms("Na"), Atoms("Cl", cell=[30, 30, 30], pbc=True)]
    for a in bad:
        add("bad or single", a)
    for kind, a in CONTROLS.items():
        add(kind, a.copy())
    return out


# the cells the negative controls give to vesin directly (also in the fuzz set)
CONTROLS = {
    "fpe cell": Atoms("Cu2", positions=[[0, 0, 0], [1.25, 0.7, 0.4]], cell=[[2.5, 0, 0], [5, 0, 0], [0, 0, 0]],
                      pbc=[True, True, False]),  # vesin's cell list died of a floating-point exception
    "near-parallel cell": Atoms("Cu2", positions=[[0, 0, 0], [1.25, 0.7, 0.4]],
                                cell=[[2.5, 0, 0], [5, 1e-3, 0], [0, 0, 0]], pbc=[True, True, False]),
}


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


# ----------------------------------------------------------------------------- the child process

def _child(path: str, mode: str) -> None:
    """Build every structure's graph (or, for a negative control, give its structure to vesin the
    way hipot once did) and write one JSON line per structure as soon as it is done."""
    if mode == "graph":
        import torch

        torch.set_num_threads(1)
        from hipot.graph import StructureError, build_graph
    else:
        StructureError = ValueError  # noqa: N806 (the old code's one check raised a ValueError)

    with open(path, "w") as f:
        for k, (kind, atoms) in enumerate(fuzz_structures()):
            if mode != "graph" and kind != mode:  # a negative control: that structure only
                continue
            t = time.perf_counter()
            rec = {"k": k, "kind": kind, "n": len(atoms)}
            try:
                if mode != "graph":
                    rec["edges"] = _raw_vesin_edges(atoms)
                else:
                    g = build_graph([atoms], CUTOFF, SPECIES)
                    rec["edges"] = int(g.center.numel())
                    if rec["edges"]:
                        rec["dmin"] = float(g.edge_vectors().norm(dim=1).min())
                rec["outcome"] = "graph"
            except StructureError as e:
                rec["outcome"], rec["error"] = "StructureError", str(e)
            except Exception as e:  # anything else is a bug: reported, not hidden
                rec["outcome"], rec["error"] = type(e).__name__, str(e)
            rec["seconds"] = time.perf_counter() - t
            f.write(json.dumps(rec) + "\n")
            f.flush()


def _raw_vesin_edges(atoms: Atoms) -> int:
    """The neighbour list as hipot built it before its cell checks: vesin on the cell as given,
    zero non-periodic vectors replaced by a normal (the negative control)."""
    import vesin

    cell = atoms.cell.array.copy()
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.any():
        cell = np.eye(3)
    for d in np.where(~pbc)[0]:
        if np.linalg.norm(cell[d]) < 1e-6:
            o = [cell[k] for k in range(3) if k != d]
            v = np.cross(o[0], o[1])
            cell[d] = v / max(np.linalg.norm(v), 1e-12)
    if pbc.all() and abs(np.linalg.det(cell)) < 1e-6:
        raise ValueError("zero volume")  # the one check hipot had
    i, _j = vesin.NeighborList(cutoff=CUTOFF, full_list=True).compute(atoms.positions, cell, pbc.tolist(), "ij")
    return int(len(i))


def run_child(tmp_path: Path, mode: str = "graph", timeout: float = 600) -> tuple[int | None, list[dict]]:
    """(exit status or None if killed on timeout, the records written before it ended)."""
    out = tmp_path / f"fuzz_{mode.replace(' ', '_')}.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                                       os.environ.get("PYTHONPATH", "")]))
    try:
        r = subprocess.run([sys.executable, __file__, "--child", str(out), mode], env=env, timeout=timeout,
                           capture_output=True, text=True)
        rc: int | None = r.returncode
        if rc:
            print(r.stderr[-2000:])  # shown by pytest when the test fails
    except subprocess.TimeoutExpired:
        rc = None
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return rc, records


# ----------------------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    rc, records = run_child(tmp_path_factory.mktemp("fuzz"))
    return rc, records


@pytest.fixture
def one_thread():
    """Small structures run fastest on one thread (and a shared 2-core machine stays usable)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_fuzz_every_outcome_is_a_graph_or_our_error(fuzz):
    rc, records = fuzz
    structures = fuzz_structures()
    assert rc == 0, f"the graph builder's process ended with {rc} after {len(records)} of {len(structures)}"
    assert len(records) == len(structures)
    outcomes = Counter(r["outcome"] for r in records)
    others = [r for r in records if r["outcome"] not in ("graph", "StructureError")]
    assert not others, others[:5]
    # the fuzz set exercises both outcomes, and every kind gives some graphs
    assert outcomes["graph"] > 100 and outcomes["StructureError"] > 40, outcomes
    by_kind = Counter(r["kind"] for r in records if r["outcome"] == "graph")
    assert set(by_kind) == {kind for kind, _ in structures} - set(CONTROLS), by_kind
    assert all(r["outcome"] == "StructureError" for r in records if r["kind"] in CONTROLS)
    for r in records:
        if r["outcome"] == "graph":
            assert r["edges"] <= MAX_EDGES_PER_ATOM * r["n"], r  # bounded work and memory
            assert r.get("dmin", 1.0) >= 0.1, r  # no overlap let through
        else:
            assert r["error"].startswith("structure 0: "), r  # names the structure and says why
            assert len(r["error"]) > 30, r


def test_fuzz_batched_equals_one_by_one(fuzz, one_thread):
    """The structures that gave a graph, evaluated in batches and alone: the same numbers."""
    from conftest import make_tiny

    from hipot import predict

    _rc, records = fuzz
    structures = fuzz_structures()
    good = [structures[r["k"]][1] for r in records if r["outcome"] == "graph"]
    model = make_tiny()
    batched = predict(good, model=model, device="cpu", dtype="float64", batch_size=16)
    for k in range(0, len(good), 7):  # every 7th alone (enough to catch a batching error, and fast)
        (alone,) = predict([good[k]], model=model, device="cpu", dtype="float64")
        assert np.isfinite(alone["energy"]) and np.all(np.isfinite(alone["forces"]))
        assert abs(alone["energy"] - batched[k]["energy"]) <= 1e-9 * max(1.0, abs(alone["energy"]))
        np.testing.assert_allclose(batched[k]["forces"], alone["forces"], atol=1e-9)
    assert all(np.isfinite(r["energy"]) and np.all(np.isfinite(r["forces"])) for r in batched)


def test_negative_control_raw_vesin_dies_or_explodes(tmp_path):
    """The harness catches what it is for: two degenerate cells of the fuzz set, listed by vesin
    the way hipot did before its cell checks, kill the child (floating-point exception) or give
    far more edges than the bound."""
    rc, records = run_child(tmp_path, "fpe cell", timeout=120)
    assert rc not in (0, None) and not records  # died before writing its record (SIGFPE: -8)
    rc, records = run_child(tmp_path, "near-parallel cell", timeout=120)
    assert rc == 0 and records[0]["edges"] > MAX_EDGES_PER_ATOM * records[0]["n"], records


def test_negative_control_vesin_fpe_in_subprocess():
    """vesin itself on the cell that used to kill hipot: the process dies with SIGFPE. hipot's
    prediction of vesin's cell count says so (and the graph builder never gives vesin such a box)."""
    from hipot.neighbors import _vesin_cells_ok

    code = ("import numpy as np, vesin\n"
            "vesin.NeighborList(cutoff=4.0, full_list=True).compute(np.array([[0., 0, 0], [1e6, 0, 0]]), "
            "np.eye(3), [False] * 3, 'ij')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert r.returncode != 0  # -8 (SIGFPE) on Linux
    assert not _vesin_cells_ok(np.array([1e6 * 1.01, 1.0, 1.0]), 4.0)
    assert _vesin_cells_ok(np.array([1e5, 1.0, 1.0]), 4.0)


def _time_fuzz() -> None:
    import torch

    from hipot.graph import StructureError, build_graph

    torch.set_num_threads(1)
    structures = fuzz_structures()
    build_graph([structures[60][1]], CUTOFF, SPECIES)  # warm-up
    t0 = time.perf_counter()
    outcomes: Counter = Counter()
    for _kind, atoms in structures:
        try:
            build_graph([atoms], CUTOFF, SPECIES)
            outcomes["graph"] += 1
        except StructureError:
            outcomes["StructureError"] += 1
    total = time.perf_counter() - t0
    print(f"build_graph over {len(structures)} fuzz structures one by one: {total:.2f} s "
          f"({1e3 * total / len(structures):.1f} ms each), {dict(outcomes)}")


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "--time":
        _time_fuzz()
