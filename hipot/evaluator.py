"""Batched evaluation of many structures: energies, forces, stress and, on request, per-atom
stresses and virials as numpy arrays.

Per-atom conventions (`evaluate(stresses=True, virials=True)`), both split from the one virial
W = -dE/d(strain) with half of each edge's share on each of its two atoms (`hipot.derivatives`):
"stresses" (N, 6) are ASE's `get_stresses()`: eV/A^3, ASE sign and Voigt order, -W_i / |V|,
summing to "stress" (structures periodic in all three directions only, as the stress);
"virials" (N, 6) are LAMMPS's per-atom virials in eV (its sign, ASE's Voigt order xx yy zz yz xz
xy), summing to -stress * |V| for a crystal and to sum_i r_i (x) F_i (symmetrised) for a
molecule: every structure has them. DFT-D3 gives neither (simple-dftd3 has no per-atom virials):
with dispersion on, asking for them is a ValueError, never per-atom values that miss D3's share.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.stress import full_3x3_to_voigt_6_stress

from .derivatives import ForceStressModel, with_stresses
from .dispersion import add as add_prediction, make_dispersion, model_label
from .execution import GRAPH_MAX_ATOMS, ExecutionOptions, ExecutionPolicy
from .graph import build_graph, build_graph_from_tensors
from .structures import MAX_NEIGHBORS
from .model import HIENet
from .potential import Potential
from .pretrained import load_model
from .types import AtomGraph, Prediction


def _batches(structures: Sequence[Atoms], batch_size: int, max_atoms: int | None) -> Iterator[list[int]]:
    """Consecutive index groups of at most batch_size structures and (unless one alone is larger) max_atoms atoms."""
    group: list[int] = []
    atoms = 0
    for k, a in enumerate(structures):
        n = len(a)
        if group and (len(group) >= batch_size or (max_atoms is not None and atoms + n > max_atoms)):
            yield group
            group, atoms = [], 0
        group.append(k)
        atoms += n
    if group:
        yield group


class Evaluator:
    """Holds a model on a device and evaluates lists of ase.Atoms in batches."""

    def __init__(self, model: str | HIENet = "hienet-v3", device: str | torch.device = "auto",
                 dtype: str | torch.dtype = "float32", min_distance: float = 0.1, backend: str = "auto",
                 cuda_graphs: bool | None = None, graph_max_atoms: int = GRAPH_MAX_ATOMS,
                 recompute_edges: int | None = None,
                 dispersion: str | None = None, max_neighbors: float = MAX_NEIGHBORS):
        # An additive term evaluated on the same graph (dispersion.py): every path through step() has it.
        self.dispersion = make_dispersion(dispersion)
        self.model = load_model(model, device=device, dtype=dtype, backend=backend)
        self.name = model_label(str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__,
                                dispersion)
        self.potential = ForceStressModel(self.model)
        self.device = next(self.model.parameters()).device
        self.dtype = next(self.model.parameters()).dtype
        self.min_distance = min_distance
        self.max_neighbors = max_neighbors  # the graph builder's bound on neighbours per atom (StructureError above)
        # how graphs run on this device (recompute threshold, CUDA-graph replay of small steps):
        # the policy every engine shares (hipot.execution)
        self.runner = Potential(self.potential, ExecutionPolicy.for_device(
            self.device.type, cuda_graphs, graph_max_atoms, recompute_edges))

    @property
    def policy(self) -> ExecutionPolicy:
        return self.runner.policy

    def options(self, graph: AtomGraph, create_graph: bool = False) -> ExecutionOptions:
        """How this graph is evaluated: first derivatives only, large graphs recomputing their
        per-edge activations in the backward pass; with create_graph, outputs that stay in the
        autograd graph (differentiable simulation)."""
        return self.policy.options(graph.num_edges, create_graph)

    def step(self, graph: AtomGraph, stress: bool = True, create_graph: bool = False,
             labels: Sequence[str] | None = None, atom_virials: bool = False) -> Prediction:
        """Energy, forces (and stress, virial; with `atom_virials` per-atom virials and
        stresses, see `Prediction`) of a graph already on the device, dispersion included."""
        if atom_virials:
            self._check_per_atom_virials()
        pred = with_stresses(self.runner(graph.potential_input(), forces=True, virial=stress,
                                         atom_virials=atom_virials, create_graph=create_graph), graph)
        if self.dispersion is not None:
            if create_graph:
                raise ValueError(f"{self.dispersion.name} (simple-dftd3) is not differentiable: outputs that stay "
                                 "in the autograd graph need dispersion=None")
            pred = add_prediction(pred, self.dispersion(graph, stress, labels))
        return pred

    def _check_per_atom_virials(self) -> None:
        """Per-atom virials and stresses exist only without dispersion: simple-dftd3 gives none, and
        per-atom values without D3's share would not sum to the total."""
        if self.dispersion is not None:
            raise ValueError(f"{self.dispersion.name} (simple-dftd3) gives no per-atom virials: per-atom "
                             "stresses and virials need dispersion=None")

    def predict_tensors(self, positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                        system_idx: torch.Tensor, stress: bool = True, labels: Sequence[str] | None = None,
                        create_graph: bool = False, atom_virials: bool = False) -> Prediction:
        """Tensors in, tensors out, for engines that keep their state on the device (torch-sim):
        the batch as `graph.build_graph_from_tensors` takes it, checked like any input, evaluated
        in one call. Returns the Prediction on the model's device in its dtype (stress zeros for
        structures not periodic in all three directions). create_graph: the outputs stay in the
        autograd graph, differentiable with respect to the weights and to the `positions` and
        `cell` passed in (which the graph then holds as given, converted to the model's dtype).
        atom_virials: also per-atom virials and stresses (`Prediction`)."""
        graph = build_graph_from_tensors(positions.to(self.device), numbers.to(self.device), cell.to(self.device),
                                         pbc.to(self.device), system_idx.to(self.device), self.model.cutoff,
                                         self.model.species, self.min_distance, labels=labels, dtype=self.dtype,
                                         max_neighbors=self.max_neighbors)
        if create_graph:
            graph = _on_given_geometry(graph, positions.to(self.device, self.dtype), cell.to(self.device, self.dtype))
        return self.step(graph, stress, create_graph, labels, atom_virials)

    def evaluate(self, structures: Sequence[Atoms], batch_size: int = 64, max_atoms: int | None = 4096,
                 stress: bool = True, progress: bool = False, labels: Sequence[str] | None = None,
                 stresses: bool = False, virials: bool = False) -> list[dict[str, object]]:
        """One result dict per structure: energy, free_energy, energies, forces and, for structures
        periodic in all three directions, stress (ASE Voigt order, eV/A^3). Errors name a structure
        by its label (default: 'structure K', K its index in `structures`).
        stresses: also "stresses" (N, 6), per-atom stresses summing to the stress (ASE's
        `get_stresses()`; structures periodic in 3D only). virials: also "virials" (N, 6), per-atom
        virials in eV (LAMMPS's sign), every structure. Both off by default; the module docstring
        states their conventions; neither with dispersion on (a ValueError)."""
        if stresses or virials:
            self._check_per_atom_virials()  # before any work
        structures = list(structures)
        names = list(labels) if labels is not None else [f"structure {k}" for k in range(len(structures))]
        results: list[dict[str, object]] = [{} for _ in structures]
        groups = list(_batches(structures, batch_size, max_atoms))
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(structures), unit="structure", desc="predict")
        for group in groups:
            batch = [structures[k] for k in group]
            group_labels = [names[k] for k in group]
            graph = build_graph(batch, self.model.cutoff, self.model.species, self.min_distance,
                                labels=group_labels, device=self.device, dtype=self.dtype,
                                max_neighbors=self.max_neighbors)
            # which results have a stress (as AtomGraph.periodic), and the atom offsets: from the
            # host's structures, no device sync
            periodic = np.array([bool(np.all(a.pbc)) for a in batch])
            want_stresses = stresses and bool(periodic.any())
            pred = self.step(graph, stress and bool(periodic.any()), labels=group_labels,
                             atom_virials=want_stresses or virials)
            energy, energies, forces = (_numpy(t) for t in (pred.energy, pred.energies, pred.forces))
            stress_b = _numpy(pred.stress) if pred.stress is not None else None
            stress_i = full_3x3_to_voigt_6_stress(_numpy(pred.atom_stresses)) if want_stresses else None
            virial_i = full_3x3_to_voigt_6_stress(_numpy(pred.atom_virials)) if virials else None
            ptr = np.concatenate([[0], np.cumsum([len(a) for a in batch])])
            for b, k in enumerate(group):
                s = slice(ptr[b], ptr[b + 1])
                res: dict[str, object] = {"energy": float(energy[b]), "free_energy": float(energy[b]),
                                          "energies": energies[s].copy(), "forces": forces[s].copy()}
                if stress_b is not None and periodic[b]:
                    res["stress"] = full_3x3_to_voigt_6_stress(stress_b[b])
                if stress_i is not None and periodic[b]:
                    res["stresses"] = stress_i[s].copy()
                if virial_i is not None:
                    res["virials"] = virial_i[s].copy()
                results[k] = res
            if bar is not None:
                bar.update(len(group))
        if bar is not None:
            bar.close()
        return results


def predict(structures: Iterable[Atoms], model: str | HIENet = "hienet-v3", device: str | torch.device = "auto",
            dtype: str | torch.dtype = "float32", batch_size: int = 64, max_atoms: int | None = 4096,
            progress: bool = False, backend: str = "auto", cuda_graphs: bool | None = None) -> list[dict[str, object]]:
    """Evaluate many structures in batches; returns the calculator's results, one dict per structure."""
    evaluator = Evaluator(model, device, dtype, backend=backend, cuda_graphs=cuda_graphs)
    return evaluator.evaluate(list(structures), batch_size, max_atoms, progress=progress)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def _on_given_geometry(graph: AtomGraph, positions: torch.Tensor, cell: torch.Tensor) -> AtomGraph:
    """The same edges expressed on the caller's positions and cell (B, 3, 3), so that autograd
    reaches them: the builder works on coordinates relative to each structure and on a reduced
    cell, and an edge's vector there equals r_j - r_i + S @ cell here for an integer shift S,
    recovered in float64 on the periodic directions."""
    if cell.dim() == 2:
        cell = cell.unsqueeze(0)
    with torch.no_grad():
        c64 = cell.detach().double() * graph.pbc.unsqueeze(-1)  # non-periodic rows take no shift
        p64 = positions.detach().double()
        rest = graph.edge_vectors().double() - (p64[graph.neighbor] - p64[graph.center])
        inv = torch.linalg.pinv(c64)[graph.batch[graph.center]]  # (E, 3, 3)
        shift = torch.einsum("ei,eij->ej", rest, inv).round()
        back = torch.einsum("ei,eij->ej", shift, c64[graph.batch[graph.center]])
        if rest.numel() and float((back - rest).abs().max()) > 1e-6 * (1.0 + float(rest.abs().max())):
            raise RuntimeError("edges could not be expressed on the given cell (internal error)")
    return dataclasses.replace(graph, positions=positions, cell=cell, cell_shift=shift.to(positions.dtype))

