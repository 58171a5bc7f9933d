"""An optional order of the edges: every centre's first edge, then every centre's second, and so
on, centres ascending within each round (`ExecutionOptions(edge_order="interleaved")`).

It was made on the guess that edges grouped by centre, as LAMMPS lists them, make the GPU kernels'
atomic sums onto centres contend. Measured on an H100 (benchmarks/RESULTS.md §6, the model alone
on one input in three orders) the guess was wrong: the graph builder's order and LAMMPS's grouped
order ran at the same speed, and the interleaved order 4-23 % slower (not traced further). So
every engine runs edges as given by default; this order stays for comparison on other cards. It
changes no result beyond floating-point summation order.
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
