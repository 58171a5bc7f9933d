"""Periodic lattices of structures, on the host in float64 (a cell is nine numbers).

For each structure of a batch: whether its periodic cell vectors span a lattice at all (a relative
test, independent of units), a reduced basis of that lattice (`box`: the same lattice with the
shortest, most orthogonal vectors, so that a skewed input cell costs no more than a cubic one),
the distance between lattice planes of each periodic direction (`heights`, which sets how many
periodic images are within a cutoff) and the shortest lattice vector (an atom's distance to its
own periodic image). Rows of `box` at non-periodic directions are an orthonormal basis of the
space the periodic vectors do not span: they carry no periodicity, only a full-rank matrix.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

MAX_LENGTH = 1e9  # A: longer periodic vectors are no atomic-scale lattice (float64 keeps 1e-7 A there)
ZERO_LENGTH = 1e-6  # A: a periodic cell vector shorter than this is reported as zero
DEGENERATE = 1e-10  # |volume| / product of lengths below this: the vectors are linearly dependent
SKEWED = 0.5  # reduce a basis whose smallest height / length ratio is below this (cubic: 1, hexagonal: 0.87)


@dataclass
class Lattices:
    """Lattice data of B structures; arrays are indexed by structure."""

    pbc: np.ndarray  # (B, 3) bool
    box: np.ndarray  # (B, 3, 3) reduced periodic rows, orthonormal complement rows
    to_cell: np.ndarray  # (B, 3, 3) int64 T: box rows at periodic directions = T @ cell; identity elsewhere
    from_cell: np.ndarray  # (B, 3, 3) int64 T^-1
    heights: np.ndarray  # (B, 3) distance between lattice planes (inf: not periodic)
    volume: np.ndarray  # (B,) length, area or volume of the periodic lattice's cell (1: none)
    shortest: np.ndarray  # (B,) length of the shortest lattice vector found (inf: none)
    shortest_vector: np.ndarray  # (B, 3) int64 that vector as a combination of the input cell's vectors
    problems: list[str | None]  # why a structure's cell is unusable, else None
    reduced: np.ndarray  # (B,) bool: box rows differ from the input cell's (to_cell is not the identity)

    @property
    def dims(self) -> np.ndarray:
        return self.pbc.sum(axis=1)


def lattices(cell: np.ndarray, pbc: np.ndarray) -> Lattices:
    """Check, reduce and measure the periodic lattices of cells (B, 3, 3) with periodicity (B, 3)."""
    cell = np.asarray(cell, dtype=np.float64).reshape(-1, 3, 3)
    pbc = np.asarray(pbc, dtype=bool).reshape(-1, 3)
    B = len(cell)
    box = np.tile(np.eye(3), (B, 1, 1))
    to_cell = np.tile(np.eye(3, dtype=np.int64), (B, 1, 1))
    from_cell = to_cell.copy()
    problems: list[str | None] = [None] * B
    reduced = np.zeros(B, dtype=bool)
    for b in range(B):
        p = np.flatnonzero(pbc[b])
        problems[b] = _cell_problem(cell[b], p)
        if problems[b] is not None or len(p) == 0:
            continue
        rows = cell[b, p]
        reduced[b] = _skewed(rows)
        t = reduce_basis(rows) if reduced[b] else np.eye(len(p), dtype=np.int64)
        to_cell[b][np.ix_(p, p)] = t
        from_cell[b][np.ix_(p, p)] = np.rint(np.linalg.inv(t)).astype(np.int64)
        box[b] = complete(t @ rows, p)
    heights, volume = _heights(box, pbc)
    shortest, vector = _shortest(box, pbc)
    vector = np.einsum("bi,bij->bj", vector, to_cell)  # in the input cell's vectors
    for b in range(B):
        if problems[b] is not None:  # nothing measured on an unusable cell
            heights[b], volume[b], shortest[b] = np.inf, 1.0, np.inf
    return Lattices(pbc, box, to_cell, from_cell, heights, volume, shortest, vector, problems, reduced)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b for 3-vectors (numpy's cross costs tens of microseconds per call)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _cell_problem(cell: np.ndarray, p: np.ndarray) -> str | None:
    if not np.all(np.isfinite(cell)):
        return f"non-finite cell {cell.tolist()}"
    lengths = np.linalg.norm(cell, axis=1)
    for d in p:
        if lengths[d] < ZERO_LENGTH:
            return f"periodic along axis {d} but the cell vector {d} is zero (length {lengths[d]:.3g} A)"
        if lengths[d] > MAX_LENGTH:
            return f"cell vector {d} is {lengths[d]:.3g} A long (more than {MAX_LENGTH:.0e} A is no atomic lattice)"
    if len(p) == 2:
        a, b = cell[p]
        sine = np.linalg.norm(_cross(a, b)) / (lengths[p[0]] * lengths[p[1]])
        if sine < DEGENERATE:
            return (f"the periodic cell vectors {p[0]} and {p[1]} are parallel (sine of their angle {sine:.2g}): "
                    "they span no 2D lattice; give two independent vectors")
    if len(p) == 3:
        rel = abs(np.linalg.det(cell)) / np.prod(lengths)
        if rel < DEGENERATE:
            return (f"the periodic cell has zero volume ({abs(np.linalg.det(cell)):.3g} A^3; its vectors are "
                    f"linearly dependent, volume / product of lengths {rel:.2g}); give three independent vectors")
    return None


def _skewed(rows: np.ndarray) -> bool:
    """Whether some height is much shorter than its vector: a reduced basis then needs far fewer images."""
    if len(rows) < 2:
        return False
    h, _ = _heights_of(rows)
    return bool(np.min(h / np.linalg.norm(rows, axis=1)) < SKEWED)


def reduce_basis(rows: np.ndarray, max_steps: int = 200) -> np.ndarray:
    """Integer matrix T (k x k, |det| = 1) such that T @ rows is a greedy-reduced basis of the same
    lattice (Nguyen and Stehle's greedy reduction: each vector in turn replaced by its shortest
    translate by the lattice of the shorter ones; Minkowski-reduced for k <= 3)."""
    k = len(rows)
    t = np.eye(k, dtype=np.int64)
    for _ in range(max_steps):
        vec = t @ rows
        order = np.argsort(np.linalg.norm(vec, axis=1), kind="stable")
        t, vec = t[order], vec[order]
        for m in range(1, k):
            c = _closest(vec[:m], vec[m])
            if c is not None:
                t[m] -= c @ t[:m]
                break
        else:
            return t
    return t  # still a basis of the lattice (T stays unimodular), only less reduced


def _closest(basis: np.ndarray, v: np.ndarray) -> np.ndarray | None:
    """Integer coefficients c with |v - c @ basis| clearly shorter than |v|, the shortest such among
    the neighbours of the rounded real solution; None if v is already shortest."""
    x = np.linalg.lstsq(basis.T, v, rcond=None)[0]
    base = np.rint(x).astype(np.int64)
    best, best_len = None, np.linalg.norm(v) * (1 - 1e-12)
    for delta in itertools.product((-1, 0, 1), repeat=len(basis)):
        c = base + np.array(delta, dtype=np.int64)
        length = np.linalg.norm(v - c @ basis)
        if length < best_len and c.any():
            best, best_len = c, length
    return best


def complete(rows: np.ndarray, p: np.ndarray) -> np.ndarray:
    """A full-rank 3x3 box: `rows` (the periodic vectors) at indices p, an orthonormal basis of their
    orthogonal complement at the other indices."""
    box = np.eye(3)
    box[p] = rows
    q = [d for d in range(3) if d not in set(p.tolist())]
    if len(p) == 2:
        n = _cross(rows[0], rows[1])
        box[q[0]] = n / np.linalg.norm(n)
    elif len(p) == 1:
        a = rows[0] / np.linalg.norm(rows[0])
        e = np.eye(3)[int(np.argmin(np.abs(a)))]
        u = e - (e @ a) * a
        u /= np.linalg.norm(u)
        box[q[0]], box[q[1]] = u, _cross(a, u)
    return box


def _heights_of(rows: np.ndarray) -> tuple[np.ndarray, float]:
    """Distances between lattice planes (lines) of each vector of a k-dim lattice, and its k-volume,
    from cross products (a Gram matrix would square the condition number)."""
    if len(rows) == 1:
        length = float(np.linalg.norm(rows[0]))
        return np.array([length]), length
    if len(rows) == 2:
        area = float(np.linalg.norm(_cross(rows[0], rows[1])))
        return area / np.linalg.norm(rows[::-1], axis=1), area
    volume = abs(float(np.linalg.det(rows)))
    faces = np.array([np.linalg.norm(_cross(rows[(d + 1) % 3], rows[(d + 2) % 3])) for d in range(3)])
    return volume / faces, volume


def _heights(box: np.ndarray, pbc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heights of the periodic directions of full-rank boxes: the complement rows are orthonormal and
    orthogonal to the periodic ones, so the box's own plane distances are the periodic lattice's."""
    inv = np.linalg.inv(box)
    heights = np.where(pbc, 1.0 / np.linalg.norm(inv, axis=1), np.inf)  # 1 / |column d of inv(box)|
    volume = np.where(pbc.any(axis=1), np.abs(np.linalg.det(box)), 1.0)
    return heights, volume


def _shortest(box: np.ndarray, pbc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shortest non-zero combination with coefficients in {-1, 0, 1} of each box's periodic
    vectors (for a reduced basis in 3D or less, the shortest lattice vector)."""
    combos = np.array([c for c in itertools.product((-1, 0, 1), repeat=3) if any(c)], dtype=np.int64)  # (26, 3)
    ok = ~((combos[None, :, :] != 0) & ~pbc[:, None, :]).any(axis=2)  # (B, 26): only periodic directions
    lengths = np.linalg.norm(np.einsum("mi,bij->bmj", combos.astype(np.float64), box), axis=2)
    lengths = np.where(ok, lengths, np.inf)
    k = np.argmin(lengths, axis=1)
    return lengths[np.arange(len(box)), k], combos[k] * pbc.any(axis=1, keepdims=True)
