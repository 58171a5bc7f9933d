"""Energy -> forces and stress, exact derivatives of one energy.

Everything the energy model sees of the geometry is the edge vectors d_e = r_j - r_i + S_e . cell,
so one backward pass to them gives both: with g_e = dE/dd_e,
    F_i = - dE/dr_i = sum_{e: center i} g_e - sum_{e: neighbor i} g_e,
    dE/d(eps) = sum_e sym(d_e (x) g_e)   (positions and cell strained together: d_e -> d_e (1 + eps)),
and the ASE stress is (1/|V|) dE/d(eps), positive when the cell is under tension. |V| is used,
so left-handed cells get the right sign (the official HIENet code divides by the signed volume).
Stress is defined only for structures periodic in all three directions; for the others it is
returned as zeros (never divided by a volume, so never NaN) and the calculator does not report it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from .execution import ExecutionOptions
from .types import AtomGraph, Prediction

EnergyModel = Callable[..., Tensor]  # (graph, edge_vec, options) -> per-atom energies (N,)


def forces_from_edge_gradient(g: Tensor, center: Tensor, neighbor: Tensor, num_atoms: int) -> Tensor:
    """F_i from g_e = dE/dd_e: + g on each edge's center, - g on its neighbour."""
    f = torch.zeros((num_atoms, 3), dtype=g.dtype, device=g.device)
    return f.index_add(0, center, g).index_add(0, neighbor, -g)


def edge_virials(edge_vec: Tensor, g: Tensor) -> Tensor:
    """(E, 3, 3) symmetrised d_e (x) g_e, whose sum over a structure's edges is dE/d(eps)."""
    outer = edge_vec.unsqueeze(-1) * g.unsqueeze(-2)
    return 0.5 * (outer + outer.transpose(-1, -2))


def stress_from_edge_gradient(edge_vec: Tensor, g: Tensor, graph: AtomGraph) -> Tensor:
    """(B, 3, 3) ASE stress in eV/A^3; zeros for structures not periodic in all three directions."""
    dedeps = torch.zeros((graph.num_graphs, 3, 3), dtype=g.dtype, device=g.device)
    dedeps = dedeps.index_add(0, graph.batch[graph.center], edge_virials(edge_vec, g))
    volume = torch.linalg.det(graph.cell).abs()
    periodic = graph.periodic
    safe_volume = torch.where(periodic, volume, torch.ones_like(volume))
    s = dedeps / safe_volume.view(-1, 1, 1)
    return torch.where(periodic.view(-1, 1, 1), s, torch.zeros_like(s))


class ForceStressModel(nn.Module):
    """Energy, per-atom energies, forces and stress of an energy model (NequIP's ForceStressOutput).

    Unless `options.create_graph`, the weights' requires_grad is off for the duration of the call
    (energy and its backward pass, so that recomputed chunks see the same), and autograd keeps
    only what the derivatives with respect to the geometry need: several times less memory per
    edge than a pass that could also give weight gradients.
    """

    def __init__(self, energy_model: nn.Module):
        super().__init__()
        self.energy_model = energy_model

    @property
    def cutoff(self) -> float:
        return self.energy_model.cutoff

    @property
    def species(self) -> list[int]:
        return self.energy_model.species

    def forward(self, graph: AtomGraph, options: ExecutionOptions = ExecutionOptions(), forces: bool = True,
                stress: bool = True) -> Prediction:
        if options.create_graph:
            return self._predict(graph, options, forces, stress)
        with frozen_weights(self.energy_model):
            return self._predict(graph, options, forces, stress)

    def _predict(self, graph: AtomGraph, options: ExecutionOptions, forces: bool, stress: bool) -> Prediction:
        edge_vec = graph.edge_vectors()
        need_grad = forces or stress
        if need_grad and not edge_vec.requires_grad:
            edge_vec.requires_grad_(True)
        with torch.set_grad_enabled(need_grad or torch.is_grad_enabled()):
            energies = self.energy_model(graph, edge_vec, options)
            energy = torch.zeros(graph.num_graphs, dtype=energies.dtype, device=energies.device)
            energy = energy.index_add(0, graph.batch, energies)
            out = Prediction(energy=energy, energies=energies)
            if not need_grad:
                return out
            (g,) = torch.autograd.grad(energy.sum(), edge_vec, create_graph=options.create_graph)
        if forces:
            out.forces = forces_from_edge_gradient(g, graph.center, graph.neighbor, graph.num_atoms)
        if stress:
            out.stress = stress_from_edge_gradient(edge_vec, g, graph)
        return out


@contextmanager
def frozen_weights(model: nn.Module) -> Iterator[None]:
    """requires_grad off for the model's trainable weights within the block, restored afterwards."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
