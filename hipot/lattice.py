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
    inverse: np.ndarray  # (B, 3, 3) inverses of the boxes (fractional coordinates are x @ inverse)

    @property
    def dims(self) -> np.ndarray:
        return self.pbc.sum(axis=1)


def lattices(cell: np.ndarray, pbc: np.ndarray) -> Lattices:
    """Check, reduce and measure the periodic lattices of cells (B, 3, 3) with periodicity (B, 3)."""
    cell = np.asarray(cell, dtype=np.float64).reshape(-1, 3, 3)
    pbc = np.asarray(pbc, dtype=bool).reshape(-1, 3)
    B = len(cell)
    finite = np.isfinite(cell).all(axis=(1, 2))
    cell = np.where(finite[:, None, None], cell, 0.0)
    k = pbc.sum(axis=1)
    if pbc.all():  # the common case: every direction periodic, already in order (saves the sort)
        rows = cell
    else:
        order = np.argsort(~pbc, axis=1, kind="stable")  # periodic directions first
        rows = np.take_along_axis(cell, order[:, :, None], axis=1)
    lengths = np.linalg.norm(rows, axis=2)  # in that order
    first_k = np.arange(3)[None, :] < k[:, None]
    ab = _cross(rows[:, 0], rows[:, 1])
    area, det = np.linalg.norm(ab, axis=1), np.abs(np.linalg.det(rows))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(k == 3, det, area) / np.prod(np.where(first_k, lengths, 1.0), axis=1)
        # heights of the given basis, only to tell a skewed one
        faces = np.linalg.norm(np.stack([_cross(rows[:, 1], rows[:, 2]), _cross(rows[:, 2], rows[:, 0]), ab], 1),
                               axis=2)
        given = np.where(k[:, None] == 3, det[:, None] / faces, area[:, None] / lengths[:, [1, 0, 2]])
        skew = np.min(np.where(first_k, given / lengths, np.inf), axis=1) < SKEWED
    zero = (first_k & (lengths < ZERO_LENGTH)).any(axis=1)
    huge = (first_k & (lengths > MAX_LENGTH)).any(axis=1)
    bad = ~finite | zero | huge | ((k >= 2) & ~(rel >= DEGENERATE))
    problems: list[str | None] = [None] * B
    for b in np.flatnonzero(bad):
        problems[b] = _cell_problem(np.where(finite[b], cell[b], np.nan), np.flatnonzero(pbc[b]))
    ok_pbc = pbc & ~bad[:, None]
    box = _complete(cell, ok_pbc)
    to_cell = np.tile(np.eye(3, dtype=np.int64), (B, 1, 1))
    from_cell = to_cell.copy()
    reduced = skew & ~bad & (k >= 2)
    for b in np.flatnonzero(reduced):
        p = np.flatnonzero(pbc[b])
        t = reduce_basis(cell[b, p])
        to_cell[b][np.ix_(p, p)] = t
        from_cell[b][np.ix_(p, p)] = np.rint(np.linalg.inv(t)).astype(np.int64)
        box[b] = complete(t @ cell[b, p], p)
    inv = inverse(box)
    heights, volume = _heights(box, inv, ok_pbc)
    shortest, vector = _shortest(box, ok_pbc)
    if reduced.any():
        vector = np.matmul(vector[:, None, :], to_cell)[:, 0]  # in the input cell's vectors
    return Lattices(pbc, box, to_cell, from_cell, heights, volume, shortest, vector, problems, reduced, inv)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b over the last axis (numpy's cross costs tens of microseconds per call)."""
    return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1], a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                     a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], axis=-1)


def vector_name(d: int) -> str:
    """How messages name cell vector d (0-based): a1, a2, a3, as crystallography counts them."""
    return f"a{d + 1}"


def combination(coefficients) -> str:
    """An integer combination of the cell vectors in words: (1, 0, -1) -> 'a1 - a3', (2, -1, 0) -> '2 a1 - a2'."""
    out = ""
    for d, c in enumerate(int(c) for c in coefficients):
        if not c:
            continue
        size = "" if abs(c) == 1 else f"{abs(c)} "
        sign = ("-" if c < 0 else "") if not out else (" - " if c < 0 else " + ")
        out += f"{sign}{size}{vector_name(d)}"
    return out or "0"


def _cell_problem(cell: np.ndarray, p: np.ndarray) -> str:
    """Why a cell flagged by `lattices` is unusable, in words."""
    if not np.all(np.isfinite(cell)):
        return f"non-finite cell {cell.tolist()}"
    lengths = np.linalg.norm(cell, axis=1)
    for d in p:
        if lengths[d] < ZERO_LENGTH:
            name = vector_name(d)
            return f"periodic along {name} but the cell vector {name} is zero (length {lengths[d]:.3g} A)"
        if lengths[d] > MAX_LENGTH:
            return (f"cell vector {vector_name(d)} is {lengths[d]:.3g} A long (more than {MAX_LENGTH:.0e} A is no "
                    "atomic lattice)")
    if len(p) == 2:
        sine = np.linalg.norm(_cross(cell[p[0]], cell[p[1]])) / (lengths[p[0]] * lengths[p[1]])
        return (f"the periodic cell vectors {vector_name(p[0])} and {vector_name(p[1])} are parallel (sine of their "
                f"angle {sine:.2g}): they span no 2D lattice; give two independent vectors")
    volume = abs(np.linalg.det(cell))
    return (f"the periodic cell has zero volume ({volume:.3g} A^3; its vectors are linearly dependent, "
            f"volume / product of lengths {volume / np.prod(lengths):.2g}); give three independent vectors")


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
    cell = np.zeros((1, 3, 3))
    cell[0, p] = rows
    mask = np.zeros((1, 3), dtype=bool)
    mask[0, p] = True
    return _complete(cell, mask)[0]


def _complete(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """`complete` for a batch: periodic rows kept, the others an orthonormal complement of them."""
    if pbc.all():
        return cell.copy()
    k = pbc.sum(axis=1)
    order = np.argsort(~pbc, axis=1, kind="stable")
    rows = np.take_along_axis(cell, order[:, :, None], axis=1)
    box = np.where(pbc[:, :, None], cell, np.eye(3)[None])
    two = np.flatnonzero(k == 2)
    if len(two):
        n = _cross(rows[two, 0], rows[two, 1])
        box[two, order[two, 2]] = n / np.linalg.norm(n, axis=1, keepdims=True)
    one = np.flatnonzero(k == 1)
    if len(one):
        a = rows[one, 0] / np.linalg.norm(rows[one, 0], axis=1, keepdims=True)
        e = np.eye(3)[np.argmin(np.abs(a), axis=1)]
        u = e - (e * a).sum(axis=1, keepdims=True) * a
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        box[one, order[one, 1]] = u
        box[one, order[one, 2]] = _cross(a, u)
    return box


def _heights(box: np.ndarray, inv: np.ndarray, pbc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heights of the periodic directions of full-rank boxes: the complement rows are orthonormal and
    orthogonal to the periodic ones, so the box's own plane distances are the periodic lattice's
    (1 / the length of the inverse's column: a plane normal over the volume)."""
    det = np.abs(np.linalg.det(box))
    heights = np.where(pbc, 1.0 / np.linalg.norm(inv, axis=1), np.inf)
    return heights, np.where(pbc.any(axis=1), det, 1.0)


def inverse(box: np.ndarray) -> np.ndarray:
    """Inverses of full-rank 3x3 boxes (B, 3, 3)."""
    return np.linalg.inv(box)


_COMBOS = np.array([c for c in itertools.product((-1, 0, 1), repeat=3) if any(c)], dtype=np.int64)  # (26, 3)
_COMBOS_F = _COMBOS.astype(np.float64)
_COMBO_DIRS = _COMBOS != 0  # (26, 3) the directions each combination uses


def _shortest(box: np.ndarray, pbc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shortest non-zero combination with coefficients in {-1, 0, 1} of each box's periodic
    vectors (for a reduced basis in 3D or less, the shortest lattice vector)."""
    combos = _COMBOS
    lengths = np.linalg.norm(np.matmul(_COMBOS_F[None], box), axis=2)
    if not pbc.all():
        ok = ~(_COMBO_DIRS[None] & ~pbc[:, None, :]).any(axis=2)  # (B, 26): only periodic directions
        lengths = np.where(ok, lengths, np.inf)
    k = np.argmin(lengths, axis=1)
    return lengths[np.arange(len(box)), k], combos[k] * pbc.any(axis=1, keepdims=True)
