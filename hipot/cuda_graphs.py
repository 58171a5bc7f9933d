"""Replaying one energy+forces+virial step as a CUDA graph.

A small structure costs a GPU step far less than the ~1,500 kernel launches of a forward and
backward pass take to issue from Python. Capturing the step once as a CUDA graph and replaying
it removes that overhead. A graph needs fixed shapes, so inputs are padded to a capacity:
padding nodes sit in an extra, ignored structure, and each padding edge joins a padding node to
itself with a fixed vector, so they touch nothing real (no masks are needed). A capture serves
every later input it holds, up to about 1.3 times its size, so that an MD run whose neighbour
count drifts from step to step keeps replaying (at most one more capture when it crosses a size
bucket).
"""
from __future__ import annotations

import dataclasses

import torch

from .derivatives import ForceStressModel
from .edge_order import interleaved
from .execution import ExecutionOptions
from .types import PotentialInput, Prediction

# Padding nodes at least: padding edges are spread over them, so that their sums onto centres do
# not all go to one row.
MIN_PADDING_NODES = 32
REUSE_ABOVE = 1.3  # a capture serves inputs down to 1 / REUSE_ABOVE of its capacity
EDGE_HEADROOM = 1.02  # a new capture has room for 2 % more edges: MD steps that gain a few replay it


def bucket(n: int, minimum: int = 8) -> int:
    """Smallest m * 2^k >= n with m in 8..15 (at most 12.5 % padding)."""
    n = max(n, minimum)
    k = max(0, n.bit_length() - 4)
    m = -(-n // (1 << k))
    return m << k


def capacity(inp: PotentialInput) -> tuple[int, int, int]:
    """(nodes, edges, structures) a new capture for this input is made with."""
    edges = int(inp.num_edges * EDGE_HEADROOM) + 1
    return bucket(inp.num_nodes + MIN_PADDING_NODES), bucket(edges, 64), bucket(inp.num_graphs + 1, 2)


def fits(sizes: tuple[int, int, int], inp: PotentialInput) -> bool:
    """Whether a capture of these (nodes, edges, structures) serves the input: room for it and a
    padding node and structure, and not over REUSE_ABOVE times its size."""
    n, e, b = sizes
    return (inp.num_nodes < n <= REUSE_ABOVE * (inp.num_nodes + MIN_PADDING_NODES) and
            inp.num_edges <= e <= REUSE_ABOVE * max(inp.num_edges, 64) and inp.num_graphs < b)


def pad_input(inp: PotentialInput, n_nodes: int, n_edges: int, n_graphs: int) -> PotentialInput:
    """The same input with padding nodes, edges and structures up to the given sizes (which must
    leave room for at least one padding node and one padding structure; no ghost rows)."""
    n, e, b = inp.num_nodes, inp.num_edges, inp.num_graphs
    if inp.num_ghosts or n_nodes <= n or n_graphs <= b or n_edges < e:
        raise ValueError("padding sizes too small (or ghost rows, which are never padded)")
    dev, index = inp.center.device, inp.center.dtype
    # padding nodes are of the first node's element (no host synchronisation to read it)
    numbers = (inp.numbers[:1] if n else torch.ones(1, dtype=inp.numbers.dtype, device=dev)).repeat(n_nodes)
    numbers[:n] = inp.numbers
    pad_nodes = n + torch.arange(n_edges - e, device=dev, dtype=index) % (n_nodes - n)
    center = torch.cat([inp.center, pad_nodes])
    neighbor = torch.cat([inp.neighbor, pad_nodes])
    edge_vec = torch.zeros((n_edges, 3), dtype=inp.edge_vec.dtype, device=dev)
    edge_vec[:e] = inp.edge_vec
    edge_vec[e:, 0] = 1.0  # padding edge: a 1 A bond of a padding node with itself
    batch = torch.full((n_nodes,), n_graphs - 1, dtype=torch.long, device=dev)
    batch[:n] = inp.structure_of_nodes()
    return PotentialInput(numbers, center, neighbor, edge_vec, n_nodes, batch, n_graphs)


def unpad(pred: Prediction, n_nodes: int, n_graphs: int) -> Prediction:
    """The prediction of the real nodes and structures (copies: the padded outputs are reused)."""
    cut = lambda t, k: None if t is None else t[:k].clone()  # noqa: E731
    return Prediction(energy=cut(pred.energy, n_graphs), energies=cut(pred.energies, n_nodes),
                      forces=cut(pred.forces, n_nodes), stress=cut(pred.stress, n_graphs),
                      virial=cut(pred.virial, n_graphs), atom_virials=cut(pred.atom_virials, n_nodes))


class _Captured:
    def __init__(self, model: ForceStressModel, template: PotentialInput, options: ExecutionOptions,
                 outputs: tuple[bool, bool, bool], pool):
        self.static = template
        self.sizes = (template.num_nodes, template.num_edges, template.num_graphs)
        self.graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up outside the capture (allocator, kernel selection)
                model.predict(self.static, options, *outputs)
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(self.graph, pool=pool):
            self.out = model.predict(self.static, options, *outputs)

    def run(self, padded: PotentialInput) -> Prediction:
        for name in ("numbers", "center", "neighbor", "edge_vec", "batch"):
            getattr(self.static, name).copy_(getattr(padded, name))
        self.graph.replay()
        return self.out


class GraphedPotential:
    """`ForceStressModel.predict` of inputs without ghost rows through captured CUDA graphs: per
    execution options, outputs and dtype, the smallest capture the input fits, else a new one (at
    most `max_graphs` kept, least recently used dropped)."""

    def __init__(self, model: ForceStressModel, max_graphs: int = 6):
        self.model = model
        self.max_graphs = max_graphs
        self.captures: list[tuple[tuple, _Captured]] = []  # most recently used last
        self.pool = torch.cuda.graph_pool_handle()

    def __call__(self, inp: PotentialInput, options: ExecutionOptions, forces: bool = True, virial: bool = True,
                 atom_virials: bool = False) -> Prediction:
        # edges ordered here (if asked), once, outside the graph: the capture runs them as given
        if options.edge_order == "interleaved":
            inp = interleaved(inp)
        options = dataclasses.replace(options, edge_order="given")
        outputs = (forces, virial, atom_virials)
        key = (options, outputs, inp.edge_vec.dtype, inp.numbers.dtype, inp.center.dtype)
        fitting = [(k, c) for k, c in self.captures if k == key and fits(c.sizes, inp)]
        if fitting:
            entry = min(fitting, key=lambda kc: kc[1].sizes[1])
            self.captures.remove(entry)
        else:
            if len(self.captures) >= self.max_graphs:
                self.captures.pop(0)
            entry = (key, _Captured(self.model, pad_input(inp, *capacity(inp)), options, outputs, self.pool))
        self.captures.append(entry)
        step = entry[1]
        out = step.run(pad_input(inp, *step.sizes))
        return unpad(out, inp.num_nodes, inp.num_graphs)

