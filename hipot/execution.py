"""How a model runs, as one explicit value: never inferred from module flags or `requires_grad`.

The options change memory, speed and which derivatives are available, never the numbers. They
are passed with every call (`HIENet.forward`, `ForceStressModel.forward`) and are part of the
CUDA-graph cache key, so no setting made for one structure leaks into the next.
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_EDGE_CHUNK = 1 << 19


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
        Without it the weights are frozen for the call (`ForceStressModel`)."""

    keep_radial_hidden: bool = False
    recompute: bool = False
    edge_chunk: int = DEFAULT_EDGE_CHUNK
    create_graph: bool = False

    def __post_init__(self) -> None:
        if self.edge_chunk < 1:
            raise ValueError(f"edge_chunk must be positive, not {self.edge_chunk}")
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
