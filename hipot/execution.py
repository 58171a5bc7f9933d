"""How a model runs, as one explicit value: never inferred from module flags or `requires_grad`.

The options change memory, speed and which derivatives are available, never the numbers. They
are passed with every call (`HIENet.forward`, `ForceStressModel.forward`) and are part of the
CUDA-graph cache key, so no setting made for one structure leaks into the next. The policy
(`ExecutionPolicy`) chooses them from a graph's size, the same way for every engine: the
evaluator (ASE, `hipot md`, torch-sim) and LAMMPS.
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_EDGE_CHUNK = 1 << 19
# Above this many edges, per-edge activations are recomputed in the backward pass instead of
# kept: on a GPU the cuEquivariance kernels keep little per edge anyway; on a CPU, from about a
# 500-atom cell on, where they would take gigabytes.
RECOMPUTE_EDGES = {"cuda": 200_000, "cpu": 20_000}
# Up to this many atoms a GPU step is launch-bound: replay it as a captured CUDA graph.
GRAPH_MAX_ATOMS = 4096
EDGE_ORDERS = ("given", "interleaved")


@dataclass(frozen=True)
class ExecutionOptions:
    """keep_radial_hidden: the equivariant convolutions save the radial MLP's last hidden layer
        (64 numbers per edge) for the backward pass and recompute the per-edge tensor-product
        weights (thousands per edge) there. First derivatives only: for inference.
    recompute: per-edge activations are recomputed in the backward pass instead of stored, in
        chunks of `edge_chunk` edges (large cells; about a fifth more time, several times less memory).
    edge_chunk: edges per chunk wherever edges are processed in chunks.
    create_graph: outputs differentiable with respect to the weights, forces and stress keeping
        their autograd graph so that a loss on them can be differentiated again (training).
        Without it the weights are frozen for the call (`ForceStressModel`).
    edge_order: 'given' (the caller's: the graph builder's, or LAMMPS's edges grouped by centre) or
        'interleaved' (`hipot.edge_order`: consecutive edges have different centres). 'given' is
        the default because it measured fastest on an H100 (benchmarks/RESULTS.md §6)."""

    keep_radial_hidden: bool = False
    recompute: bool = False
    edge_chunk: int = DEFAULT_EDGE_CHUNK
    create_graph: bool = False
    edge_order: str = "given"

    def __post_init__(self) -> None:
        if self.edge_chunk < 1:
            raise ValueError(f"edge_chunk must be positive, not {self.edge_chunk}")
        if self.edge_order not in EDGE_ORDERS:
            raise ValueError(f"edge_order must be one of {EDGE_ORDERS}, not {self.edge_order!r}")
        if self.keep_radial_hidden and self.create_graph:
            raise ValueError("keep_radial_hidden gives first derivatives only; training (create_graph) "
                             "needs the ordinary convolution")

    @classmethod
    def inference(cls, recompute: bool = False, edge_chunk: int = DEFAULT_EDGE_CHUNK) -> "ExecutionOptions":
        """Energy, forces and stress of a model whose weights are not being trained."""
        return cls(keep_radial_hidden=True, recompute=recompute, edge_chunk=edge_chunk)

    @classmethod
    def training(cls, recompute: bool = False) -> "ExecutionOptions":
        """Forces and stress that a loss can be differentiated through."""
        return cls(recompute=recompute, create_graph=True)


@dataclass(frozen=True)
class ExecutionPolicy:
    """How graphs of a given size run on one device, whoever calls: the recompute threshold, the
    edge chunk and when a step replays as a CUDA graph (`hipot.potential.Potential` applies it)."""

    recompute_edges: int
    cuda_graphs: bool = False
    graph_max_atoms: int = GRAPH_MAX_ATOMS
    edge_chunk: int = DEFAULT_EDGE_CHUNK

    @classmethod
    def for_device(cls, device_type: str, cuda_graphs: bool | None = None, graph_max_atoms: int = GRAPH_MAX_ATOMS,
                   recompute_edges: int | None = None) -> "ExecutionPolicy":
        """The defaults of a 'cuda' or 'cpu' device; CUDA graphs only on 'cuda' (default on)."""
        gpu = device_type == "cuda"
        return cls(recompute_edges=RECOMPUTE_EDGES["cuda" if gpu else "cpu"] if recompute_edges is None
                   else recompute_edges,
                   cuda_graphs=gpu and (cuda_graphs is None or cuda_graphs), graph_max_atoms=graph_max_atoms)

    def options(self, num_edges: int, create_graph: bool = False) -> ExecutionOptions:
        """First derivatives only (or, with create_graph, outputs that stay in the autograd graph),
        recomputing per-edge activations above `recompute_edges`."""
        recompute = num_edges > self.recompute_edges
        if create_graph:
            return ExecutionOptions(recompute=recompute, create_graph=True, edge_chunk=self.edge_chunk)
        return ExecutionOptions.inference(recompute=recompute, edge_chunk=self.edge_chunk)

    def replays(self, num_atoms: int, create_graph: bool = False) -> bool:
        """Whether a step of this many atoms (and no exchange) replays as a CUDA graph."""
        return self.cuda_graphs and not create_graph and num_atoms <= self.graph_max_atoms
