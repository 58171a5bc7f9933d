"""Replaying one energy+forces+stress step as a CUDA graph.

A small structure costs a GPU step far less than the ~1,500 kernel launches of a forward and
backward pass take to issue from Python. Capturing the step once as a CUDA graph and replaying
it removes that overhead. A graph needs fixed shapes, so inputs are padded to size buckets:
padding atoms sit in an extra, ignored structure, and padding edges join the last padding atom
to its own periodic image, so they touch nothing real (no masks are needed).
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from .execution import ExecutionOptions
from .types import AtomGraph, Prediction


def bucket(n: int, minimum: int = 8) -> int:
    """Smallest m * 2^k >= n with m in 8..15 (at most 12.5 % padding)."""
    n = max(n, minimum)
    k = max(0, n.bit_length() - 4)
    m = -(-n // (1 << k))
    return m << k


def pad_graph(graph: AtomGraph, n_atoms: int, n_edges: int, n_graphs: int) -> AtomGraph:
    """The same graph with padding atoms, edges and structures up to the given sizes (which must
    leave room for at least one padding atom and one padding structure)."""
    n, e, b = graph.num_atoms, int(graph.center.numel()), graph.num_graphs
    if n_atoms <= n or n_graphs <= b or n_edges < e:
        raise ValueError("padding sizes too small")
    dev, fdt = graph.positions.device, graph.positions.dtype
    last = n_atoms - 1
    numbers = torch.full((n_atoms,), int(graph.numbers[0]) if n else 1, dtype=graph.numbers.dtype, device=dev)
    numbers[:n] = graph.numbers
    positions = torch.zeros((n_atoms, 3), dtype=fdt, device=dev)
    positions[:n] = graph.positions
    cell = torch.eye(3, dtype=fdt, device=dev).mul(3.0).expand(n_graphs, 3, 3).clone()
    cell[:b] = graph.cell
    pbc = torch.ones((n_graphs, 3), dtype=torch.bool, device=dev)
    pbc[:b] = graph.pbc
    center = torch.full((n_edges,), last, dtype=graph.center.dtype, device=dev)
    center[:e] = graph.center
    neighbor = torch.full((n_edges,), last, dtype=graph.center.dtype, device=dev)
    neighbor[:e] = graph.neighbor
    shift = torch.zeros((n_edges, 3), dtype=graph.cell_shift.dtype, device=dev)
    shift[:, 0] = 1.0  # padding edge: an image 3 A away, inside any sensible cutoff
    shift[:e] = graph.cell_shift
    batch = torch.full((n_atoms,), n_graphs - 1, dtype=graph.batch.dtype, device=dev)
    batch[:n] = graph.batch
    ptr = torch.full((n_graphs + 1,), n_atoms, dtype=graph.ptr.dtype, device=dev)
    ptr[: b + 1] = graph.ptr
    return AtomGraph(numbers, positions, cell, pbc, center, neighbor, shift, batch, ptr)


def unpad(pred: Prediction, n_atoms: int, n_graphs: int) -> Prediction:
    return Prediction(
        energy=pred.energy[:n_graphs], energies=pred.energies[:n_atoms],
        forces=None if pred.forces is None else pred.forces[:n_atoms],
        stress=None if pred.stress is None else pred.stress[:n_graphs],
    )


class _Captured:
    def __init__(self, model, template: AtomGraph, options: ExecutionOptions, pool):
        self.static = template
        self.graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up outside the capture (allocator, kernel selection)
                model(self.static, options)
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(self.graph, pool=pool):
            self.out = model(self.static, options)

    def run(self, padded: AtomGraph) -> Prediction:
        for name in ("numbers", "positions", "cell", "pbc", "center", "neighbor", "cell_shift", "batch", "ptr"):
            getattr(self.static, name).copy_(getattr(padded, name))
        self.graph.replay()
        return self.out


class GraphedStep:
    """Energy, forces and stress of `model` (a ForceStressModel) through captured CUDA graphs, one
    per size bucket and execution options (LRU)."""

    def __init__(self, model, max_graphs: int = 6):
        self.model = model
        self.max_graphs = max_graphs
        self.cache: OrderedDict[tuple, _Captured] = OrderedDict()
        self.pool = torch.cuda.graph_pool_handle()

    def __call__(self, graph: AtomGraph, options: ExecutionOptions) -> Prediction:
        n, b = graph.num_atoms, graph.num_graphs
        sizes = (bucket(n + 1), bucket(graph.num_edges, 64), bucket(b + 1, 2))
        key = (*sizes, options)
        padded = pad_graph(graph, *sizes)
        step = self.cache.get(key)
        if step is None:
            if len(self.cache) >= self.max_graphs:
                self.cache.popitem(last=False)
            step = _Captured(self.model, padded, options, self.pool)
            self.cache[key] = step
        else:
            self.cache.move_to_end(key)
        out = step.run(padded)
        pred = unpad(out, n, b)
        return Prediction(*(None if t is None else t.clone() for t in
                            (pred.energy, pred.energies, pred.forces, pred.stress)))
