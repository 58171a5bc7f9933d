"""Edges in chunks, each chunk's activations recomputed in the backward pass: the one place that
trades time for memory on large graphs."""
from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor
from torch.utils.checkpoint import checkpoint


def sum_over_edge_chunks(fn: Callable[..., tuple[Tensor, ...]], edge_args: Sequence[Tensor],
                         node_args: Sequence[Tensor], chunk: int, recompute: bool) -> tuple[Tensor, ...]:
    """sum over chunks of fn(*edge_args[chunk], *node_args), fn returning per-node sums.

    Without `recompute` this is one call over all edges. With it, edges go in chunks of `chunk`
    and each chunk is checkpointed: only its inputs are kept for the backward pass, which runs
    it again, so the per-edge activations of one chunk at most exist at a time."""
    n_edges = edge_args[0].shape[0]
    if not recompute:
        return fn(*edge_args, *node_args)
    total: tuple[Tensor, ...] | None = None
    for s in range(0, max(n_edges, 1), chunk):
        part = checkpoint(fn, *(t[s : s + chunk] for t in edge_args), *node_args, use_reentrant=False)
        total = part if total is None else tuple(a + b for a, b in zip(total, part))
    return total
