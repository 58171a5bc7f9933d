"""A LAMMPS stand-in for testing `hipot.lammps.driver.Driver` in-process, without a compiler.

A structure is split into slabs along its first periodic cell vector (along x for a molecule),
one per simulated rank; periodic images are made along its periodic directions only (LAMMPS's
`boundary p p f` for a slab, `f f f` for a molecule). Each rank gets what pair_hipot.cpp would
hand over: LAMMPS-style atoms (its own, then ghost atoms: every image of any atom within
`cutoff + skin` of one of its own atoms), its local atoms' edges within the cutoff, ghosts folded
onto the local atom they are images of, and one ghost row per atom of another rank. The ranks run
in threads; `communicate` does what LAMMPS's forward and reverse communication do to the
exchanged rows (ghost rows from their owners; ghost rows added to their owners, as float32 when
the rows hold float32 pairs, and left zero). `DriverEngine` makes of them a contract engine
(hipot.testing): the driver on any number of simulated ranks, one step per structure
(tests/test_lammps_driver_contract.py).
"""
from __future__ import annotations

import ctypes
import itertools
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from scipy.spatial import cKDTree

from hipot.lammps.driver import Communicate, Driver


@dataclass
class FakeRank:
    atom: np.ndarray  # (nlocal + nghost,) the structure's atom of each LAMMPS atom (its ID)
    positions: np.ndarray  # (nlocal + nghost, 3)
    nlocal: int
    nodes: np.ndarray  # as bridge.h: local atoms, then ghost rows
    types: np.ndarray
    center: np.ndarray
    neighbor: np.ndarray
    vec: np.ndarray
    f: np.ndarray = field(init=False)
    eatom: np.ndarray = field(init=False)
    vatom: np.ndarray = field(init=False)
    calls: list[tuple[int, bool]] = field(default_factory=list)  # (width, reverse) of each communication

    def __post_init__(self) -> None:
        n = len(self.atom)
        self.f, self.eatom, self.vatom = np.zeros((n, 3)), np.zeros(self.nlocal), np.zeros((n, 6))

    @property
    def nghost(self) -> int:
        return len(self.atom) - self.nlocal


def split(atoms: Atoms, nranks: int, cutoff: float, elements: list[str], skin: float = 1.0,
          fold: bool = True) -> list[FakeRank]:
    """The per-rank inputs of `atoms` on `nranks` slabs (ranks may own no atom). fold=False: every
    ghost atom met is its own node, as pair_hipot.cpp did before it folded (benchmarks only)."""
    pos = atoms.positions
    periodic = np.asarray(atoms.pbc, dtype=bool)
    if periodic.any():
        # ranks split the first periodic cell vector, as LAMMPS's processor grid splits its box
        cell = atoms.cell.complete().array  # a slab's or wire's missing vectors filled in
        frac = np.linalg.solve(cell.T, pos.T).T[:, int(np.flatnonzero(periodic)[0])] % 1.0
        owner = np.minimum((frac * nranks).astype(int), nranks - 1)
        # images along the periodic vectors only, as far as the cell's heights (not its vectors'
        # lengths: a skewed cell is thinner than its vectors are long) need to reach cutoff + skin
        heights = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
        reach = np.where(periodic, np.ceil((cutoff + skin) / heights).astype(int) + 1, 0)
        shifts = np.array(list(itertools.product(*(range(-r, r + 1) for r in reach))))
    else:
        lo, hi = pos[:, 0].min(), pos[:, 0].max() + 1e-9
        owner = np.minimum(((pos[:, 0] - lo) / (hi - lo) * nranks).astype(int), nranks - 1)
        shifts = np.zeros((1, 3), dtype=int)
    type_of = {el: k + 1 for k, el in enumerate(elements)}
    types = np.array([type_of[s] for s in atoms.get_chemical_symbols()], dtype=np.intc)
    # every image (shift by shift, atom by atom): its atom, whether it is the atom itself, position
    image_atom = np.tile(np.arange(len(atoms)), len(shifts))
    itself = np.repeat(~shifts.any(axis=1), len(atoms))
    image_pos = pos[image_atom] + np.repeat(shifts @ atoms.cell.array, len(atoms), axis=0)
    ranks = []
    for k in range(nranks):
        own = np.flatnonzero(owner == k)
        local_of = {int(a): i for i, a in enumerate(own)}
        # LAMMPS's atoms of this rank: its own, then every other image near one of them
        if len(own):  # a tree, not an (images, own) distance matrix: benchmarks split thousands of atoms
            near = cKDTree(pos[own]).query(image_pos, distance_upper_bound=cutoff + skin)[0] < cutoff + skin
            ghost = near & ~(itself & np.isin(image_atom, own))
        else:
            ghost = np.zeros(len(image_atom), dtype=bool)
        atom = np.concatenate([own, image_atom[ghost]]).astype(int)
        x = np.concatenate([pos[own], image_pos[ghost]]).reshape(-1, 3)
        nodes, row_of = list(range(len(own))), {}
        center, neighbor, vec = [], [], []
        for i in range(len(own)):
            d = x - x[i]
            for j in np.flatnonzero((np.einsum("ij,ij->i", d, d) < cutoff**2)):
                if j == i:
                    continue
                a = int(atom[j]) if fold or j < len(own) else -1 - int(j)  # unfolded: by LAMMPS index
                if a in local_of:  # a local atom or an image of one: folded
                    node = local_of[a]
                else:  # an atom of another rank: its ghost row
                    if a not in row_of:
                        row_of[a] = len(nodes)
                        nodes.append(j)
                    node = row_of[a]
                center.append(i)
                neighbor.append(node)
                vec.append(d[j])
        ranks.append(FakeRank(atom, x, len(own), np.array(nodes, dtype=np.int64), types[atom[nodes]],
                              np.array(center, dtype=np.int64), np.array(neighbor, dtype=np.int64),
                              np.array(vec, dtype=np.float64).reshape(-1, 3)))
    return ranks


class FakeComm:
    """LAMMPS's communication of exchanged rows between ranks running in threads."""

    def __init__(self, ranks: list[FakeRank], broken: bool = False):
        """broken: the forward communication zeroes the ghost rows instead (a negative control)."""
        self.ranks, self.broken = ranks, broken
        self.barrier = threading.Barrier(len(ranks), timeout=120)
        self.rows: list[np.ndarray | None] = [None] * len(ranks)
        # where each LAMMPS atom's owner row is: (rank, local index) by the structure's atom
        self.home = {int(r.atom[i]): (k, i) for k, r in enumerate(ranks) for i in range(r.nlocal)}

    def communicate(self, k: int):
        rank = self.ranks[k]

        def call(pointer: int, width: int, reverse: bool, float32: bool) -> None:
            rank.calls.append((width, reverse))
            n = len(rank.atom)
            rows = np.ctypeslib.as_array((ctypes.c_double * (n * width)).from_address(pointer)).reshape(n, width)
            self.rows[k] = rows.view(np.float32) if float32 else rows
            self.barrier.wait()
            mine = self.rows[k]
            if not reverse and self.broken:
                mine[rank.nlocal:] = 0
            elif not reverse:
                for g in range(rank.nlocal, n):
                    r, i = self.home[int(rank.atom[g])]
                    mine[g] = self.rows[r][i]
            elif reverse:
                for r, other in enumerate(self.ranks):
                    for g in range(other.nlocal, len(other.atom)):
                        owner, i = self.home[int(other.atom[g])]
                        if owner == k:
                            mine[i] += self.rows[r][g]
            self.barrier.wait()
            if reverse:  # LAMMPS leaves the packed ghost rows zero (pair_hipot.cpp, pack_reverse_comm)
                mine[rank.nlocal:] = 0

        return call


def run(ranks: list[FakeRank], args: list[str], elements: list[str], comm: FakeComm | None = None,
        per_atom: bool = True) -> tuple[float, np.ndarray, list[Driver]]:
    """One step of every rank (in threads when several): (energy, virial (6,), drivers); forces,
    per-atom energies and virials are left in the ranks' arrays."""
    comm = comm or FakeComm(ranks)
    drivers = [Driver(args, comm.communicate(k), k, len(ranks)) for k in range(len(ranks))]
    for d in drivers:
        d.set_elements(elements)
    return (*step(drivers, ranks, comm, per_atom), drivers)


def step(drivers: list[Driver], ranks: list[FakeRank], comm: FakeComm, per_atom: bool = True
         ) -> tuple[float, np.ndarray]:
    """One step of every rank's driver, each in its own thread (their communications meet at
    `comm`'s barrier): (energy, virial (6,), LAMMPS's order and sign) summed over the ranks."""
    out: list = [None] * len(ranks)

    def one(k: int) -> None:
        r = ranks[k]
        try:
            out[k] = drivers[k].compute(r.nlocal, r.nghost, *(memoryview(a) for a in (
                r.nodes, r.types, r.center, r.neighbor, r.vec, r.f)), memoryview(r.eatom) if per_atom else None,
                memoryview(r.vatom) if per_atom else None)
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            out[k] = e
            comm.barrier.abort()

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(ranks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in out:
        if isinstance(o, BaseException):
            raise o
    return sum(o[0] for o in out), np.sum([o[1] for o in out], axis=0)


def gather(ranks: list[FakeRank], natoms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forces, per-atom energies and per-atom virials (LAMMPS order) per atom of the structure,
    ghost atoms' rows added to their atoms as LAMMPS's reverse communication does."""
    f, e, v = np.zeros((natoms, 3)), np.zeros(natoms), np.zeros((natoms, 6))
    for r in ranks:
        np.add.at(f, r.atom, r.f)
        np.add.at(v, r.atom, r.vatom)
        e[r.atom[: r.nlocal]] += r.eatom
    return f, e, v


VOIGT_ASE = [0, 1, 2, 5, 4, 3]  # LAMMPS's xx yy zz xy xz yz -> ASE's xx yy zz yz xz xy


class DriverEngine:
    """`pair_style hipot`'s driver as a contract engine (hipot.testing): every structure is one
    step of `nranks` simulated ranks splitting it (`split`), through the entry points the C++
    bridge calls (the constructor with `pair_style` arguments, set_elements, info, compute). The
    drivers are made once and step through every structure, as LAMMPS's do through changing
    neighbour lists; their type map (pair_coeff) is every element the model knows.

    Results in the contract's convention: energy, forces, per-atom energies, per-atom virials
    ("virials", eV: LAMMPS's per-atom virials, which sum to the virial W = -stress V, in ASE's
    Voigt order) and, for a structure periodic in 3D, the stress -W / V. The structure is not
    rotated into LAMMPS's lower-triangular frame (the driver sees edge vectors only, any frame),
    so the contract's rotations reach the driver as rotations.

    `broken` (negative controls): "exchange", the forward communication zeroes the ghost rows;
    "forces", the last rank's forces never reach the structure's atoms."""

    def __init__(self, model: str, nranks: int, pair_args: Sequence[str] = ("device", "cpu", "dtype", "float64"),
                 broken: str | None = None):
        if broken not in (None, "exchange", "forces"):
            raise ValueError(f"broken must be None, 'exchange' or 'forces', not {broken!r}")
        self.nranks, self.broken = nranks, broken
        self.comm: FakeComm | None = None  # the current step's communication
        self.drivers = [Driver([model, *pair_args], self._communicate(k), k, nranks) for k in range(nranks)]
        self.elements = [chemical_symbols[z] for z in sorted(self.drivers[0].model.species)]
        for d in self.drivers:
            d.set_elements(self.elements)
        self.cutoff = self.drivers[0].info()[0]
        self.steps = 0

    def _communicate(self, k: int) -> Communicate:
        """Rank k's `communicate`: a driver keeps the one it was made with, each step has its own
        FakeComm (its ranks' atoms), so the call goes to the current one."""
        def call(pointer: int, width: int, reverse: bool, float32: bool) -> None:
            self.comm.communicate(k)(pointer, width, reverse, float32)

        return call

    def __call__(self, structures: Sequence[Atoms]) -> list[dict]:
        return [self.evaluate(atoms) for atoms in structures]

    def evaluate(self, atoms: Atoms) -> dict:
        """One step of every rank on `atoms`, its result gathered as LAMMPS's reverse
        communication would (ghost rows' forces and per-atom virials added to their atoms)."""
        ranks = split(atoms, self.nranks, self.cutoff, self.elements)
        self.comm = FakeComm(ranks, broken=self.broken == "exchange")
        energy, virial = step(self.drivers, ranks, self.comm)
        self.steps += 1
        if self.broken == "forces":
            ranks[-1].f[:] = 0
        forces, energies, virials = gather(ranks, len(atoms))
        out = {"energy": float(energy), "forces": forces, "energies": energies, "virials": virials[:, VOIGT_ASE]}
        if atoms.pbc.all():
            out["stress"] = -virial[VOIGT_ASE] / abs(atoms.get_volume())
        return out
