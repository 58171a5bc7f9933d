"""Energy -> forces and stress, exact derivatives of one energy.

Everything the model sees of the geometry is the edge vectors d_e = r_j - r_i + S_e . cell, so
one backward pass to them gives both: with g_e = dE/dd_e,
    F_i = - dE/dr_i = sum_{e: center i} g_e - sum_{e: neighbor i} g_e,
    dE/d(eps) = sum_e sym(d_e (x) g_e)   (positions and cell strained together: d_e -> d_e (1 + eps)),
and the ASE stress is (1/|V|) dE/d(eps), positive when the cell is under tension. |V| is used,
so left-handed cells get the right sign (the official HIENet code divides by the signed volume).
Stress is defined only for structures periodic in all three directions; for the others it is
returned as zeros (never divided by a volume, so never NaN) and the calculator does not report it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .graph import AtomGraph
    from .model import HIENet


@dataclass
class Prediction:
    energy: Tensor  # (B,) eV
    energies: Tensor  # (N,) eV per atom
    forces: Tensor | None = None  # (N, 3) eV/A
    stress: Tensor | None = None  # (B, 3, 3) eV/A^3, ASE sign; zeros unless periodic in 3D


def derivatives(model: "HIENet", graph: "AtomGraph", forces: bool = True, stress: bool = True,
                create_graph: bool = False) -> Prediction:
    edge_vec = graph.edge_vectors()
    need_grad = forces or stress
    if need_grad and not edge_vec.requires_grad:
        edge_vec.requires_grad_(True)
    with torch.set_grad_enabled(need_grad or torch.is_grad_enabled()):
        energies = model.atomic_energies(graph, edge_vec)
        energy = torch.zeros(graph.num_graphs, dtype=energies.dtype, device=energies.device)
        energy = energy.index_add(0, graph.batch, energies)
        out = Prediction(energy=energy, energies=energies)
        if not need_grad:
            return out
        (g,) = torch.autograd.grad(energy.sum(), edge_vec, create_graph=create_graph)
    if forces:
        f = torch.zeros_like(graph.positions, dtype=g.dtype)
        f = f.index_add(0, graph.center, g).index_add(0, graph.neighbor, -g)
        out.forces = f
    if stress:
        dedeps = torch.zeros((graph.num_graphs, 3, 3), dtype=g.dtype, device=g.device)
        dedeps = dedeps.index_add(0, graph.batch[graph.center], edge_vec.unsqueeze(-1) * g.unsqueeze(-2))
        dedeps = 0.5 * (dedeps + dedeps.transpose(-1, -2))
        volume = torch.linalg.det(graph.cell).abs()
        periodic = graph.pbc.all(dim=-1)
        safe_volume = torch.where(periodic, volume, torch.ones_like(volume))
        s = dedeps / safe_volume.view(-1, 1, 1)
        out.stress = torch.where(periodic.view(-1, 1, 1), s, torch.zeros_like(s))
    return out
