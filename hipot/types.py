"""The data types every layer shares: a batch of structures as a graph, a model's prediction,
and the error raised for a structure the model cannot take."""
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


@dataclass
class Prediction:
    """What a potential returns for an AtomGraph."""

    energy: Tensor  # (B,) eV
    energies: Tensor  # (N,) eV per atom
    forces: Tensor | None = None  # (N, 3) eV/A
    stress: Tensor | None = None  # (B, 3, 3) eV/A^3, ASE sign; zeros unless periodic in 3D
