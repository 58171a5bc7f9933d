"""Structures as tensors, the checks every input passes, and coordinates relative to each structure.

`StructureBatch` holds B structures on one device (float64). `check` raises StructureError, naming
the structure and the reason, for anything the model cannot take: no atoms, non-finite or absurd
coordinates, unknown elements, a cell whose periodic vectors span no lattice or make an atom overlap
its own periodic image, and more neighbours per atom than any material has (a cell far too small,
positions in the wrong unit). All of it is decided before a neighbour list is built, with a fixed
number of host synchronisations per batch.

`Frame` is the batch as the graph holds it: each structure's lattice reduced (`hipot.lattice`),
periodic coordinates wrapped next to the structure's first atom and every position taken relative
to the centre of the structure's bounding box, all in float64. Results do not change (translation
and lattice translations leave energies alone, atoms keep their order), but a float32 model then
sees coordinates of the size of the structure, not of its distance to the origin.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols
from torch import Tensor

from .lattice import Lattices, combination, lattices
from .types import StructureError

MAX_COORDINATE = 1e9  # A: float64 resolves 1e-7 A there; farther is no atomic structure
MAX_NEIGHBORS = 2000  # default bound on the mean neighbours per atom (see `check`)
MAX_IMAGES = 1_000_000  # periodic images within the cutoff, a backstop behind MAX_NEIGHBORS


@dataclass
class StructureBatch:
    """B structures, atoms grouped by structure: tensors on one device, float64."""

    positions: Tensor  # (N, 3)
    numbers: Tensor  # (N,) int64
    cell: Tensor  # (B, 3, 3) rows are lattice vectors
    pbc: Tensor  # (B, 3) bool
    sizes: np.ndarray  # (B,) atoms per structure (host)
    labels: list[str]

    @property
    def device(self) -> torch.device:
        return self.positions.device

    @property
    def num_structures(self) -> int:
        return len(self.sizes)

    @property
    def ptr(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def batch(self) -> Tensor:
        """(N,) structure of each atom."""
        idx = np.repeat(np.arange(self.num_structures), self.sizes)
        return torch.from_numpy(idx).to(self.device)

    @staticmethod
    def from_arrays(numbers: Sequence[np.ndarray], positions: Sequence[np.ndarray], cells: Sequence[np.ndarray],
                    pbcs: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                    device: torch.device | str | None = None) -> "StructureBatch":
        sizes = np.array([len(z) for z in numbers], dtype=np.int64)
        labels = list(labels) if labels is not None else [f"structure {b}" for b in range(len(sizes))]
        device = torch.device(device) if device is not None else torch.device("cpu")

        def cat(parts, dtype, shape):
            parts = [np.asarray(x, dtype=dtype).reshape(shape) for x in parts]
            return torch.from_numpy(np.concatenate(parts) if parts else np.zeros((0,) + shape[1:], dtype)).to(device)

        return StructureBatch(positions=cat(positions, np.float64, (-1, 3)), numbers=cat(numbers, np.int64, (-1,)),
                              cell=cat(cells, np.float64, (-1, 3, 3)), pbc=cat(pbcs, bool, (-1, 3)),
                              sizes=sizes, labels=labels)

    @staticmethod
    def from_atoms(structures: Sequence[Atoms], labels: Sequence[str] | None = None,
                   device: torch.device | str | None = None) -> "StructureBatch":
        return StructureBatch.from_arrays([a.numbers for a in structures], [a.positions for a in structures],
                                          [a.cell.array for a in structures], [a.pbc for a in structures],
                                          labels, device)

    @staticmethod
    def from_tensors(positions: Tensor, numbers: Tensor, cell: Tensor, pbc: Tensor, system_idx: Tensor,
                     labels: Sequence[str] | None = None) -> "StructureBatch":
        """A batch given as tensors on any device (one host sync for the structure sizes)."""
        n_sys = cell.shape[0]
        if pbc.dim() == 1:
            pbc = pbc.expand(n_sys, 3)
        n = positions.shape[0]
        if positions.shape != (n, 3) or numbers.shape != (n,) or system_idx.shape != (n,) or \
                cell.shape != (n_sys, 3, 3) or pbc.shape != (n_sys, 3):
            raise StructureError(f"shapes do not fit: positions {tuple(positions.shape)}, numbers "
                                 f"{tuple(numbers.shape)}, system_idx {tuple(system_idx.shape)} (all N), cell "
                                 f"{tuple(cell.shape)} (B, 3, 3), pbc {tuple(pbc.shape)} (B, 3) or (3,)")
        system_idx = system_idx.long()
        if n:
            bad = torch.stack([(system_idx[1:] < system_idx[:-1]).any(), system_idx.min() < 0,
                               system_idx.max() >= n_sys]).cpu()
            if bool(bad.any()):
                raise StructureError("system_idx must be non-decreasing structure indices in [0, number of cells)")
            counts = torch.bincount(system_idx, minlength=n_sys).cpu().numpy()
        else:
            counts = np.zeros(n_sys, dtype=np.int64)
        labels = list(labels) if labels is not None else [f"structure {b}" for b in range(n_sys)]
        return StructureBatch(positions=positions.detach().to(torch.float64), numbers=numbers.detach().long(),
                              cell=cell.detach().to(torch.float64), pbc=pbc.detach().bool(),
                              sizes=counts.astype(np.int64), labels=labels)


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 <= z < len(chemical_symbols) else str(z)


@functools.lru_cache(maxsize=16)
def _element_table(supported: tuple[int, ...]) -> np.ndarray:
    """Bool lookup table by atomic number of a model's elements (built once per model)."""
    table = np.zeros(max(max(supported, default=0), 119) + 1, dtype=bool)
    table[list(supported)] = True
    return table


@functools.lru_cache(maxsize=16)
def _element_table_on(supported: tuple[int, ...], device: torch.device) -> Tensor:
    return torch.from_numpy(_element_table(supported)).to(device)


def _atom_flags_host(batch: StructureBatch, supported: Sequence[int] | None) -> tuple[np.ndarray, tuple]:
    """Per structure: any non-finite, far or unknown atom (B, 3); and those per-atom masks. numpy,
    for a batch from host arrays."""
    pos, z = batch.positions.numpy(), batch.numbers.numpy()
    finite = np.isfinite(pos).all(axis=1)
    far = np.abs(pos).max(axis=1, initial=0.0) > MAX_COORDINATE
    if supported is not None:
        table = _element_table(tuple(supported))
        unknown = ~table[np.clip(z, 0, len(table) - 1)] | (z < 0) | (z >= len(table))
    else:
        unknown = np.zeros_like(finite)
    masks = (~finite, far & finite, unknown)
    per_atom = np.stack(masks, axis=1)
    B = batch.num_structures
    if not per_atom.any():  # the common case: nothing to attribute to a structure
        return np.zeros((B, 3), dtype=bool), masks
    owner = np.repeat(np.arange(B), batch.sizes)
    flags = np.stack([np.bincount(owner, weights=per_atom[:, k], minlength=B) > 0 for k in range(3)], axis=1)
    return flags, masks


def _atom_flags_torch(batch: StructureBatch, supported: Sequence[int] | None) -> tuple[Tensor, tuple]:
    """`_atom_flags_host` on the batch's device (no host sync: the flags come back with the cell)."""
    bad_pos = ~torch.isfinite(batch.positions).all(dim=1)
    far = batch.positions.abs().amax(dim=1) > MAX_COORDINATE
    if supported is not None:
        table = _element_table_on(tuple(supported), batch.device)
        z = batch.numbers
        unknown = ~table[z.clamp(0, table.numel() - 1)] | (z < 0) | (z >= table.numel())
    else:
        unknown = torch.zeros_like(bad_pos)
    per_atom = torch.stack([bad_pos, far & ~bad_pos, unknown], dim=1).to(torch.float64)
    flags = torch.zeros((batch.num_structures, 3), dtype=torch.float64, device=batch.device).index_add_(
        0, batch.batch(), per_atom)
    return flags, (bad_pos, far & ~bad_pos, unknown)


def check_atoms(batch: StructureBatch, supported: Sequence[int] | None = None, host: bool = False) -> Lattices:
    """Sizes, coordinates, elements and cells; returns the batch's lattices. host: the batch's tensors
    are host arrays (CPU, from ase.Atoms), checked with numpy; else on their device (one host sync)."""
    B = batch.num_structures
    if B == 0:
        raise StructureError("no structures given")
    if host:
        flags, masks = _atom_flags_host(batch, supported)
        cell, pbc = batch.cell.numpy(), batch.pbc.numpy()
    else:
        flags, masks = _atom_flags_torch(batch, supported)
        host_data = torch.cat([flags, batch.cell.reshape(B, 9), batch.pbc.reshape(B, 3).to(torch.float64)],
                              dim=1).cpu().numpy()
        flags, cell, pbc = host_data[:, :3] > 0, host_data[:, 3:12].reshape(B, 3, 3), host_data[:, 12:].astype(bool)
    lat = lattices(cell, pbc)
    for b in range(B):
        label = batch.labels[b]
        if batch.sizes[b] == 0:
            raise StructureError(f"{label}: empty structure (no atoms)")
        if flags[b].any():
            s = slice(int(batch.ptr[b]), int(batch.ptr[b + 1]))
            kind = int(np.argmax(flags[b]))
            mask = masks[kind][s]
            atoms = np.flatnonzero(mask.cpu().numpy() if isinstance(mask, Tensor) else mask)
            if kind == 0:
                raise StructureError(f"{label}: non-finite positions for atoms {atoms[:10].tolist()}")
            if kind == 1:
                raise StructureError(f"{label}: positions of atoms {atoms[:10].tolist()} are more than "
                                     f"{MAX_COORDINATE:.0e} A from the origin (no atomic structure; are they in A?)")
            zs = sorted(set(batch.numbers[s].cpu().numpy()[atoms].tolist()))
            names = ", ".join(_symbol(z) for z in zs)
            raise StructureError(f"{label}: element(s) {names} not supported by this model "
                                 f"({len(supported)} elements known)")
        if lat.problems[b] is not None:
            raise StructureError(f"{label}: {lat.problems[b]}")
    return lat


def check_lattices(batch: StructureBatch, lat: Lattices, min_distance: float) -> None:
    """An atom overlapping its own periodic image: the shortest lattice vector below min_distance."""
    for b in np.flatnonzero(lat.shortest < min_distance):
        n = lat.shortest_vector[b]
        combo = combination(n.tolist())
        raise StructureError(
            f"{batch.labels[b]}: every atom overlaps its own periodic image: the lattice vector {combo} of the "
            f"cell is {lat.shortest[b]:.3g} A long (below min_distance={min_distance} A); the cell is too small or "
            "too thin, or its vectors are nearly parallel")


@dataclass
class Frame:
    """A checked batch in coordinates relative to each structure (see the module docstring)."""

    structures: StructureBatch
    lattice: Lattices
    box: Tensor  # (B, 3, 3) the graph's cell: reduced lattice rows, orthonormal complement rows
    positions: Tensor  # (N, 3) wrapped, relative
    wrap: Tensor  # (N, 3) float64 integers K: positions = input - reference - K @ box
    batch: Tensor  # (N,)
    spread: np.ndarray  # (B, 3) extent of each structure along each box row, in units of the row
    host: bool = False  # made from host arrays by numpy (`frame(host=True)`): CPU tensors, numpy work on them

    def to(self, device: torch.device | str) -> "Frame":
        """The same frame on `device`, for the device's neighbour-list methods."""
        b = self.structures
        batch = StructureBatch(b.positions.to(device), b.numbers.to(device), b.cell.to(device), b.pbc.to(device),
                               b.sizes, b.labels)
        return Frame(batch, self.lattice, self.box.to(device), self.positions.to(device), self.wrap.to(device),
                     self.batch.to(device), self.spread)

    def edge_vectors(self, center: Tensor, neighbor: Tensor, shift: Tensor) -> Tensor:
        """float64 edge vectors of edges given with shifts in the box's basis."""
        return self.positions[neighbor] - self.positions[center] + rows_times(shift, self.box[self.batch[center]])

    def input_shifts(self, center: Tensor, neighbor: Tensor, shift: Tensor) -> Tensor:
        """Shifts in the box's basis -> integer shifts of the input cell, for the input positions."""
        s = shift - self.wrap[neighbor] + self.wrap[center]
        if self.lattice.reduced.any():
            s = rows_times(s, self._matrix(self.lattice.to_cell)[self.batch[center]])
        return s

    def frame_shifts(self, center: Tensor, neighbor: Tensor, shift: Tensor) -> Tensor:
        """The inverse of `input_shifts`."""
        s = shift.to(torch.float64)
        if self.lattice.reduced.any():
            s = rows_times(s, self._matrix(self.lattice.from_cell)[self.batch[center]])
        return s + self.wrap[neighbor] - self.wrap[center]

    def _matrix(self, m: np.ndarray) -> Tensor:
        return torch.from_numpy(m.astype(np.float64)).to(self.box.device)


def rows_times(x: Tensor, m: Tensor) -> Tensor:
    """x[n] @ m[n] for (n, 3) rows and (n, 3, 3) matrices (a broadcast sum: much faster than a
    batched matrix product of 3x3 matrices on the CPU)."""
    return x[:, 0, None] * m[:, 0] + x[:, 1, None] * m[:, 1] + x[:, 2, None] * m[:, 2]


def segment_range(x: Tensor, index: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Per-segment minimum and maximum of the rows of x (n segments; empty ones give inf, -inf)."""
    at = index[:, None].expand(-1, x.shape[1])
    lo = torch.full((n, x.shape[1]), math.inf, dtype=x.dtype, device=x.device).scatter_reduce(0, at, x, "amin")
    hi = torch.full((n, x.shape[1]), -math.inf, dtype=x.dtype, device=x.device).scatter_reduce(0, at, x, "amax")
    return lo, hi


def frame(batch: StructureBatch, lat: Lattices, host: bool = False) -> Frame:
    """Wrap each structure's periodic coordinates next to its first atom (nearest image in the
    reduced lattice) and subtract the centre of its bounding box. host: with numpy (see check_atoms)."""
    if host:
        return _frame_host(batch, lat)
    dev = batch.device
    idx = batch.batch()
    box = torch.from_numpy(lat.box).to(dev)
    pbc = torch.from_numpy(lat.pbc).to(dev)
    first = torch.from_numpy(batch.ptr[:-1]).to(dev)
    rel = batch.positions - batch.positions[first][idx]
    frac = rows_times(rel, torch.from_numpy(lat.inverse).to(dev)[idx])
    wrap = torch.where(pbc[idx], torch.round(frac), torch.zeros_like(frac))
    pos = batch.positions - rows_times(wrap, box[idx])
    lo, hi = segment_range(pos, idx, batch.num_structures)
    pos = pos - (0.5 * (lo + hi))[idx]
    flo, fhi = segment_range(frac - wrap, idx, batch.num_structures)
    spread = (fhi - flo).cpu().numpy()
    return Frame(batch, lat, box, pos, wrap, idx, spread)


def _frame_host(batch: StructureBatch, lat: Lattices) -> Frame:
    """`frame` in numpy, the same operations in the same order (structures are non-empty: checked)."""
    x, sizes, starts = batch.positions.numpy(), batch.sizes, batch.ptr[:-1]
    idx = np.repeat(np.arange(batch.num_structures), sizes)
    rel = x - np.repeat(x[starts], sizes, axis=0)
    frac = rows_times(rel, lat.inverse[idx])
    wrap = np.where(lat.pbc[idx], np.round(frac), 0.0)
    pos = x - rows_times(wrap, lat.box[idx])
    lo, hi = np.minimum.reduceat(pos, starts, axis=0), np.maximum.reduceat(pos, starts, axis=0)
    pos = pos - np.repeat(0.5 * (lo + hi), sizes, axis=0)
    f = frac - wrap
    spread = np.maximum.reduceat(f, starts, axis=0) - np.minimum.reduceat(f, starts, axis=0)
    t = torch.from_numpy
    return Frame(batch, lat, t(lat.box), t(pos), t(wrap), t(idx), spread, host=True)


def ball_volume(dims: int, r: float) -> float:
    return (1.0, 2 * r, math.pi * r * r, 4 / 3 * math.pi * r ** 3)[dims]


def check_density(fr: Frame, cutoff: float, max_neighbors: float) -> np.ndarray:
    """Estimate the mean number of neighbours per atom within `cutoff` before any list is built, and
    raise StructureError where it exceeds `max_neighbors` or the periodic images exceed MAX_IMAGES.

    Two estimates, the larger counts: the lattice's (atoms per cell times the cells whose volume
    fits in a ball of the cutoff: right for any crystal, however small its cell), and a coarse
    histogram of the atoms themselves in cubes of side `cutoff` (4/3 pi sum(n^2) / N: right for
    clusters and for atoms crowded into a small region, periodic or not). Returns the images per
    periodic direction needed to find every neighbour, ceil(cutoff / height)."""
    lat, batch = fr.lattice, fr.structures
    dims = lat.dims
    sizes = batch.sizes.astype(np.float64)
    lattice_est = np.array([sizes[b] * ball_volume(int(dims[b]), cutoff) / lat.volume[b] if dims[b] else 0.0
                            for b in range(len(sizes))])
    # sum(n^2) <= N^2 bounds the histogram's estimate by 4/3 pi N: below max_neighbors it cannot
    # decide anything (1e-9: room for round-off), and small structures skip it
    if ball_volume(3, 1.0) * sizes.max(initial=0.0) * (1 + 1e-9) <= max_neighbors:
        bin_est = np.zeros_like(sizes)
    else:
        bin_est = ball_volume(3, cutoff) / cutoff ** 3 * _cube_squares(fr, cutoff) / np.maximum(sizes, 1)
    est = np.maximum(lattice_est, bin_est)
    with np.errstate(divide="ignore"):
        n_img = np.where(lat.pbc, np.ceil(cutoff / lat.heights), 0).astype(np.int64)
    images = np.prod(2 * n_img + 1, axis=1)
    for b in range(len(sizes)):
        label = batch.labels[b]
        if est[b] > max_neighbors:
            if dims[b] and lattice_est[b] >= bin_est[b]:
                unit = ("", "A", "A^2", "A^3")[dims[b]]
                why = f"{lat.volume[b] / sizes[b]:.3g} {unit} of the periodic cell per atom"
            else:
                why = "the atoms are crowded into a small region"
            raise StructureError(
                f"{label}: about {est[b]:.3g} neighbours per atom within the {cutoff} A cutoff ({why}; a dense "
                f"solid has about {0.15 * ball_volume(3, cutoff):.0f}): the cell is far too small or the positions "
                "are not in A. "
                f"To evaluate it anyway, raise max_neighbors (now {max_neighbors:g})")
        if images[b] > MAX_IMAGES:
            raise StructureError(f"{label}: the cutoff reaches {images[b]:.3g} periodic images of the cell "
                                 f"(heights {np.round(lat.heights[b], 4).tolist()} A): the cell is far too small")
    return n_img


def _cube_squares(fr: Frame, cutoff: float) -> np.ndarray:
    """(B,) sum over the cubes of side `cutoff` of each structure of their atom counts squared."""
    # one integer key per (structure, cube): 15 bits per coordinate, so cubes 2^15 apart share a key
    # (a larger count: the estimate can only err upwards)
    B = fr.structures.num_structures
    if fr.host:
        cube = np.floor(fr.positions.numpy() / cutoff).astype(np.int64) & 0x7FFF
        key = ((fr.batch.numpy() * 0x8000 + cube[:, 0]) * 0x8000 + cube[:, 1]) * 0x8000 + cube[:, 2]
        uniq, counts = np.unique(key, return_counts=True)
        return np.bincount(uniq >> 45, weights=counts.astype(np.float64) ** 2, minlength=B)
    cube = torch.floor(fr.positions / cutoff).long() & 0x7FFF
    key = ((fr.batch * 0x8000 + cube[:, 0]) * 0x8000 + cube[:, 1]) * 0x8000 + cube[:, 2]
    uniq, counts = torch.unique(key, return_counts=True)
    return torch.zeros(B, dtype=torch.float64, device=key.device).index_add_(
        0, uniq >> 45, counts.to(torch.float64) ** 2).cpu().numpy()


def checked_frame(batch: StructureBatch, supported: Sequence[int] | None, cutoff: float | None,
                  min_distance: float, max_neighbors: float = MAX_NEIGHBORS,
                  host: bool = False) -> tuple[Frame, np.ndarray]:
    """All checks that need no neighbour list, and the frame; returns it with the images per
    periodic direction (None without a cutoff). host: the batch holds host arrays (from ase.Atoms),
    checked and framed with numpy; else with torch on the batch's device."""
    lat = check_atoms(batch, supported, host)
    check_lattices(batch, lat, min_distance)
    fr = frame(batch, lat, host)
    n_img = check_density(fr, cutoff, max_neighbors) if cutoff is not None else None
    return fr, n_img


def check_structure(atoms: Atoms, supported: Sequence[int] | None = None, label: str = "structure",
                    cutoff: float | None = None, min_distance: float = 0.1,
                    max_neighbors: float = MAX_NEIGHBORS) -> None:
    """Raise StructureError for a structure the model cannot take: empty, NaN, unknown element,
    a cell that is degenerate or makes atoms overlap their own images, and (with a cutoff) far
    more neighbours per atom than any material has. Pairs of atoms closer than min_distance are
    found with the neighbour list (`hipot.neighbors.neighbor_list`)."""
    batch = StructureBatch.from_atoms([atoms], [label])
    checked_frame(batch, supported, cutoff, min_distance, max_neighbors, host=True)
