"""Structures -> graph: the one graph builder.

    structures (ase.Atoms or tensors) -> StructureBatch -> checks and Frame (hipot.structures,
    hipot.lattice) -> edges (hipot.neighbors) -> AtomGraph on the device, in the model's dtype

Everything that decides what an edge, an overlap or a degenerate cell is lives in those modules;
`assemble` is the one place an AtomGraph is put together, for inference (`build_graph`,
`build_graph_from_tensors`) and for training (`graph_from_lists`, used by
`hipot.training.data.collate` with neighbour lists computed once per sample by
`hipot.neighbors.neighbor_list`).

The graph's positions are relative to each structure (wrapped into its cell, centred; see
`hipot.structures.Frame`) and its cell is a reduced basis of the structure's lattice, so a float32
model is as accurate far from the origin as near it. Energies, forces (per atom, in input order)
and stress do not change.
"""
from __future__ import annotations

from typing import Sequence

import torch
from ase import Atoms
from torch import Tensor

from .lattice import lattices
from .neighbors import Edges, edge_frame, find_edges, gpu_neighbor_list_available, neighbor_list, neighbor_lists
from .structures import MAX_NEIGHBORS, Frame, StructureBatch, check_structure, checked_frame, frame
from .types import AtomGraph, StructureError

__all__ = ["AtomGraph", "StructureBatch", "StructureError", "assemble", "build_graph", "build_graph_from_tensors",
           "check_structure", "gpu_neighbor_list_available", "graph_from_lists", "neighbor_list", "neighbor_lists"]


def build_graph(structures: Sequence[Atoms], cutoff: float, supported: Sequence[int] | None = None,
                min_distance: float = 0.1, labels: Sequence[str] | None = None,
                device: torch.device | str | None = None, dtype: torch.dtype = torch.float64,
                gpu_min_atoms: int = 256, method: str = "auto", max_neighbors: float = MAX_NEIGHBORS) -> AtomGraph:
    """Check structures, build their neighbour lists and return them as one AtomGraph on `device`
    (default CPU) with floating-point tensors in `dtype`; raise StructureError, naming the
    structure (`labels`, default "structure k") and the reason, for any input the model cannot take.

    min_distance (A): atoms closer than this overlap, including an atom and its own periodic image
        (the model has no meaning there; HIENet's smallest trained distances are far above 0.1 A).
    max_neighbors: the largest mean number of neighbours per atom within the cutoff, estimated from
        the lattice and the positions before any list is built. A dense solid has about 80 at 5 A;
        the default 2,000 (0.1 A-scale cells or positions in the wrong unit give 10^4-10^6) stops
        structures that would take gigabytes and minutes and give meaningless numbers.
    Periodic cell vectors must span a lattice (relative test: |volume| / product of lengths, or the
    sine of the angle of two vectors, above 1e-10); cell vectors above 1e9 A and coordinates beyond
    1e9 A are refused (`hipot.lattice`, `hipot.structures`).
    method: how neighbours are found ("auto", "pairs", "vesin", "vesin-torch", see
        `hipot.neighbors`). "auto": on a CUDA device, at least four structures under
        `gpu_min_atoms` atoms all together by the batched pairs test, larger ones by vesin's torch
        backend (vesin on the CPU, with a one-line warning, where it is not installed); on the CPU,
        vesin. Every method gives the same edges.
    """
    if len(structures) == 0:
        raise StructureError("no structures given")
    # host arrays: checked and framed with numpy, uploaded once as a finished graph where vesin on the
    # CPU lists every structure (tiny device kernels and host syncs would cost more than the work)
    batch = StructureBatch.from_atoms(structures, labels)
    device = torch.device(device) if device is not None else torch.device("cpu")
    return _build(batch, cutoff, supported, min_distance, max_neighbors, method, gpu_min_atoms, dtype, device)


def build_graph_from_tensors(positions: Tensor, numbers: Tensor, cell: Tensor, pbc: Tensor, system_idx: Tensor,
                             cutoff: float, supported: Sequence[int] | None = None, min_distance: float = 0.1,
                             labels: Sequence[str] | None = None, dtype: torch.dtype | None = None,
                             method: str = "auto", max_neighbors: float = MAX_NEIGHBORS) -> AtomGraph:
    """The same graph as `build_graph`, from a batch given as tensors on any device: positions
    (N, 3), numbers (N,), cell (B, 3, 3) with rows as lattice vectors, pbc (B, 3) or (3,), and
    system_idx (N,) the structure of each atom (non-decreasing, every structure non-empty).
    Computed on the tensors' device with a fixed number of host syncs per batch (about ten; plus
    one per structure that vesin's torch backend lists, those of `gpu_min_atoms` atoms or more on
    a GPU); returned there in `dtype` (default: the positions' dtype), with the same checks and
    errors as `build_graph`."""
    batch = StructureBatch.from_tensors(positions, numbers, cell, pbc, system_idx, labels)
    return _build(batch, cutoff, supported, min_distance, max_neighbors, method, 256, dtype or positions.dtype)


def _build(batch: StructureBatch, cutoff: float, supported: Sequence[int] | None, min_distance: float,
           max_neighbors: float, method: str, gpu_min_atoms: int, dtype: torch.dtype,
           device: torch.device | None = None) -> AtomGraph:
    """device: the graph's device for a batch of host arrays (None: a batch on its device, kept there)."""
    fr, n_img = checked_frame(batch, supported, cutoff, min_distance, max_neighbors, host=device is not None)
    if device is not None:
        fr = edge_frame(fr, n_img, method, gpu_min_atoms, device)
    edges = find_edges(fr, n_img, cutoff, min_distance, method, gpu_min_atoms)
    graph = assemble(fr, edges, dtype)
    return graph.to(device) if device is not None and graph.positions.device != device else graph


def assemble(fr: Frame, edges: Edges, dtype: torch.dtype = torch.float64) -> AtomGraph:
    """The AtomGraph of a frame and its edges, on the frame's device, floats in `dtype`: cast from
    float64 only here, after the coordinates were made relative to each structure."""
    batch = fr.structures
    dev = fr.positions.device
    return AtomGraph(numbers=batch.numbers, positions=fr.positions.to(dtype), cell=fr.box.to(dtype),
                     pbc=batch.pbc, center=edges.center, neighbor=edges.neighbor,
                     cell_shift=edges.shift.to(dtype), batch=fr.batch,
                     ptr=torch.from_numpy(batch.ptr).to(dev))


def graph_from_lists(batch: StructureBatch, center: Tensor, neighbor: Tensor, shift: Tensor,
                     dtype: torch.dtype = torch.float64) -> AtomGraph:
    """The AtomGraph of structures whose neighbour lists are known: atom indices over the whole
    batch, integer shifts of each structure's input cell (as `neighbor_list` gives them). The
    structures are not checked again (they were when their lists were made)."""
    host = batch.device.type == "cpu"  # (training's collate: host arrays)
    fr = frame(batch, lattices(batch.cell.cpu().numpy(), batch.pbc.cpu().numpy()), host)
    return assemble(fr, Edges(center, neighbor, fr.frame_shifts(center, neighbor, shift)), dtype)
