"""Energy -> forces, virials and stress, exact derivatives of one energy.

Everything the energy model sees of the geometry is the edge vectors d_e = r_j - r_i + S_e . cell,
so one backward pass to them gives all of it: with g_e = dE/dd_e,
    F_i = - dE/dr_i = sum_{e: center i} g_e - sum_{e: neighbor i} g_e,
    dE/d(eps) = sum_e sym(d_e (x) g_e)   (positions and cell strained together: d_e -> d_e (1 + eps)),
the virial is W = -dE/d(eps) (LAMMPS's, sum_i r_i F_i for a pair potential), split over atoms
with half of each edge's share on each end, and the ASE stress is -W / |V|, positive when the cell
is under tension (per atom likewise: ASE's `stresses`, -W_i / |V|, summing to the stress). |V| is
used, so left-handed cells get the right sign (the official HIENet code divides by the signed
volume). Stress is defined only for structures periodic in all three directions; for the others
it is returned as zeros (never divided by a volume, so never NaN) and the calculator does not
report it.

The input is `hipot.types.PotentialInput`, whatever built it (the graph builder, torch-sim, LAMMPS).
Outputs come in the dtype of the given edge vectors: a float32 model given float64 vectors (LAMMPS)
sums forces, energies and virials in float64. With ghost rows (LAMMPS on several ranks) the
gradient is taken through the exchanges in stages (`hipot.exchange`).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from .edge_order import interleaved
from .exchange import ExchangeStages, GhostExchange
from .execution import ExecutionOptions
from .types import AtomGraph, PotentialInput, Prediction

Marks = Callable[[str], None]  # called with 'forward' and 'backward' as those parts end (timing)


def forces_from_edge_gradient(g: Tensor, center: Tensor, neighbor: Tensor, num_atoms: int) -> Tensor:
    """F_i from g_e = dE/dd_e: + g on each edge's center, - g on its neighbour."""
    f = torch.zeros((num_atoms, 3), dtype=g.dtype, device=g.device)
    return f.index_add(0, center, g).index_add(0, neighbor, -g)


def edge_virials(edge_vec: Tensor, g: Tensor) -> Tensor:
    """(E, 3, 3) symmetrised d_e (x) g_e, whose sum over a structure's edges is dE/d(eps)."""
    outer = edge_vec.unsqueeze(-1) * g.unsqueeze(-2)
    return 0.5 * (outer + outer.transpose(-1, -2))


def stress_from_virial(virial: Tensor, graph: AtomGraph, structure: Tensor | None = None) -> Tensor:
    """ASE stress in eV/A^3 (-W / |V|) of virials per structure (B, 3, 3), or of per-atom virials
    (N, 3, 3) given each one's `structure` (graph.batch); zeros for structures not periodic in all
    three directions."""
    volume = torch.linalg.det(graph.cell).abs().to(virial.dtype)
    periodic = graph.periodic
    if structure is not None:
        volume, periodic = volume[structure], periodic[structure]
    safe_volume = torch.where(periodic, volume, torch.ones_like(volume))
    s = -virial / safe_volume.view(-1, 1, 1)
    return torch.where(periodic.view(-1, 1, 1), s, torch.zeros_like(s))


def with_stresses(pred: Prediction, graph: AtomGraph) -> Prediction:
    """`pred` with its stress and per-atom stresses from the virials it has (ASE sign, eV/A^3)."""
    if pred.virial is not None:
        pred.stress = stress_from_virial(pred.virial, graph)
    if pred.atom_virials is not None:
        pred.atom_stresses = stress_from_virial(pred.atom_virials, graph, graph.batch)
    return pred


class ForceStressModel(nn.Module):
    """Energy, per-atom energies, forces, virials and stress of an energy model (NequIP's
    ForceStressOutput).

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
                stress: bool = True, atom_virials: bool = False) -> Prediction:
        """A graph's prediction: `predict` on its edges, and the stress (per-atom stresses) from
        the virial (per-atom virials)."""
        return with_stresses(self.predict(graph.potential_input(), options, forces, stress, atom_virials), graph)

    def predict(self, inp: PotentialInput, options: ExecutionOptions = ExecutionOptions(), forces: bool = True,
                virial: bool = True, atom_virials: bool = False, exchange: GhostExchange | None = None,
                marks: Marks | None = None) -> Prediction:
        """Energy per structure, per-node energies and, as asked, forces (nodes and ghost rows),
        the virial per structure and per-atom virials (`Prediction` states the signs). `exchange`
        supplies the ghost rows (required when the input has any)."""
        if options.create_graph:
            return self._predict(inp, options, forces, virial, atom_virials, exchange, marks)
        with frozen_weights(self.energy_model):
            return self._predict(inp, options, forces, virial, atom_virials, exchange, marks)

    def _predict(self, inp: PotentialInput, options: ExecutionOptions, forces: bool, virial: bool,
                 atom_virials: bool, exchange: GhostExchange | None, marks: Marks | None) -> Prediction:
        if options.edge_order == "interleaved":
            inp = interleaved(inp)
        edge_vec = inp.edge_vec
        need_grad = forces or virial or atom_virials
        if need_grad and not edge_vec.requires_grad:
            edge_vec = edge_vec.detach().requires_grad_(True)
        stages = ExchangeStages(exchange, inp.num_nodes) if exchange is not None else None
        dtype = edge_vec.dtype
        with torch.set_grad_enabled(need_grad or torch.is_grad_enabled()):
            energies = self.energy_model(inp.numbers, inp.center, inp.neighbor, edge_vec, inp.num_nodes, options,
                                         stages)
            kept = energies if options.create_graph else energies.detach()  # outputs hold no autograd graph
            energy = torch.zeros(inp.num_graphs, dtype=dtype, device=energies.device)
            energy = energy.index_add(0, inp.structure_of_nodes(), kept.to(dtype))
            out = Prediction(energy=energy, energies=kept.to(dtype))
            if marks is not None:
                marks("forward")
            if not need_grad:
                return out
            if stages is not None:
                g = stages.gradient(energies.sum(), edge_vec, marks)
            else:
                (g,) = torch.autograd.grad(energies.sum(), edge_vec, create_graph=options.create_graph)
                if marks is not None:
                    marks("backward")
        rows = inp.numbers.shape[0]
        if forces:
            out.forces = forces_from_edge_gradient(g, inp.center, inp.neighbor, rows)
        if virial or atom_virials:
            w = -edge_virials(edge_vec if options.create_graph else edge_vec.detach(), g)
            if virial:
                total = torch.zeros((inp.num_graphs, 3, 3), dtype=dtype, device=w.device)
                out.virial = total.index_add(0, inp.structure_of_nodes()[inp.center], w)
            if atom_virials:
                half = 0.5 * w
                per_atom = torch.zeros((rows, 3, 3), dtype=dtype, device=w.device).index_add(0, inp.center, half)
                out.atom_virials = per_atom.index_add(0, inp.neighbor, half)
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
