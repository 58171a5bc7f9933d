"""Symmetry-distinct orderings (derivative structures) of elements on a parent lattice.

A derivative structure is a sublattice L of the parent's translations (given by a Hermite normal
form H, rows = basis vectors in parent lattice coordinates, det H = n cells) and a colouring of the
n * (sites per parent cell) sites of L's cell. Two are the same structure when a space-group
operation of the parent maps one onto the other (an element swap is not a symmetry: Cu3Au is not
CuAu3). Each structure gets a canonical key: the smallest HNF among the images of its sublattice,
then the smallest colouring among the images that land on that HNF, over all operations and all
translations. Colourings that repeat with a smaller period belong to a smaller cell and are dropped.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from ase import Atoms

LATTICES = ("fcc", "bcc", "hcp")


@dataclass(frozen=True)
class Parent:
    """A parent lattice: primitive vectors (rows, for unit volume per site scaled later) and sites."""

    name: str
    cell: np.ndarray  # (3, 3) rows, for lattice constant a = 1
    sites: np.ndarray  # (nb, 3) fractional
    c_over_a: float = 1.0


def parent(name: str, c_over_a: float = float(np.sqrt(8.0 / 3.0))) -> Parent:
    name = name.lower()
    if name == "fcc":
        return Parent(name, 0.5 * np.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]]), np.zeros((1, 3)))
    if name == "bcc":
        return Parent(name, 0.5 * np.array([[-1.0, 1, 1], [1, -1, 1], [1, 1, -1]]), np.zeros((1, 3)))
    if name == "hcp":
        cell = np.array([[1.0, 0, 0], [-0.5, np.sqrt(3) / 2, 0], [0, 0, c_over_a]])
        return Parent(name, cell, np.array([[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]), c_over_a)
    raise ValueError(f"parent lattice must be one of {', '.join(LATTICES)}, not {name!r}")


def volume_per_site(p: Parent) -> float:
    return abs(np.linalg.det(p.cell)) / len(p.sites)


def hnfs(n: int) -> list[np.ndarray]:
    """Every lower-triangular Hermite normal form of determinant n (one per index-n sublattice)."""
    out = []
    for a in range(1, n + 1):
        if n % a:
            continue
        for c in range(1, n // a + 1):
            if (n // a) % c:
                continue
            f = n // (a * c)
            for b, d, e in itertools.product(range(a), range(a), range(c)):
                out.append(np.array([[a, 0, 0], [b, c, 0], [d, e, f]], dtype=np.int64))
    return out


def hnf_of(basis: np.ndarray) -> np.ndarray:
    """The lower-triangular HNF of the lattice spanned by the rows of an integer matrix (row operations only)."""
    h = [list(map(int, row)) for row in np.rint(basis).astype(np.int64)]
    for col in (2, 1):
        rows = list(range(col + 1))
        while True:
            nz = [r for r in rows if h[r][col] != 0]
            if len(nz) <= 1:
                break
            p = min(nz, key=lambda r: abs(h[r][col]))
            for r in nz:
                if r != p:
                    q = h[r][col] // h[p][col]
                    h[r] = [x - q * y for x, y in zip(h[r], h[p])]
        nz = [r for r in rows if h[r][col] != 0]
        if not nz:
            raise ValueError("singular basis")
        h[nz[0]], h[col] = h[col], h[nz[0]]
        if h[col][col] < 0:
            h[col] = [-x for x in h[col]]
    if h[0][0] < 0:
        h[0] = [-x for x in h[0]]
    q = h[1][0] // h[0][0]
    h[1] = [x - q * y for x, y in zip(h[1], h[0])]
    q = h[2][1] // h[1][1]
    h[2] = [x - q * y for x, y in zip(h[2], h[1])]
    q = h[2][0] // h[0][0]
    h[2] = [x - q * y for x, y in zip(h[2], h[0])]
    return np.array(h, dtype=np.int64)


class Supercell:
    """The sites of a sublattice's cell: (basis site b, integer cell z) reduced modulo the HNF."""

    def __init__(self, h: np.ndarray, nb: int):
        self.h = h
        self.nb = nb
        self.a, self.c, self.f = int(h[0, 0]), int(h[1, 1]), int(h[2, 2])
        self.n = self.a * self.c * self.f
        self.cells = np.array([[z0, z1, z2] for z2 in range(self.f) for z1 in range(self.c) for z0 in range(self.a)],
                              dtype=np.int64)

    def index(self, b: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Site indices of (b, z) arrays, z reduced into the cell (rows of H are the sublattice)."""
        z = z.copy()
        for row, col, size in ((2, 2, self.f), (1, 1, self.c), (0, 0, self.a)):
            k = np.floor_divide(z[:, col], size)
            z -= k[:, None] * self.h[row][None, :]
        return b * self.n + z[:, 0] + self.a * (z[:, 1] + self.c * z[:, 2])

    def sites(self) -> tuple[np.ndarray, np.ndarray]:
        """(b, z) of every site, in index order."""
        b = np.repeat(np.arange(self.nb), self.n)
        z = np.tile(self.cells, (self.nb, 1))
        return b, z


def space_group(p: Parent, symprec: float = 1e-5) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Operations of the parent as (R acting on fractional columns, site map b -> b', integer shift of
    each site's image): R p_b + t = p_b' + shift_b."""
    import warnings

    from ..optional import require

    spglib = require("spglib", "tasks", "the parent lattice's symmetry")
    with warnings.catch_warnings():  # spglib 2.5+ warns about its legacy error handling on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = spglib.get_symmetry((p.cell, p.sites, [1] * len(p.sites)), symprec=symprec)
    ops = []
    for r, t in zip(ds["rotations"], ds["translations"]):
        img = p.sites @ r.T + t
        bmap = np.zeros(len(p.sites), dtype=np.int64)
        shift = np.zeros((len(p.sites), 3), dtype=np.int64)
        for b, y in enumerate(img):
            d = y[None, :] - p.sites
            k = int(np.argmin(np.abs(d - np.rint(d)).sum(axis=1)))
            bmap[b], shift[b] = k, np.rint(d[k]).astype(np.int64)
        ops.append((r.astype(np.int64), bmap, shift))
    return ops


def _canonical_perms(h: np.ndarray, nb: int, ops) -> tuple[np.ndarray, np.ndarray]:
    """(canonical HNF, permutations): each permutation maps site i of `h` to site perm[i] of the
    canonical HNF's cell, for every operation whose image lattice is that HNF, times every translation."""
    cell = Supercell(h, nb)
    b, z = cell.sites()
    images = []
    for r, bmap, shift in ops:
        images.append((tuple(hnf_of(h @ r.T).ravel()), r, bmap, shift))
    best = min(img[0] for img in images)
    hc = np.array(best, dtype=np.int64).reshape(3, 3)
    target = Supercell(hc, nb)
    perms = []
    for key, r, bmap, shift in images:
        if key != best:
            continue
        zb = z @ r.T + shift[b]
        for tau in target.cells:
            perms.append(target.index(bmap[b], zb + tau))
    return hc, np.unique(np.array(perms), axis=0)


def _translations(h: np.ndarray, nb: int) -> np.ndarray:
    """Site permutations of the pure translations of the parent within the cell (identity first)."""
    cell = Supercell(h, nb)
    b, z = cell.sites()
    return np.array([cell.index(b, z + tau) for tau in cell.cells])


def enumerate_orderings(elements: list[str], lattice: str = "fcc", max_atoms: int = 4, min_atoms: int = 1,
                        c_over_a: float | None = None) -> list[dict]:
    """Every symmetry-distinct ordering of `elements` on `lattice` with at most `max_atoms` atoms
    per cell (pure elements included): dicts with 'hnf', 'colors' (element index per site) and 'n_atoms'."""
    if len(set(elements)) != len(elements) or len(elements) < 1:
        raise ValueError(f"elements must be distinct, got {elements}")
    p = parent(lattice, c_over_a) if c_over_a else parent(lattice)
    nb = len(p.sites)
    ops = space_group(p)
    k = len(elements)
    out = []
    for n in range(1, max_atoms // nb + 1):
        if n * nb < min_atoms:
            continue
        seen_lattices: set[tuple] = set()
        for h in hnfs(n):
            hc, perms = _canonical_perms(h, nb, ops)
            key_l = tuple(hc.ravel())
            if key_l in seen_lattices:
                continue  # a rotated copy of a sublattice already done
            seen_lattices.add(key_l)
            # Work in the canonical cell itself: its identity maps are among `perms`.
            hc_, perms = _canonical_perms(hc, nb, ops)
            trans = _translations(hc, nb)[1:]
            seen: set[tuple] = set()
            for colors in itertools.product(range(k), repeat=n * nb):
                col = np.array(colors)
                if any(np.array_equal(col[t], col) for t in trans):
                    continue  # repeats with a smaller period: a smaller cell has it
                imgs = np.empty_like(perms)
                np.put_along_axis(imgs, perms, col[None, :].repeat(len(perms), 0), axis=1)
                canon = min(map(tuple, imgs))
                if canon in seen:
                    continue
                seen.add(canon)
                out.append({"hnf": hc.copy(), "colors": col, "n_atoms": n * nb})
    return out


def build(ordering: dict, elements: list[str], lattice: str, a: float, c_over_a: float | None = None) -> Atoms:
    """The Atoms of an ordering with parent lattice constant a (A)."""
    p = parent(lattice, c_over_a) if c_over_a else parent(lattice)
    h = ordering["hnf"]
    cell = Supercell(h, len(p.sites))
    b, z = cell.sites()
    frac_parent = p.sites[b] + z
    lat = p.cell * a
    positions = frac_parent @ lat
    atoms = Atoms([elements[c] for c in ordering["colors"]], positions=positions, cell=h @ lat, pbc=True)
    atoms.wrap()
    return atoms
