"""hipot as a torch-sim model: batched relaxations, MD and property workflows of many systems.

Data path: a torch-sim `SimState` (tensors on the device) -> `Evaluator.predict_tensors` (the
same graph builder, input checks, model, derivatives and dispersion as the ASE calculator, for
the whole batch in one call) -> torch-sim's output dict. Needs `pip install 'hipot[torchsim]'`
(torch-sim-atomistic >= 0.6, which needs Python >= 3.12).

Stress convention: torch-sim's, which is ASE's sign (positive = tensile) as a (B, 3, 3) tensor.
A torch-sim state has one pbc for all its systems. For systems not periodic in all three
directions (molecules, slabs) hipot defines no stress, as `HIPotCalculator.get_stress()`, which
raises there; torch-sim needs a tensor whenever `compute_stress` is on (its runners and cell
filters read it), so those systems get zeros: no force on a cell that has no physical meaning.
To compare with the calculator on such states, turn `compute_stress` off, as the calculator does.
Per-atom stresses (`per_atom_stresses`, torch-sim's switch, as its pair models and its heat-flux
correlation use it): "stresses" (N, 3, 3), torch-sim's convention, the same as ASE's: eV/A^3,
positive = tensile, -W_i / |V| with W_i the per-atom virial (half of each edge on each of its
atoms), summing to each system's stress; zeros where the stress is (systems not periodic in 3D).
"""
from __future__ import annotations

import sys

import torch

from .calculator import HIPotCalculator
from .evaluator import Evaluator
from .model import HIENet
from .optional import MissingDependency, require

if sys.version_info < (3, 12):
    raise MissingDependency("hipot.torchsim needs torch-sim >= 0.6 (pip install 'hipot[torchsim]'), which needs "
                            f"Python >= 3.12; this is Python {sys.version_info.major}.{sys.version_info.minor}")
require("torch_sim", "torchsim", "hipot's torch-sim model")
from torch_sim.models.interface import ModelInterface  # noqa: E402
from torch_sim.state import SimState  # noqa: E402


class HIPotModel(ModelInterface):
    """A hipot model (HIENet-V3 by default) as a torch-sim `ModelInterface`.

    model: 'hienet-v3', a hipot model folder, an official .pth, a HIENet, an Evaluator or a
        HIPotCalculator (their Evaluator is shared, dispersion included).
    device, dtype: where and in which precision it runs ('auto' = CUDA if available; float32 by
        default as everywhere in hipot, float64 on request). States must match both.
    dispersion: None or 'd3bj' (DFT-D3(BJ), PBE parameters; hipot.dispersion).
    retain_graph: outputs stay in the autograd graph, differentiable with respect to the weights
        and to the state's positions and cell (differentiable simulation; no dispersion then).
    per_atom_energies: also return "energies" (N,), the per-atom energies (dispersion included),
        under torch-sim's key and switch (torch-sim's own pair models have the same; its
        heat-flux correlation turns it on).
    per_atom_stresses: also return "stresses" (N, 3, 3), the per-atom stresses (module docstring),
        under torch-sim's key and switch, whether or not `compute_stress` is on. Not with
        dispersion (simple-dftd3 gives no per-atom virials): a ValueError when the model runs.
    """

    def __init__(self, model: str | HIENet | Evaluator | HIPotCalculator = "hienet-v3",
                 device: str | torch.device = "auto", dtype: str | torch.dtype = "float32", *,
                 compute_forces: bool = True, compute_stress: bool = True, dispersion: str | None = None,
                 retain_graph: bool = False, min_distance: float = 0.1, backend: str = "auto",
                 cuda_graphs: bool | None = None, per_atom_energies: bool = False, per_atom_stresses: bool = False):
        super().__init__()
        if isinstance(model, HIPotCalculator):
            model = model.evaluator
        if isinstance(model, Evaluator):
            if dispersion is not None:
                raise ValueError("pass dispersion to the Evaluator itself (an Evaluator carries its own)")
            self.evaluator = model
        else:
            self.evaluator = Evaluator(model, device, dtype, min_distance, backend, cuda_graphs, dispersion=dispersion)
        self.model = self.evaluator.model  # a submodule: .parameters(), .eval() reach the weights
        self._device = self.evaluator.device
        self._dtype = self.evaluator.dtype
        self._compute_forces = bool(compute_forces)
        self._compute_stress = bool(compute_stress)
        # cost grows with the edges within the model's radial cutoff
        self._memory_scales_with = "n_atoms_x_density"
        self.retain_graph = bool(retain_graph)
        self.per_atom_energies = bool(per_atom_energies)
        self.per_atom_stresses = bool(per_atom_stresses)

    @property
    def name(self) -> str:
        """The model, and '+D3(BJ)' when dispersion is added."""
        return self.evaluator.name

    @property
    def cutoff(self) -> float:
        """The model's radial cutoff in A (for torch-sim's autobatcher with memory_scales_with='n_edges')."""
        return float(self.model.cutoff)

    @ModelInterface.compute_stress.setter
    def compute_stress(self, value: bool) -> None:
        self._compute_stress = bool(value)

    @ModelInterface.compute_forces.setter
    def compute_forces(self, value: bool) -> None:
        self._compute_forces = bool(value)

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        """Energy (B,), forces (N, 3), stress (B, 3, 3) and, with per_atom_energies, energies (N,),
        with per_atom_stresses, stresses (N, 3, 3), of every system of the state, in one hipot
        evaluation. Input the model cannot take raises hipot.types.StructureError naming the
        system ('system 2: element(s) Og not supported ...')."""
        self._check(state)
        n_systems = state.cell.shape[0]
        pred = self.evaluator.predict_tensors(
            state.positions, state.atomic_numbers, state.cell.mT, torch.as_tensor(state.pbc, device=self._device),
            state.system_idx, stress=self._compute_stress, labels=[f"system {b}" for b in range(n_systems)],
            create_graph=self.retain_graph, atom_virials=self.per_atom_stresses)
        out = {"energy": pred.energy}
        if self._compute_forces:
            out["forces"] = pred.forces
        if self._compute_stress:
            out["stress"] = pred.stress
        if self.per_atom_energies:
            out["energies"] = pred.energies
        if self.per_atom_stresses:
            out["stresses"] = pred.atom_stresses
        if not self.retain_graph:
            out = {k: v.detach() for k, v in out.items()}
        return out

    def _check(self, state: SimState) -> None:
        """dtype and device of the state against the model's: a clear error, never a silent cast."""
        what = f"torch-sim state ({state.cell.shape[0]} systems, {state.positions.shape[0]} atoms)"
        for key in ("positions", "cell"):
            t = getattr(state, key)
            if t.dtype != self._dtype:
                raise TypeError(f"{what}: {key} are {t.dtype} but the model runs in {self._dtype}; make the state "
                                f"with dtype={self._dtype} (ts.initialize_state(atoms, model.device, model.dtype)) "
                                f"or the model with dtype='{str(t.dtype).removeprefix('torch.')}'")
            if t.device != self._device:
                raise ValueError(f"{what}: {key} are on {t.device} but the model is on {self._device}; "
                                 "move the state with state.to(model.device)")
