"""The data types every layer shares: a batch of structures as a graph, the narrow input every
potential reads (`PotentialInput`), a model's prediction, and the error raised for a structure
the model cannot take."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


class StructureError(ValueError):
    """A structure the model cannot evaluate; the message says which one and why."""


@dataclass
class AtomGraph:
    """One or many structures as a single graph. Edge k goes from `neighbor[k]` to `center[k]`,
    with displacement r[neighbor] - r[center] + cell_shift @ cell."""

    numbers: Tensor  # (N,) atomic numbers
    positions: Tensor  # (N, 3)
    cell: Tensor  # (B, 3, 3), rows are lattice vectors
    pbc: Tensor  # (B, 3) bool
    center: Tensor  # (E,)
    neighbor: Tensor  # (E,)
    cell_shift: Tensor  # (E, 3) integer-valued, same dtype as positions
    batch: Tensor  # (N,) structure index of each atom
    ptr: Tensor  # (B + 1,) atom offsets

    @property
    def num_graphs(self) -> int:
        return self.cell.shape[0]

    @property
    def num_atoms(self) -> int:
        return self.numbers.shape[0]

    @property
    def num_edges(self) -> int:
        return self.center.shape[0]

    @property
    def periodic(self) -> Tensor:
        """(B,) bool: periodic in all three directions, the structures that have a stress."""
        return self.pbc.all(dim=-1)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "AtomGraph":
        out = {}
        for f in fields(self):
            t = getattr(self, f.name)
            if t.is_floating_point():
                t = t.to(device=device, dtype=dtype)
            else:
                t = t.to(device=device)
            out[f.name] = t
        return AtomGraph(**out)

    def edge_vectors(self) -> Tensor:
        shift = torch.einsum("ei,eij->ej", self.cell_shift, self.cell[self.batch[self.center]])
        pos = self.positions
        return torch.index_select(pos, 0, self.neighbor) - torch.index_select(pos, 0, self.center) + shift

    def potential_input(self, edge_vec: Tensor | None = None) -> "PotentialInput":
        """What a potential reads of this graph: its topology and edge vectors (default:
        `edge_vectors()`; pass them to keep an autograd graph to positions and cell)."""
        return PotentialInput(self.numbers, self.center, self.neighbor,
                              self.edge_vectors() if edge_vec is None else edge_vec,
                              self.num_atoms, self.batch, self.num_graphs)


@dataclass
class PotentialInput:
    """All a potential reads of structures, whichever engine built them (graph builder, torch-sim,
    LAMMPS): the one seam between engines and `hipot.derivatives.ForceStressModel`.

    Nodes 0 .. num_nodes-1 are the atoms whose energies are computed: every edge's centre is one.
    Nodes from num_nodes on (`num_ghosts` of them, LAMMPS on several ranks only) are ghost rows:
    atoms of other domains whose node features an exchange supplies before every gather (see
    `hipot.exchange`). An atom's periodic images are not nodes: an edge to an image is an edge to
    the atom itself, with the image's vector. Edge k goes from `neighbor[k]` to `center[k]`."""

    numbers: Tensor  # (num_nodes + num_ghosts,) atomic numbers
    center: Tensor  # (E,) in [0, num_nodes)
    neighbor: Tensor  # (E,) in [0, num_nodes + num_ghosts)
    edge_vec: Tensor  # (E, 3) r[neighbor] - r[center] (+ the image's shift), any float dtype
    num_nodes: int
    batch: Tensor | None = None  # (num_nodes,) structure of each node; None: one structure
    num_graphs: int = 1

    @property
    def num_ghosts(self) -> int:
        return self.numbers.shape[0] - self.num_nodes

    @property
    def num_edges(self) -> int:
        return self.center.shape[0]

    def structure_of_nodes(self) -> Tensor:
        """(num_nodes,) structure index of each node."""
        if self.batch is not None:
            return self.batch
        return torch.zeros(self.num_nodes, dtype=torch.long, device=self.center.device)


@dataclass
class Prediction:
    """What a potential returns.

    Sign conventions (W = virial, the one LAMMPS reports, sum_i r_i F_i for a pair potential):
    virial = -dE/d(strain), so ASE's stress is -virial / |V| (positive under tension), and
    `atom_virials` splits it over the atoms, half of each edge's share on each of its two ends:
    atom_virials[i] = -1/2 sum over edges e touching i of sym(d_e (x) dE/dd_e), summing to
    `virial` over each structure's atoms. ASE's per-atom stresses (`get_stresses()`, summing to
    the stress) are -atom_virials / |V|: `atom_stresses`, which `Evaluator.step` fills with the
    per-atom virials (zeros for structures not periodic in all three directions, as `stress`)."""

    energy: Tensor  # (B,) eV
    energies: Tensor  # (N,) eV per atom
    forces: Tensor | None = None  # (N, 3) eV/A (N + ghost rows for a PotentialInput with ghosts)
    stress: Tensor | None = None  # (B, 3, 3) eV/A^3, ASE sign; zeros unless periodic in 3D
    virial: Tensor | None = None  # (B, 3, 3) eV, -dE/d(strain); defined for any structure
    atom_virials: Tensor | None = None  # (N, 3, 3) eV, summing to `virial` (N + ghost rows as forces)
    atom_stresses: Tensor | None = None  # (N, 3, 3) eV/A^3, ASE sign, summing to `stress`; zeros as `stress`
