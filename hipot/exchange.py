"""Node features across domains: what `HIENet.forward` calls before each message-passing layer
when an input has ghost rows, and the gradient through those calls.

A domain-decomposed run (LAMMPS on several ranks) gives each rank a `PotentialInput` whose ghost
rows are atoms that other ranks own. How rows travel is the caller's (`GhostExchange`); every rank
must make the same calls in the same order, whatever its atoms. Here the features of one
exchange go as one (nodes, width) block: the ghost rows come back and are appended to this
rank's rows, and the result is made a leaf of autograd. The gradient is therefore taken in
stages, top layer first (everything a layer computes flows from its exchange's leaf, see
`hipot.model.FeatureExchange`): each stage ends at an exchange's leaf, whose ghost rows'
gradients are sent back to their owners, and what arrives on this rank's nodes is added to their
gradient before the stage below runs. The result is the gradient of the energy of all ranks with respect
to this rank's edge vectors: forces (ghost rows included, for their owners), virials, exactly.
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import Tensor


class GhostExchange(Protocol):
    """Moves rows of (num_nodes, width) node data between ranks."""

    def ghosts(self, x: Tensor) -> Tensor:
        """(num_nodes, width) rows of this rank's nodes -> (num_ghosts, width) rows of the ghost
        rows, from their owners on other ranks (forward communication)."""
        ...

    def owners(self, g: Tensor) -> Tensor:
        """(num_ghosts, width) gradients of the ghost rows -> (num_nodes, width): the sums of what
        the other ranks' ghost copies of this rank's nodes received (reverse communication)."""
        ...


class ExchangeStages:
    """The hook `HIENet.forward` calls (`hipot.model.FeatureExchange`), recording each exchange
    for `gradient`."""

    def __init__(self, exchange: GhostExchange, num_nodes: int):
        self.exchange, self.num_nodes = exchange, num_nodes
        # per exchange: its input (this rank's rows, in autograd), its output leaf, keys and widths
        self.stages: list[tuple[dict[int, Tensor], Tensor, list[int], list[int]]] = []

    def __call__(self, xs: dict[int, Tensor]) -> dict[int, Tensor]:
        keys = sorted(xs)
        n = self.num_nodes
        widths = [xs[l].shape[1] * xs[l].shape[2] for l in keys]
        flat = torch.cat([xs[l].detach().reshape(n, w) for l, w in zip(keys, widths)], dim=1)
        full = torch.cat([flat, self.exchange.ghosts(flat)]).requires_grad_(True)
        self.stages.append((xs, full, keys, widths))
        rows = full.shape[0]
        return {l: p.reshape(rows, *xs[l].shape[1:]) for l, p in zip(keys, full.split(widths, dim=1))}

    def gradient(self, energy: Tensor, edge_vec: Tensor, marks: Callable[[str], None] | None = None) -> Tensor:
        """dE_total/d(edge_vec) through the recorded exchanges (see the module docstring)."""
        total = torch.zeros_like(edge_vec)
        n = self.num_nodes
        outputs, grad_outputs = [energy], [None]
        for k in range(len(self.stages), -1, -1):
            inputs = [edge_vec] + ([self.stages[k - 1][1]] if k > 0 else [])
            keep = [(o, g) for o, g in zip(outputs, grad_outputs) if o.requires_grad]
            grads = (torch.autograd.grad([o for o, _ in keep], inputs, [g for _, g in keep], retain_graph=k > 0,
                                         allow_unused=True) if keep else [None] * len(inputs))
            if grads[0] is not None:
                total += grads[0]
            if marks is not None:
                marks("backward")
            if k == 0:
                break
            xs, full, keys, widths = self.stages[k - 1]
            g_full = grads[1] if grads[1] is not None else torch.zeros_like(full)
            g_own = g_full[:n] + self.exchange.owners(g_full[n:])
            outputs = [xs[l] for l in keys]
            grad_outputs = [p.reshape(xs[l].shape) for l, p in zip(keys, g_own.split(widths, dim=1))]
        return total
