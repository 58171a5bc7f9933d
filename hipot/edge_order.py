"""The order edges reach the kernels in, the same for every engine.

The GPU kernels sum each edge's message onto its centre with atomic additions (cuEquivariance's
fused gather-product-scatter, `index_add_`), and neighbouring threads work on neighbouring edges.
Edges grouped by centre, as LAMMPS lists them (all of atom i's, then all of i+1's), make dozens
of threads add into the same row at once, and atomic additions to one address run one after the
other; a neighbour list built by atomics on the GPU (vesin) interleaves centres instead. So every
input is put in one order before the model runs: every centre's first edge, then every centre's
second edge, and so on, centres ascending within each round. Consecutive edges then have
different centres, and for atoms numbered along space (LAMMPS sorts them, supercells are built
cell by cell) nearby centres and neighbours, which the caches like. The order changes no result
beyond floating-point summation order.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from .types import PotentialInput


def interleaved_order(center: Tensor, num_nodes: int) -> Tensor:
    """The permutation of the edges described above, computed on their device without a host
    synchronisation (so that it can run inside a captured CUDA graph too)."""
    by_center = torch.argsort(center, stable=True)  # stable: the caller's order within a centre
    grouped = center[by_center]
    first = torch.searchsorted(grouped, grouped)  # position of each centre's first edge
    rank = torch.arange(grouped.numel(), device=center.device) - first  # k-th edge of its centre
    return by_center[torch.argsort(rank * max(num_nodes, 1) + grouped)]


def interleaved(inp: PotentialInput) -> PotentialInput:
    """The same input with its edges in the interleaved order (autograd follows the edge vectors)."""
    if inp.num_edges < 2:
        return inp
    perm = interleaved_order(inp.center, inp.num_nodes)
    return dataclasses.replace(inp, center=inp.center[perm], neighbor=inp.neighbor[perm],
                               edge_vec=torch.index_select(inp.edge_vec, 0, perm))
