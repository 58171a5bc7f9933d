"""Batched evaluation of many structures: energies, forces, stress as numpy arrays."""
from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.stress import full_3x3_to_voigt_6_stress

from .derivatives import ForceStressModel, stress_from_virial
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
        """Energy, forces (and stress, virial; with `atom_virials` per-atom virials, see
        `Prediction`) of a graph already on the device, dispersion included."""
        pred = self.runner(graph.potential_input(), forces=True, virial=stress, atom_virials=atom_virials,
                           create_graph=create_graph)
        if stress:
            pred.stress = stress_from_virial(pred.virial, graph)
        if self.dispersion is not None:
            if create_graph:
                raise ValueError(f"{self.dispersion.name} (simple-dftd3) is not differentiable: outputs that stay "
                                 "in the autograd graph need dispersion=None")
            pred = add_prediction(pred, self.dispersion(graph, stress, labels))
        return pred

    def predict_tensors(self, positions: torch.Tensor, numbers: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                        system_idx: torch.Tensor, stress: bool = True, labels: Sequence[str] | None = None,
                        create_graph: bool = False) -> Prediction:
        """Tensors in, tensors out, for engines that keep their state on the device (torch-sim):
        the batch as `graph.build_graph_from_tensors` takes it, checked like any input, evaluated
        in one call. Returns the Prediction on the model's device in its dtype (stress zeros for
        structures not periodic in all three directions). create_graph: the outputs stay in the
        autograd graph, differentiable with respect to the weights and to the `positions` and
        `cell` passed in (which the graph then holds as given, converted to the model's dtype)."""
        graph = build_graph_from_tensors(positions.to(self.device), numbers.to(self.device), cell.to(self.device),
                                         pbc.to(self.device), system_idx.to(self.device), self.model.cutoff,
                                         self.model.species, self.min_distance, labels=labels, dtype=self.dtype,
                                         max_neighbors=self.max_neighbors)
        if create_graph:
            graph = _on_given_geometry(graph, positions.to(self.device, self.dtype), cell.to(self.device, self.dtype))
        return self.step(graph, stress, create_graph, labels)

    def evaluate(self, structures: Sequence[Atoms], batch_size: int = 64, max_atoms: int | None = 4096,
                 stress: bool = True, progress: bool = False, labels: Sequence[str] | None = None
                 ) -> list[dict[str, object]]:
        """One result dict per structure: energy, free_energy, energies, forces and, for structures
        periodic in all three directions, stress (ASE Voigt order, eV/A^3). Errors name a structure
        by its label (default: 'structure K', K its index in `structures`)."""
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
            pred = self.step(graph, stress and bool(periodic.any()), labels=group_labels)
            energy = pred.energy.detach().double().cpu().numpy()
            energies = pred.energies.detach().double().cpu().numpy()
            forces = pred.forces.detach().double().cpu().numpy()
            stresses = pred.stress.detach().double().cpu().numpy() if pred.stress is not None else None
            ptr = np.concatenate([[0], np.cumsum([len(a) for a in batch])])
            for b, k in enumerate(group):
                s = slice(ptr[b], ptr[b + 1])
                res: dict[str, object] = {"energy": float(energy[b]), "free_energy": float(energy[b]),
                                          "energies": energies[s].copy(), "forces": forces[s].copy()}
                if stresses is not None and periodic[b]:
                    res["stress"] = full_3x3_to_voigt_6_stress(stresses[b])
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

