"""Neighbour lists of a checked `Frame`: every pair of atoms, periodic images included, closer
than the cutoff, and the one check of what is an overlap.

Three ways to find them, all giving the same edges:
- "pairs": every pair of atoms against every periodic image within reach, for a batch of small
  structures at once on their device (one pass and one host sync per chunk of structures);
- "vesin": vesin's cell list on the CPU, structure by structure;
- "vesin-torch": vesin's torch backend on the structures' device (GPUs), structure by structure.

vesin's cell list cannot take every input: when its cell count is capped (1e5 cells) for an
elongated box, a dimension can round to zero cells and the process dies of a floating-point
exception; with mixed periodicity it searches every cell along non-periodic directions, which
takes minutes for atoms far apart. So vesin is given an equivalent problem instead: a periodic
direction that no edge can cross (a huge box) becomes non-periodic; along non-periodic directions
the empty gaps wider than the cutoff are shortened to just over it (no edge spans such a gap,
and all others keep their vectors); then the non-periodic directions get a periodic length with a
gap wider than the cutoff (no image comes within the cutoff), so that vesin sees a fully periodic
(or fully non-periodic) compact box. Where its cell count would still be capped into a zero,
vesin gets a larger cutoff (its cells grow) and the list is cut back to the real one; beyond a
doubling, the pairs method takes the structure, or it is refused with a StructureError.

Why one module: the three methods must give the same edges, and share the plan that picks one per
structure, the rewriting of vesin's input and the one overlap check; apart, a change to one would
not be seen beside the others.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import vesin
from ase import Atoms
from torch import Tensor

from .lattice import complete, inverse
from .structures import MAX_NEIGHBORS, Frame, StructureBatch, checked_frame, rows_times, segment_range
from .types import StructureError

METHODS = ("auto", "pairs", "vesin", "vesin-torch")
VESIN_MAX_CELLS = 1e5  # vesin's own cap on the number of cells of its cell list
PAIR_BUDGET = {"cuda": 3e7, "cpu": 4e6}  # candidate (i, j, image) triples per pass of the pairs method


@dataclass
class Edges:
    """Edges of a frame: atom indices over the whole batch, shifts in the frame's box basis."""

    center: Tensor  # (E,)
    neighbor: Tensor  # (E,)
    shift: Tensor  # (E, 3) float64, integer-valued
    distance: Tensor | None = None  # (E,) float64


def find_edges(fr: Frame, n_img: np.ndarray, cutoff: float, min_distance: float, method: str = "auto",
               gpu_min_atoms: int = 256) -> Edges:
    """All edges of a checked frame, found on its device; raises StructureError for overlapping atoms.
    A host frame (`Frame.host`) that vesin on the CPU lists entirely is done in numpy."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    plan = _plan(fr, n_img, method, gpu_min_atoms, fr.positions.device)
    if fr.host and all(m == "vesin" for m in plan):
        return _host_edges(fr, n_img, cutoff, min_distance)
    dev = fr.positions.device
    parts: list[tuple[Tensor, Tensor, Tensor]] = []
    pairs = [b for b, m in enumerate(plan) if m == "pairs"]
    if pairs:
        parts += _pair_edges(fr, pairs, n_img, cutoff)
    listed = [b for b, m in enumerate(plan) if m != "pairs"]
    if listed:
        parts += _vesin_edges(fr, listed, [plan[b] == "vesin-torch" for b in listed], n_img, cutoff)
    if parts:
        center, neighbor, shift, d = (torch.cat([p[k] for p in parts]) if len(parts) > 1 else parts[0][k]
                                      for k in range(4))
    else:
        center = neighbor = torch.zeros(0, dtype=torch.long, device=dev)
        shift = torch.zeros((0, 3), dtype=torch.float64, device=dev)
        d = torch.zeros(0, dtype=torch.float64, device=dev)
    keep = d < cutoff  # the one definition of an edge, whatever found it (vesin may have used a longer cutoff)
    if not bool(keep.all()):
        center, neighbor, shift, d = center[keep], neighbor[keep], shift[keep], d[keep]
    _check_overlaps(fr, center, neighbor, shift, d, min_distance)
    return Edges(center, neighbor, shift, d)


def _host_edges(fr: Frame, n_img: np.ndarray, cutoff: float, min_distance: float) -> Edges:
    """`find_edges` of a host frame listed by vesin on the CPU: the same steps in numpy."""
    i, j, sh, d = _vesin_edges(fr, list(range(fr.structures.num_structures)), [False] * fr.structures.num_structures,
                               n_img, cutoff, host=True)[0]
    keep = d < cutoff  # as in find_edges
    if not keep.all():
        i, j, sh, d = i[keep], j[keep], sh[keep], d[keep]
    if len(d) and d.min() < min_distance:  # the common case needs no per-structure minimum
        shortest = np.full(fr.structures.num_structures, np.inf)
        np.minimum.at(shortest, fr.batch.numpy()[i], d)
        b = int(np.flatnonzero(shortest < min_distance)[0])
        k = int(np.argmin(np.where(fr.batch.numpy()[i] == b, d, np.inf)))
        _overlap_error(fr, b, *(torch.from_numpy(x[k:k + 1]) for x in (i, j, sh)), float(d[k]), min_distance)
    t = torch.from_numpy
    return Edges(t(i), t(j), t(sh), t(d))


def edge_frame(fr: Frame, n_img: np.ndarray, method: str, gpu_min_atoms: int,
               device: torch.device | str | None) -> Frame:
    """Where `find_edges` is to work on a frame for a graph on `device`: a host frame stays on the
    host when vesin on the CPU lists every structure (the graph is uploaded once, finished), else
    it moves to the device, whose methods then find the edges."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if fr.host and device.type != "cpu" and any(m != "vesin" for m in _plan(fr, n_img, method, gpu_min_atoms, device)):
        return fr.to(device)
    return fr


def _plan(fr: Frame, n_img: np.ndarray, method: str, gpu_min_atoms: int, device: torch.device) -> list[str]:
    """The method of each structure for edges found for a graph on `device`."""
    sizes = fr.structures.sizes
    on_gpu = device.type == "cuda"
    budget = PAIR_BUDGET["cuda" if on_gpu else "cpu"]
    fits = sizes.astype(np.float64) ** 2 * np.prod(2 * n_img + 1, axis=1) <= budget
    big = (sizes >= gpu_min_atoms) | ~fits
    large = "vesin-torch" if on_gpu and big.any() and _gpu_list_or_warn() else "vesin"
    if method == "pairs":
        return ["pairs" if f else large for f in fits]
    if method == "vesin-torch":
        if not gpu_neighbor_list_available():
            raise RuntimeError("vesin's torch backend is not usable here (pip install 'hipot[gpu]')")
        return ["vesin-torch"] * len(sizes)
    if method == "vesin" or not on_gpu:
        return ["vesin"] * len(sizes)
    small = (sizes < gpu_min_atoms) & fits
    if small.sum() < 4:  # a few small structures: vesin on the CPU and one copy beat a batched GPU pass
        small[:] = False
    return ["pairs" if s else (large if n >= gpu_min_atoms else "vesin") for s, n in zip(small, sizes)]


# ----------------------------------------------------------------------------- all pairs

def _pair_edges(fr: Frame, members: list[int], n_img: np.ndarray, cutoff: float) -> list[tuple[Tensor, ...]]:
    """Every pair of atoms of each structure against every periodic image within reach (the frame's
    positions are wrapped, so ceil(cutoff / height) images per direction suffice)."""
    dev = fr.positions.device
    budget = PAIR_BUDGET["cuda" if dev.type == "cuda" else "cpu"]
    sizes, ptr = fr.structures.sizes, fr.structures.ptr
    out = []
    for chunk in _chunks(members, sizes, n_img, budget):
        nmax = int(sizes[chunk].max())
        reach = n_img[chunk].max(axis=0)
        grid = [np.arange(-m, m + 1) for m in reach]
        shifts = np.stack(np.meshgrid(*grid, indexing="ij"), axis=-1).reshape(-1, 3)
        own = (np.abs(shifts)[None] <= n_img[chunk][:, None, :]).all(-1)  # (B, M): images each structure needs
        local = np.arange(nmax)
        atom = ptr[chunk][:, None] + local[None, :]  # (B, nmax)
        valid = local[None, :] < sizes[chunk][:, None]
        t = lambda x: torch.as_tensor(x, device=dev)  # noqa: E731
        atom_t, valid_t, shifts_t, own_t = t(np.where(valid, atom, 0)), t(valid), t(shifts.astype(np.float64)), t(own)
        pos = fr.positions[atom_t]  # (B, nmax, 3)
        image = torch.einsum("ms,bsx->bmx", shifts_t, fr.box[t(np.asarray(chunk))])  # (B, M, 3)
        vec = pos[:, None, :, None, :] - pos[:, :, None, None, :] + image[:, None, None, :, :]  # (B, i, j, M, 3)
        d2 = (vec * vec).sum(-1)
        zero = t((shifts == 0).all(-1))
        same = torch.eye(nmax, dtype=torch.bool, device=dev)[None, :, :, None] & zero
        mask = (d2 < cutoff * cutoff) & ~same & own_t[:, None, None, :] \
            & valid_t[:, :, None, None] & valid_t[:, None, :, None]
        b, i, j, m = mask.nonzero(as_tuple=True)
        out.append((atom_t[b, i], atom_t[b, j], shifts_t[m], d2[b, i, j, m].sqrt()))
    return out


def _chunks(members: list[int], sizes: np.ndarray, n_img: np.ndarray, budget: float):
    """Consecutive groups whose padded all-pairs test stays within the budget."""
    chunk: list[int] = []
    nmax, reach = 0, np.zeros(3, dtype=np.int64)
    for b in members:
        n2, r2 = max(nmax, int(sizes[b])), np.maximum(reach, n_img[b])
        if chunk and (len(chunk) + 1) * n2 ** 2 * np.prod(2 * r2 + 1) > budget:
            yield chunk
            chunk, n2, r2 = [], int(sizes[b]), n_img[b].copy()
        chunk.append(b)
        nmax, reach = n2, r2
    if chunk:
        yield chunk


# ----------------------------------------------------------------------------- vesin

def _vesin_edges(fr: Frame, members: list[int], on_device: list[bool], n_img: np.ndarray,
                 cutoff: float, host: bool = False) -> list[tuple[Tensor, ...]]:
    """Edges of members by vesin, in parts (each: center, neighbor, shift, distance). host: every
    member on the CPU, returned as one part of numpy arrays."""
    dev = fr.positions.device
    pos, offsets, boxes, periodic, kept, rcs, faces = _vesin_inputs(fr, members, cutoff)
    host_pos = pos.cpu().numpy() if not all(on_device) else None  # one copy for every structure the CPU lists
    ptr, sizes = fr.structures.ptr, fr.structures.sizes
    budget = PAIR_BUDGET["cuda" if dev.type == "cuda" else "cpu"]
    cpu_parts, dev_parts, fallback = [], [], []
    for k, b in enumerate(members):
        if rcs[k] is None:
            n = int(sizes[b])
            if n * n * np.prod(2 * n_img[b] + 1) > 4 * budget:
                raise StructureError(
                    f"{fr.structures.labels[b]}: too elongated for the neighbour list ({n} atoms in a box of "
                    f"{np.round(faces[k], 1).tolist()} A along its directions, after removing empty space)")
            fallback.append(b)
            continue
        sl = slice(int(offsets[k]), int(offsets[k + 1]))
        if on_device[k]:
            i, j, sh, d = _torch_list(pos[sl], torch.as_tensor(boxes[k], device=dev), bool(periodic[k]), rcs[k])
            keep = torch.as_tensor(kept[k], device=dev)
            ok = (sh[:, ~keep] == 0).all(dim=1)  # no image across a padded direction
            dev_parts.append((i[ok] + int(ptr[b]), j[ok] + int(ptr[b]), sh[ok].to(torch.float64), d[ok]))
        else:
            nl = vesin.NeighborList(cutoff=rcs[k], full_list=True)
            i, j, sh, d = nl.compute(host_pos[sl], boxes[k], [bool(periodic[k])] * 3, "ijSd")
            if not kept[k].all():
                ok = (sh[:, ~kept[k]] == 0).all(axis=1)
                i, j, sh, d = i[ok], j[ok], sh[ok], d[ok]
            cpu_parts.append((i.astype(np.int64) + ptr[b], j.astype(np.int64) + ptr[b], sh, d))
    if host:  # in the order of the device path below: vesin's structures, then the pairs method's
        if fallback:
            cpu_parts += [tuple(x.numpy() for x in p) for p in _pair_edges(fr, fallback, n_img, cutoff)]
        parts = cpu_parts or [(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0))]
        return [tuple((np.concatenate([p[c] for p in parts]) if len(parts) > 1 else parts[0][c]).astype(dt, copy=False)
                      for c, dt in enumerate((np.int64, np.int64, np.float64, np.float64)))]
    out = dev_parts
    if cpu_parts:
        i, j, sh, d = (np.concatenate([p[c] for p in cpu_parts]) if len(cpu_parts) > 1 else cpu_parts[0][c]
                       for c in range(4))
        t = lambda x, dt: torch.from_numpy(x.astype(dt, copy=False)).to(dev)  # noqa: E731
        out.append((t(i, np.int64), t(j, np.int64), t(sh, np.float64), t(d, np.float64)))
    if fallback:
        out += _pair_edges(fr, fallback, n_img, cutoff)
    return out


def _vesin_inputs(fr: Frame, members: list[int], cutoff: float):
    """The equivalent compact problem of each structure described in the module docstring:
    positions of all members (n, 3) with offsets per member, and per member the box, whether it is
    periodic (all or no directions), the directions kept periodic, vesin's cutoff (None: use the
    pairs method) and its box's face distances."""
    lat, dev = fr.lattice, fr.positions.device
    gap = cutoff + 1.0  # gaps are shortened to this: wider than the cutoff, so no edge across them
    m = np.asarray(members)
    room = (1.0 - fr.spread[m]) * np.where(lat.pbc[m], lat.heights[m], 0.0)  # empty length along each direction
    kept = lat.pbc[m] & (room <= cutoff)
    boxes = lat.box[m].copy()
    for k in np.flatnonzero((kept != lat.pbc[m]).any(axis=1)):
        p = np.flatnonzero(kept[k])
        boxes[k] = complete(boxes[k][p], p)
    periodic = kept.any(axis=1)
    sizes, ptr = fr.structures.sizes, fr.structures.ptr
    contiguous = len(m) == fr.structures.num_structures
    atoms = None if contiguous else torch.from_numpy(np.concatenate([np.arange(ptr[b], ptr[b + 1]) for b in m])).to(dev)
    pos = fr.positions if contiguous else fr.positions[atoms]
    offsets = np.concatenate([[0], np.cumsum(sizes[m])])
    extent = np.zeros((len(m), 3))
    open_ = ~kept  # directions vesin is not to treat as periodic: shorten their empty gaps
    if open_.any():
        owner = torch.from_numpy(np.repeat(np.arange(len(m)), sizes[m])).to(dev)
        axes = torch.from_numpy(boxes * open_[:, :, None]).to(dev)[owner]  # unit rows, zeros where kept
        coords = (pos[:, None, :] * axes).sum(-1)  # (n, 3) along each open direction
        squeezed = _shorten_gaps(coords, owner, len(m), gap)
        pos = pos + rows_times(squeezed - coords, axes)
        lo, hi = segment_range(squeezed, owner, len(m))
        extent = np.where(open_, (hi - lo).cpu().numpy(), 0.0)  # the one host sync of this step
    # open directions of a periodic box: a periodic length with a gap wider than the cutoff
    boxes = np.where((open_ & periodic[:, None])[:, :, None], boxes * (extent + gap)[:, :, None], boxes)
    boxes[~periodic] = np.eye(3)
    faces = np.where(periodic[:, None], 1.0 / np.linalg.norm(inverse(boxes), axis=1),
                     np.maximum(np.where(extent < 1e-6, 1.0, extent) * 1.01, 1.0))
    cells = np.prod(np.maximum(1.0, np.trunc(faces / cutoff)), axis=1)
    rcs = [cutoff if c < 0.9 * VESIN_MAX_CELLS else _vesin_cutoff(f, cutoff) for c, f in zip(cells, faces)]
    return pos, offsets, boxes, periodic, kept, rcs, faces


def _shorten_gaps(coords: Tensor, owner: Tensor, n_groups: int, gap: float) -> Tensor:
    """Coordinates with every gap wider than `gap` between consecutive atoms of a structure (along
    each axis separately) shortened to `gap`."""
    out = coords.clone()
    for a in range(coords.shape[1]):
        c = coords[:, a]
        order = torch.argsort(c, stable=True)
        order = order[torch.argsort(owner[order], stable=True)]  # by structure, then coordinate
        cs, os_ = c[order], owner[order]
        excess = torch.zeros_like(cs)
        if len(cs) > 1:
            excess[1:] = torch.clamp(cs[1:] - cs[:-1] - gap, min=0) * (os_[1:] == os_[:-1])
        cum = torch.cumsum(excess, 0)  # within a structure: excess of its own gaps only (first gap is 0)
        start = torch.zeros(n_groups, dtype=cum.dtype, device=cum.device).scatter_reduce(
            0, os_, cum, "amin", include_self=False)
        out[order, a] = cs - (cum - start[os_])
    return out


def _vesin_cutoff(faces: np.ndarray, cutoff: float) -> float | None:
    """A cutoff for which vesin's cell list is well-formed: its own if vesin keeps at least one cell
    along every dimension, else the smallest larger one (in 10 % steps) that does, with a margin for
    rounding; None beyond twice the cutoff (the pairs method then takes the structure)."""
    rc = cutoff
    while rc <= 2 * cutoff:
        if all(_vesin_cells_ok(faces * f, rc) for f in (0.98, 1.0, 1.02)):
            return rc
        rc *= 1.1
    return None


def _vesin_cells_ok(faces: np.ndarray, rc: float) -> bool:
    """vesin's cell count: trunc(face distance / cutoff) per dimension, at least 1; above 1e5 cells in
    all, rescaled keeping the ratios x/y and y/z, where a dimension can truncate to 0."""
    n = [max(1.0, math.trunc(f / rc)) for f in faces]
    if n[0] * n[1] * n[2] <= VESIN_MAX_CELLS:
        return True
    rxy, ryz = n[0] / n[1], n[1] / n[2]
    n2 = math.trunc((VESIN_MAX_CELLS / (rxy * ryz * ryz)) ** (1 / 3))
    n1 = math.trunc(ryz * n2)
    n0 = math.trunc(rxy * n1)
    return min(n0, n1, n2) >= 1


def _torch_list(pos: Tensor, box: Tensor, periodic: bool, rc: float) -> tuple[Tensor, ...]:
    NeighborList = _torch_neighbor_list_class()
    nl = NeighborList(cutoff=float(rc), full_list=True)
    i, j, s, d = nl.compute(points=pos, box=box, periodic=periodic, quantities="ijSd")
    return i.long(), j.long(), s.long(), d.to(torch.float64)


def _torch_neighbor_list_class():
    try:
        from vesin_torch import NeighborList  # vesin >= 0.6
    except ImportError:
        from vesin.torch import NeighborList  # older vesin
    return NeighborList


def gpu_neighbor_list_available() -> bool:
    """Whether vesin's torch backend can compute a neighbour list here. Tested by computing one:
    since vesin 0.6 `import vesin.torch` can succeed, or fail with a plain ImportError, without the
    `vesin-torch` package that does the work."""
    global _TORCH_NL
    if _TORCH_NL is None:
        try:
            NeighborList = _torch_neighbor_list_class()
            pts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
            i, _j = NeighborList(cutoff=1.5, full_list=True).compute(
                points=pts, box=torch.eye(3, dtype=torch.float64) * 10, periodic=False, quantities="ij")
            _TORCH_NL = int(i.numel()) == 2
        except Exception:  # any failure means: not usable, take the CPU list
            _TORCH_NL = False
    return _TORCH_NL


_TORCH_NL: bool | None = None


def _gpu_list_or_warn() -> bool:
    if gpu_neighbor_list_available():
        return True
    global _WARNED
    if not _WARNED:
        warnings.warn("vesin's torch backend is not usable here (pip install 'hipot[gpu]'); large cells get their "
                      "neighbour lists on the CPU", stacklevel=4)
        _WARNED = True
    return False


_WARNED = False


# ----------------------------------------------------------------------------- overlaps

def _check_overlaps(fr: Frame, center: Tensor, neighbor: Tensor, shift: Tensor, d: Tensor,
                    min_distance: float) -> None:
    """One host sync: the shortest edge of each structure against min_distance."""
    if not d.numel():
        return
    B = fr.structures.num_structures
    owner = fr.batch[center]
    shortest = torch.full((B,), math.inf, dtype=d.dtype, device=d.device).scatter_reduce(0, owner, d, "amin")
    shortest = shortest.cpu().numpy()
    bad = np.flatnonzero(shortest < min_distance)
    if not len(bad):
        return
    b = int(bad[0])
    k = int(torch.argmin(torch.where(owner == b, d, torch.full_like(d, math.inf))))
    _overlap_error(fr, b, center[k:k + 1], neighbor[k:k + 1], shift[k:k + 1], float(d[k]), min_distance)


def _overlap_error(fr: Frame, b: int, center: Tensor, neighbor: Tensor, shift: Tensor, distance: float,
                   min_distance: float) -> None:
    """Raise the StructureError of structure b's shortest edge (one edge given, on any device)."""
    start = int(fr.structures.ptr[b])
    i, j = int(center[0]) - start, int(neighbor[0]) - start
    s = fr.input_shifts(center, neighbor, shift)[0].round().long().tolist()
    label = fr.structures.labels[b]
    if i == j:
        raise StructureError(
            f"{label}: atom {i} and its own periodic image (cell shift {s}) are {distance:.4f} A apart, below "
            f"min_distance={min_distance} A: the cell is too small or too thin along that lattice vector")
    raise StructureError(f"{label}: atoms {i} and {j} overlap ({distance:.4f} A apart, below "
                         f"min_distance={min_distance} A)")


# ----------------------------------------------------------------------------- lists of ase.Atoms

def neighbor_lists(structures: Sequence[Atoms], cutoff: float, min_distance: float = 0.1,
                   max_neighbors: float = MAX_NEIGHBORS, labels: Sequence[str] | None = None,
                   supported: Sequence[int] | None = None, method: str = "auto",
                   device: torch.device | str | None = None) -> list[tuple[np.ndarray, ...]]:
    """Checked neighbour lists of structures (see `hipot.structures` for the checks), each as numpy
    arrays: center, neighbor (atom indices of the structure), integer shifts of its input cell and
    distances. Edge k joins atom center[k] to the image of neighbor[k] at
    positions[neighbor] + shift @ cell, for the structure's positions as given."""
    batch = StructureBatch.from_atoms(structures, labels)
    fr, n_img = checked_frame(batch, supported, cutoff, min_distance, max_neighbors, host=True)
    fr = edge_frame(fr, n_img, method, 256, device)
    e = find_edges(fr, n_img, cutoff, min_distance, method)
    shift = fr.input_shifts(e.center, e.neighbor, e.shift).round().long()
    owner = fr.batch[e.center]
    order = torch.argsort(owner, stable=True)
    counts = torch.bincount(owner, minlength=batch.num_structures).cpu().numpy()
    ptr = batch.ptr
    parts = [t[order].cpu().numpy() for t in (e.center, e.neighbor, shift, e.distance)]
    out, start = [], 0
    for b, n in enumerate(counts):
        sl = slice(start, start + n)
        out.append((parts[0][sl] - ptr[b], parts[1][sl] - ptr[b], parts[2][sl], parts[3][sl]))
        start += n
    return out


def neighbor_list(atoms: Atoms, cutoff: float, min_distance: float = 0.1, max_neighbors: float = MAX_NEIGHBORS,
                  label: str = "structure", method: str = "auto") -> tuple[np.ndarray, ...]:
    """The checked neighbour list of one structure: center, neighbor, integer cell shifts and distances
    (full list: both directions, periodic images of an atom itself included)."""
    return neighbor_lists([atoms], cutoff, min_distance, max_neighbors, [label], method=method)[0]


def _neighbor_list_torch(atoms: Atoms, cutoff: float, device: torch.device) -> tuple[Tensor, ...]:
    """The same list as `neighbor_list`, computed on `device` by vesin's torch backend."""
    i, j, s, d = neighbor_lists([atoms], cutoff, method="vesin-torch", device=device)[0]
    return (torch.from_numpy(x) for x in (i, j, s, d))
