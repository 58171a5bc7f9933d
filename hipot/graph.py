"""Structures -> graphs: validation, periodic neighbour lists (vesin) and batching."""
from __future__ import annotations

import warnings
from typing import Iterator, Sequence

import numpy as np
import torch
import vesin
from ase import Atoms
from ase.data import chemical_symbols

from .types import AtomGraph, StructureError


def check_structure(atoms: Atoms, supported: Sequence[int] | None = None, label: str = "structure") -> None:
    """Raise StructureError for input the model cannot take (empty, NaN, unknown element, bad cell)."""
    if len(atoms) == 0:
        raise StructureError(f"{label}: empty structure (no atoms)")
    pos = atoms.positions
    if not np.all(np.isfinite(pos)):
        bad = np.unique(np.where(~np.isfinite(pos))[0])
        raise StructureError(f"{label}: non-finite positions for atoms {bad[:10].tolist()}")
    cell = atoms.cell.array
    if not np.all(np.isfinite(cell)):
        raise StructureError(f"{label}: non-finite cell {cell.tolist()}")
    if supported is not None:
        unknown = sorted(set(atoms.numbers.tolist()) - set(supported))
        if unknown:
            names = ", ".join(chemical_symbols[z] if 0 <= z < len(chemical_symbols) else str(z) for z in unknown)
            raise StructureError(f"{label}: element(s) {names} not supported by this model "
                                 f"({len(supported)} elements known)")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        lengths = np.linalg.norm(cell, axis=1)
        for d in np.where(pbc)[0]:
            if lengths[d] < 1e-6:
                raise StructureError(f"{label}: periodic along axis {d} but the cell vector {d} is zero")
        if pbc.all() and abs(np.linalg.det(cell)) < 1e-6:
            raise StructureError(f"{label}: periodic cell has zero volume (degenerate lattice vectors)")


def _full_rank_cell(atoms: Atoms) -> np.ndarray:
    """The cell with each zero vector of a non-periodic direction replaced by a unit normal (vesin
    needs a full-rank box; along a non-periodic direction it plays no role)."""
    cell = atoms.cell.array.astype(np.float64).copy()
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.any():
        return np.eye(3)
    for d in np.where(~pbc)[0]:
        if np.linalg.norm(cell[d]) < 1e-6:
            others = [cell[k] for k in range(3) if k != d]
            v = np.cross(others[0], others[1])
            cell[d] = v / max(np.linalg.norm(v), 1e-12)
    return cell


def neighbor_list(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list (both directions, periodic self-images kept, i == j at zero shift dropped).

    Returns center, neighbor, integer cell shifts and distances, computed in float64.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = _full_rank_cell(atoms)
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, s, d = nl.compute(atoms.positions.astype(np.float64), cell, pbc.tolist(), "ijSd")
    return i.astype(np.int64), j.astype(np.int64), s.astype(np.int64), d


def _neighbor_list_torch(atoms: Atoms, cutoff: float, device: torch.device):
    """The same list as `neighbor_list`, computed on `device` by vesin's torch backend."""
    NeighborList = _torch_neighbor_list_class()
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = _full_rank_cell(atoms)
    pos = torch.as_tensor(atoms.positions, dtype=torch.float64, device=device)
    box = torch.as_tensor(cell, dtype=torch.float64, device=device)
    periodic = torch.as_tensor(pbc, device=device)
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, s, d = nl.compute(points=pos, box=box, periodic=periodic, quantities="ijSd")
    return i.long(), j.long(), s.to(torch.float64), d


def small_batch_neighbor_lists(structures: Sequence[Atoms], cutoff: float, device: torch.device):
    """Neighbour lists of many small structures at once, by testing every pair of atoms against
    every periodic image that can lie within the cutoff: one pass and one host sync for the whole
    batch. Returns center, neighbor, integer shifts, distances and the structure of each edge,
    with atom indices local to each structure."""
    B = len(structures)
    nmax = max(len(a) for a in structures)
    pos = np.zeros((B, nmax, 3))
    wrap = np.zeros((B, nmax, 3))
    cells = np.zeros((B, 3, 3))
    n_img = np.zeros((B, 3), dtype=np.int64)
    valid = np.zeros((B, nmax), dtype=bool)
    for b, atoms in enumerate(structures):
        n = len(atoms)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        cell = _full_rank_cell(atoms)
        inv = np.linalg.inv(cell)
        # wrap periodic coordinates into the cell so that images beyond the nearest few are never needed
        k = np.floor(atoms.positions @ inv) * pbc
        pos[b, :n] = atoms.positions - k @ cell
        wrap[b, :n] = k
        cells[b] = cell * pbc[:, None] if pbc.any() else 0.0
        # planes of direction d are 1 / |column d of inv(cell)| apart
        n_img[b] = np.where(pbc, np.ceil(cutoff * np.linalg.norm(inv, axis=0)), 0)
        valid[b, :n] = True
    grid = [np.arange(-m, m + 1) for m in n_img.max(axis=0)]
    shifts = np.stack(np.meshgrid(*grid, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.float64)
    t = lambda x: torch.as_tensor(x, device=device)  # noqa: E731
    pos_t, cells_t, shifts_t, valid_t = t(pos), t(cells), t(shifts), t(valid)
    image = torch.einsum("ms,bsx->bmx", shifts_t, cells_t)  # (B, M, 3)
    vec = pos_t[:, None, :, None, :] - pos_t[:, :, None, None, :] + image[:, None, None, :, :]  # (B, i, j, M, 3)
    d2 = (vec * vec).sum(-1)
    same = torch.eye(nmax, dtype=torch.bool, device=device)[None, :, :, None] & (shifts_t.abs().sum(-1) == 0)
    own = (shifts_t.abs()[None] <= t(n_img)[:, None, :]).all(-1)  # (B, M): images this structure needs
    mask = (d2 < cutoff * cutoff) & valid_t[:, :, None, None] & valid_t[:, None, :, None] & ~same & own[:, None, None, :]
    b, i, j, m = mask.nonzero(as_tuple=True)
    wrap_t = t(wrap)
    s = shifts_t[m] - wrap_t[b, j] + wrap_t[b, i]
    return i, j, s, d2[b, i, j, m].sqrt(), b


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
                      "neighbour lists on the CPU", stacklevel=3)
        _WARNED = True
    return False


_WARNED = False


def _overlap_error(label: str, atoms: Atoms, cutoff: float, min_distance: float) -> StructureError:
    i, j, _s, d = neighbor_list(atoms, cutoff)
    k = int(np.argmin(d))
    return StructureError(f"{label}: atoms {i[k]} and {j[k]} overlap ({d[k]:.4f} A apart, "
                          f"below min_distance={min_distance} A)")


def _small_chunks(sizes: list[int], max_pairs: float = 3e7) -> Iterator[list[int]]:
    """Consecutive groups of structure indices whose padded all-pairs test stays under max_pairs
    candidates (assuming up to 125 periodic images)."""
    chunk: list[int] = []
    nmax = 0
    for b, n in enumerate(sizes):
        if chunk and (len(chunk) + 1) * max(nmax, n) ** 2 * 125 > max_pairs:
            yield chunk
            chunk, nmax = [], 0
        chunk.append(b)
        nmax = max(nmax, n)
    if chunk:
        yield chunk


def build_graph(structures: Sequence[Atoms], cutoff: float, supported: Sequence[int] | None = None,
                min_distance: float = 0.1, labels: Sequence[str] | None = None,
                device: torch.device | str | None = None, gpu_min_atoms: int = 256,
                batch_small: bool | None = None) -> AtomGraph:
    """Check structures, build their neighbour lists and concatenate them into one AtomGraph.

    Atoms closer than `min_distance` (A) are reported as overlapping: the model has no meaning there.
    On a CUDA `device` the graph is returned there and the neighbour lists are computed there too:
    structures of at least `gpu_min_atoms` atoms one by one with vesin's torch backend, smaller
    ones all together when there are at least four (`small_batch_neighbor_lists`; `batch_small`
    forces this on or off), else on the CPU. Then one host sync checks all their distances.
    """
    if len(structures) == 0:
        raise StructureError("no structures given")
    labels = list(labels) if labels is not None else [f"structure {b}" for b in range(len(structures))]
    for atoms, label in zip(structures, labels):
        check_structure(atoms, supported, label)
    device = torch.device(device) if device is not None else torch.device("cpu")
    sizes = [len(a) for a in structures]
    ptr = torch.tensor([0] + sizes, dtype=torch.long).cumsum(0)
    on_device = batch_small if batch_small is not None else device.type == "cuda"
    nl_device = device if device.type == "cuda" else torch.device("cpu")
    small = [b for b, n in enumerate(sizes) if n < gpu_min_atoms] if on_device else []
    if batch_small is None and len(small) < 4:
        small = []  # a few small structures: vesin on the CPU and one copy beat a batched GPU pass
    large_on_gpu = device.type == "cuda" and any(n >= gpu_min_atoms for n in sizes) and _gpu_list_or_warn()

    # edge pieces in global atom numbering, and for lists made on the device: (distances, structure of each edge)
    centers, neighbors, shifts, checks = [], [], [], []
    for chunk in _small_chunks([sizes[b] for b in small]):
        members = [small[k] for k in chunk]
        i, j, sh, d, local = small_batch_neighbor_lists([structures[b] for b in members], cutoff, nl_device)
        which = torch.as_tensor(members, device=nl_device)[local]
        offset = ptr.to(nl_device)[which]
        centers.append(i + offset)
        neighbors.append(j + offset)
        shifts.append(sh)
        checks.append((d, which))
    done = set(small)
    for b, atoms in enumerate(structures):
        if b in done:
            continue
        if large_on_gpu and sizes[b] >= gpu_min_atoms:
            i, j, sh, d = _neighbor_list_torch(atoms, cutoff, device)
            checks.append((d, torch.full_like(i, b)))
        else:
            i, j, sh, d = (torch.from_numpy(t) for t in neighbor_list(atoms, cutoff))
            sh = sh.to(torch.float64)
            if d.numel() and float(d.min()) < min_distance:
                raise _overlap_error(labels[b], atoms, cutoff, min_distance)
        centers.append(i + int(ptr[b]))
        neighbors.append(j + int(ptr[b]))
        shifts.append(sh)
    checks = [(d, w) for d, w in checks if d.numel()]
    if checks:
        mins = torch.stack([d.min() for d, _ in checks]).cpu()  # the one host sync
        if float(mins.min()) < min_distance:
            d, which = checks[int(torch.argmin(mins))]
            b = int(which[int(torch.argmin(d))])
            raise _overlap_error(labels[b], structures[b], cutoff, min_distance)
    target = device if device.type == "cuda" else torch.device("cpu")
    centers, neighbors, shifts = ([t.to(target) for t in ts] for ts in (centers, neighbors, shifts))
    graph = AtomGraph(
        numbers=torch.from_numpy(np.concatenate([a.numbers for a in structures]).astype(np.int64)),
        positions=torch.from_numpy(np.concatenate([a.positions for a in structures]).astype(np.float64)),
        cell=torch.from_numpy(np.stack([a.cell.array for a in structures]).astype(np.float64)),
        pbc=torch.from_numpy(np.stack([np.asarray(a.pbc, dtype=bool) for a in structures])),
        center=torch.cat(centers) if centers else torch.zeros(0, dtype=torch.long),
        neighbor=torch.cat(neighbors) if neighbors else torch.zeros(0, dtype=torch.long),
        cell_shift=torch.cat(shifts) if shifts else torch.zeros((0, 3), dtype=torch.float64),
        batch=torch.repeat_interleave(torch.arange(len(structures)), torch.tensor(sizes)),
        ptr=ptr,
    )
    return graph.to(device) if device.type == "cuda" else graph


def build_graph_from_tensors(positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor,
                             pbc: torch.Tensor, system_idx: torch.Tensor, cutoff: float,
                             supported: Sequence[int] | None = None, min_distance: float = 0.1,
                             labels: Sequence[str] | None = None, dtype: torch.dtype | None = None) -> AtomGraph:
    """The same graph as `build_graph`, from a batch given as tensors on any device: positions
    (N, 3), numbers (N,), cell (B, 3, 3) with rows as lattice vectors, pbc (B, 3) or (3,), and
    system_idx (N,) the structure of each atom (non-decreasing, every structure non-empty).
    The graph is returned on the tensors' device in `dtype` (default: the positions' dtype),
    with the same checks and errors as `build_graph`."""
    device = positions.device
    n_sys = cell.shape[0]
    if pbc.dim() == 1:
        pbc = pbc.expand(n_sys, 3)
    if system_idx.numel() and bool((system_idx[1:] < system_idx[:-1]).any()):
        raise StructureError("system_idx must be non-decreasing (atoms grouped by structure)")
    counts = torch.bincount(system_idx, minlength=n_sys).cpu()
    labels = list(labels) if labels is not None else [f"structure {b}" for b in range(n_sys)]
    for b in range(n_sys):
        if int(counts[b]) == 0:
            raise StructureError(f"{labels[b]}: empty structure (no atoms)")
    # TODO(graph): neighbour lists on the device without a per-structure host round trip
    pos, num, cel, per = (t.detach().cpu().numpy() for t in (positions.double(), numbers, cell.double(), pbc))
    ptr = np.concatenate([[0], np.cumsum(counts.numpy())])
    structures = [Atoms(numbers=num[ptr[b]:ptr[b + 1]], positions=pos[ptr[b]:ptr[b + 1]], cell=cel[b],
                        pbc=per[b].tolist()) for b in range(n_sys)]
    graph = build_graph(structures, cutoff, supported, min_distance, labels=labels, device=device)
    return graph.to(device, dtype or positions.dtype)
